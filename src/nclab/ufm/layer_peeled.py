"""The Layer-Peeled Model of Fang, He, Long & Su (PNAS 2021), definitions §12.

    min_{W, H}  (1/N) sum_k sum_{i <= n_k} CE(W h_{k,i}, k)
    s.t.        (1/K) sum_k ||w_k||^2 <= E_W,
                (1/K) sum_k (1/n_k) sum_i ||h_{k,i}||^2 <= E_H,

with K classes of n_k features each (N = sum_k n_k), dimension d, no bias and no weight
decay: norm *budgets* in place of penalties. Rows are vectors (W is K x d, H is N x d).
For equal counts and d >= K - 1 every minimizer is a simplex ETF with h_{k,i} = (s/a) w_k,
||w_k||^2 = E_W, ||h_{k,i}||^2 = E_H (the paper's Theorem 1), so

    f* = log(1 + (K - 1) exp(-sqrt(E_W E_H) K/(K - 1))).

With unequal counts the minority classifier rows merge as n_max/n_min grows (minority
collapse, the paper's Theorem 5) while they stay nonzero.

Solved by Riemannian gradient descent on the boundary of the constraint set (both
budgets spent): the cross-entropy falls as W or H grows along a point that classifies
every feature, so a minimizer spends both budgets. That is checked at the end point,
not assumed: :meth:`LayerPeeledUFM.multipliers` gives the Lagrange multipliers of the
two constraints there, and a stationary point of the boundary with both multipliers
positive is a KKT point of the inequality-constrained program.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from nclab.core.errors import NCInputError
from nclab.core.validation import positive_number
from nclab.ufm._base import UFMSolution, check_sizes, random_normal, solve
from nclab.ufm.classification import check_counts
from nclab.ufm.optim import Params

#: The budgets of the paper's Figure 3 (its code, optimization.py): E_W = 1, E_H = 5.
DEFAULT_ENERGY_W, DEFAULT_ENERGY_H = 1.0, 5.0


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """<a, b> of each run: (S, ...) x (S, ...) -> (S, 1, 1), for broadcasting over rows."""
    return (a * b).sum(dim=(-2, -1), keepdim=True)


class LayerPeeledUFM:
    """Cross-entropy UFM with norm budgets on W and H, no bias (the Layer-Peeled Model).

    Parameters
    ----------
    num_classes : int
        K >= 2.
    dim : int
        d >= 1. For d < K - 1 no simplex ETF exists (``optimal_value`` is None).
    per_class : int
        n features per class, N = K n.
    counts : sequence of int, optional
        n_k features of class k (K entries, each >= 1) instead of ``per_class``;
        ``per_class`` is then the largest count.
    energy_w, energy_h : float
        The budgets E_W and E_H, > 0.

    Examples
    --------
    >>> lpm = LayerPeeledUFM(num_classes=4, dim=4, per_class=3)
    >>> solution = lpm.solve(seeds=range(2))
    >>> bool((solution.gap.abs() < 1e-8).all())
    True
    """

    loss = "ce"

    def __init__(self, num_classes: int, dim: int, per_class: int = 1, *,
                 counts: Sequence[int] | None = None, energy_w: float = DEFAULT_ENERGY_W,
                 energy_h: float = DEFAULT_ENERGY_H) -> None:
        self.counts = None if counts is None else check_counts(counts, num_classes)
        if self.counts is not None:
            per_class = max(self.counts)
        self.num_classes, self.dim, self.per_class = check_sizes(num_classes, dim, per_class)
        self.energy_w = positive_number(energy_w, "energy_w")
        self.energy_h = positive_number(energy_h, "energy_h")

    def __repr__(self) -> str:
        size = (f"per_class={self.per_class}" if self.balanced
                else f"counts={list(self.counts or ())}")
        return (f"LayerPeeledUFM(num_classes={self.num_classes}, dim={self.dim}, {size}, "
                f"energy_w={self.energy_w:g}, energy_h={self.energy_h:g})")

    @property
    def balanced(self) -> bool:
        """Every class has ``per_class`` features."""
        return self.counts is None or len(set(self.counts)) == 1

    @property
    def class_counts(self) -> tuple[int, ...]:
        """n_k of every class (K,)."""
        return self.counts if self.counts is not None else (self.per_class,) * self.num_classes

    @property
    def num_samples(self) -> int:
        """N = sum_k n_k."""
        return sum(self.class_counts)

    def labels(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Labels (N,) of the rows of H, sorted by class."""
        return torch.arange(self.num_classes, device=device).repeat_interleave(
            torch.tensor(self.class_counts, device=device))

    @property
    def logit_scale(self) -> float:
        """sqrt(E_W E_H) = ||w_k|| ||h_{k,i}|| at the balanced minimizer."""
        return math.sqrt(self.energy_w * self.energy_h)

    @property
    def optimal_value(self) -> float | None:
        """f* for equal counts and d >= K - 1 (the ETF value); None otherwise."""
        k = self.num_classes
        if not self.balanced or self.dim < k - 1:
            return None
        return math.log1p((k - 1) * math.exp(-self.logit_scale * k / (k - 1)))

    def _feature_weights(self, like: torch.Tensor) -> torch.Tensor:
        """1/n_k for every row of H, shaped (1, N, 1) to broadcast against (S, N, d)."""
        counts = torch.tensor(self.class_counts, dtype=like.dtype, device=like.device)
        return (1 / counts)[self.labels(like.device)].view(1, -1, 1)

    def value_and_grad(self, params: Params) -> tuple[torch.Tensor, Params]:
        """The mean cross-entropy f and its Euclidean gradient (dW, dH) at (W, H)."""
        weight, features = params
        logits = features @ weight.transpose(-1, -2)
        targets = F.one_hot(self.labels(logits.device), self.num_classes).to(logits.dtype)
        log_p = torch.log_softmax(logits, dim=-1)
        num = logits.shape[-2]
        value = -(targets * log_p).sum(dim=(-2, -1)) / num
        dlogits = (log_p.exp() - targets) / num
        return value, (dlogits.transpose(-1, -2) @ features, dlogits @ weight)

    def objective(self, weight: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """f(W, H) for W (..., K, d), H (..., N, d); returns shape (...)."""
        return self.value_and_grad((weight, features))[0]

    def _normals(self, params: Params) -> Params:
        """Half the gradients of the two constraint functions, times K: W and D H."""
        weight, features = params
        return weight, self._feature_weights(features) * features

    def evaluate(self, params: Params) -> tuple[torch.Tensor, Params]:
        """f and its Riemannian gradient (plain projection on the tangent space of the
        boundary), for :func:`nclab.ufm.optim.descend`."""
        value, grads = self.value_and_grad(params)
        tangent = tuple(g - _inner(nu, g) / _inner(nu, nu) * nu
                        for nu, g in zip(self._normals(params), grads, strict=True))
        return value, tangent

    def direction(self, params: Params, grads: Params) -> Params:
        """Minus the Riemannian gradient, H's part scaled by N/K.

        Each feature enters f with weight 1/N and each classifier row with about 1/K, so
        in the plain metric H would move N/K times slower than W (as in SphereUFM). A
        constant scaling keeps the direction on the tangent space.
        """
        return -grads[0], -(self.num_samples / self.num_classes) * grads[1]

    def project(self, params: Params) -> Params:
        """(W, H) scaled radially onto the boundary: both budgets spent exactly."""
        weight, features = params
        k = self.num_classes
        spent_w = weight.square().sum(dim=(-2, -1), keepdim=True) / k
        spent_h = (self._feature_weights(features) * features.square()).sum(
            dim=(-2, -1), keepdim=True) / k
        return (weight * (self.energy_w / spent_w).sqrt(),
                features * (self.energy_h / spent_h).sqrt())

    def retract(self, params: Params, direction: Params, step: torch.Tensor) -> Params:
        scale = step.view(-1, 1, 1)
        return self.project(tuple(torch.addcmul(x, scale, v)
                                  for x, v in zip(params, direction, strict=True)))

    def multipliers(self, weight: torch.Tensor, features: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Lagrange multipliers (mu_W, mu_H), each (S,), of the two budgets at (W, H).

        From grad f + mu_W grad c_W + mu_H grad c_H = 0 with c_W = (1/K) sum ||w_k||^2 - E_W
        (and c_H alike), taken along the point itself: mu_W = -<grad_W f, W>/(2 E_W),
        mu_H = -<grad_H f, H>/(2 E_H). Both > 0 at a stationary point of the boundary:
        a KKT point of the program with inequality budgets (spending more of either
        budget would lower f).
        """
        _, (grad_w, grad_h) = self.value_and_grad((weight, features))
        return (-(grad_w * weight).sum(dim=(-2, -1)) / (2 * self.energy_w),
                -(grad_h * features).sum(dim=(-2, -1)) / (2 * self.energy_h))

    def random_start(self, seeds: Sequence[int], device: torch.device | str = "cpu",
                     dtype: torch.dtype = torch.float64) -> Params:
        """Gaussian starts scaled onto the boundary, (W, H) of shapes (S, K, d), (S, N, d)."""
        draws = random_normal(seeds, (self.num_classes + self.num_samples, self.dim), dtype,
                              device)
        return self.project((draws[:, : self.num_classes], draws[:, self.num_classes:]))

    def solve(self, seeds: Sequence[int] = (0,), *, steps: int = 5000, lr: float = 1.0,
              grad_tol: float = 1e-10, device: torch.device | str = "cpu",
              start: Params | None = None, callback: Callable[[int], None] | None = None
              ) -> UFMSolution:
        """Riemannian gradient descent from one random start per seed, all runs batched.

        Parameters and result as in :meth:`nclab.ufm.SphereUFM.solve`; ``start`` is
        (W, H) of shapes (S, K, d), (S, N, d), scaled onto the boundary first.
        """
        seeds = [int(s) for s in seeds]
        start = self.random_start(seeds, device) if start is None else self.project(start)
        if not all(bool(torch.isfinite(x).all()) for x in start):
            raise NCInputError("the start of the Layer-Peeled Model must be finite and have "
                               "nonzero W and H")
        return solve(self, start, seeds, self.labels(device), steps=steps, lr=lr,
                     grad_tol=grad_tol, optimal_value=self.optimal_value, callback=callback)
