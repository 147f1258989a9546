"""The normalized unconstrained features model on the oblique manifold (definitions §4).

    f(W, H) = (1/N) sum_{k,i} CE(tau W h_{k,i}, k),   ||w_k|| = ||h_{k,i}|| = 1,

with K classes, n features per class (N = K n), dimension d, no bias and no weight decay
(Yaras et al., NeurIPS 2022). Rows are vectors: W is K x d (row k is w_k) and H is N x d,
the layout :func:`nclab.measure` takes. For d >= K - 1 a simplex ETF exists and every
global minimizer is one, with h_{k,i} = w_k and

    f* = log(1 + (K - 1) exp(-tau K / (K - 1))).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from nclab.core.validation import positive_number
from nclab.ufm._base import (
    UFMSolution,
    check_sizes,
    class_labels,
    cross_entropy,
    cross_entropy_value,
    random_normal,
    solve,
)
from nclab.ufm.optim import Params


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` scaled to unit norm: the retraction of the oblique manifold."""
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)


def project_tangent(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """P_x(g) = g - (x^T g) x, row by row, for unit rows ``x``."""
    return torch.addcmul(g, torch.sum(x * g, dim=-1, keepdim=True), x, value=-1.0)


class SphereUFM:
    """Cross-entropy UFM with unit-norm features and classifiers, inverse temperature tau.

    Parameters
    ----------
    num_classes : int
        K >= 2.
    dim : int
        d >= 1. For d < K - 1 no simplex ETF exists and ``optimal_value`` is None.
    per_class : int
        n features per class, N = K n.
    tau : float
        Inverse temperature, > 0.

    Notes
    -----
    :meth:`solve` runs Riemannian gradient descent with tangent projection, normalization
    retraction and a backtracking (Armijo) step per run. The gradient of H is multiplied
    by n, which is steepest descent in the product metric <.,.>_W + (1/n) <.,.>_H: each
    feature enters the objective with weight 1/N while each classifier row enters it
    with weight 1/K, so in the plain metric H would move n times slower than W. The
    reported gradient norm is the plain one of definitions §4.

    Examples
    --------
    >>> ufm = SphereUFM(num_classes=10, dim=16, per_class=5, tau=4.0)
    >>> solution = ufm.solve(seeds=range(50))
    >>> float((solution.gap).abs().max()) < 1e-6
    True
    """

    def __init__(self, num_classes: int, dim: int, per_class: int = 1, tau: float = 4.0) -> None:
        self.num_classes, self.dim, self.per_class = check_sizes(num_classes, dim, per_class)
        self.tau = positive_number(tau, "tau")

    def __repr__(self) -> str:
        return (f"SphereUFM(num_classes={self.num_classes}, dim={self.dim}, "
                f"per_class={self.per_class}, tau={self.tau:g})")

    @property
    def num_samples(self) -> int:
        """N = K n."""
        return self.num_classes * self.per_class

    @property
    def etf_value(self) -> float:
        """log(1 + (K-1) exp(-tau K/(K-1))): a lower bound on f for every d."""
        k = self.num_classes
        return math.log1p((k - 1) * math.exp(-self.tau * k / (k - 1)))

    @property
    def optimal_value(self) -> float | None:
        """f*, the ETF value, when an ETF fits in d dimensions (d >= K - 1); else None."""
        return self.etf_value if self.dim >= self.num_classes - 1 else None

    def labels(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Labels (N,) of the rows of H."""
        return class_labels(self.num_classes, self.per_class, device)

    def objective(self, weight: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """f(W, H) for W (..., K, d) and H (..., N, d); returns shape (...)."""
        logits = self.tau * features @ weight.transpose(-1, -2)
        return cross_entropy_value(logits, self.per_class)

    def value_and_grad(self, params: Params) -> tuple[torch.Tensor, Params]:
        """f and its Euclidean gradient (dW, dH) at ``params = (W, H)``."""
        weight, features = params
        scaled = self.tau * weight
        logits = features @ scaled.transpose(-1, -2)
        value, dlogits = cross_entropy(logits, self.per_class)
        grad_w = self.tau * (dlogits.transpose(-1, -2) @ features)
        grad_h = dlogits @ scaled
        return value, (grad_w, grad_h)

    def riemannian_grad(self, weight: torch.Tensor, features: torch.Tensor) -> Params:
        """The Riemannian gradient (P_W dW, P_H dH) in the plain product metric."""
        return self.evaluate((weight, features))[1]

    def evaluate(self, params: Params) -> tuple[torch.Tensor, Params]:
        """f and its Riemannian gradient, for :func:`nclab.ufm.optim.descend`."""
        value, grads = self.value_and_grad(params)
        return value, tuple(project_tangent(x, g) for x, g in zip(params, grads, strict=True))

    def direction(self, params: Params, grads: Params) -> Params:
        return -grads[0], -self.per_class * grads[1]

    def retract(self, params: Params, direction: Params, step: torch.Tensor) -> Params:
        scale = step.view(-1, 1, 1)
        return tuple(normalize_rows(torch.addcmul(x, scale, v))
                     for x, v in zip(params, direction, strict=True))

    def random_start(self, seeds: Sequence[int], device: torch.device | str = "cpu",
                     dtype: torch.dtype = torch.float64) -> Params:
        """Uniform random points of the manifold, (W, H) of shapes (S, K, d), (S, N, d)."""
        draws = random_normal(seeds, (self.num_classes + self.num_samples, self.dim), dtype,
                              device)
        draws = normalize_rows(draws)
        return draws[:, : self.num_classes], draws[:, self.num_classes:]

    def solve(self, seeds: Sequence[int] = (0,), *, steps: int = 5000, lr: float = 1.0,
              grad_tol: float = 1e-10, device: torch.device | str = "cpu",
              start: Params | None = None, callback: Callable[[int], None] | None = None
              ) -> UFMSolution:
        """Riemannian gradient descent from one random start per seed, all runs batched.

        Parameters
        ----------
        seeds : sequence of int
            One run per seed (S runs).
        steps : int
            Maximum iterations.
        lr : float
            Initial step size (it adapts per run).
        grad_tol : float
            Stop once every run's Riemannian gradient norm is at most this.
        device : torch device
        start : (W, H), optional
            Batched starting point instead of the random starts.
        callback : callable, optional
            Called with the iteration number after each iteration.

        Returns
        -------
        UFMSolution
        """
        seeds = [int(s) for s in seeds]
        if start is None:
            start = self.random_start(seeds, device)
        return solve(self, start, seeds, self.labels(device), steps=steps, lr=lr,
                     grad_tol=grad_tol, optimal_value=self.optimal_value, callback=callback)
