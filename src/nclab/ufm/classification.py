"""The regularized unconstrained features model of classification (Zhu et al., 2021).

    f(W, H, b) = (1/N) sum_{k,i} L(W h_{k,i} + b, k)
                 + (lambda_W/2) ||W||_F^2 + (lambda_H/2) ||H||_F^2 + (lambda_b/2) ||b||^2

with L the cross-entropy (Zhu et al., 2021), half the squared error to the one-hot
target (Zhou et al., 2022), the label-smoothed cross-entropy ``ls:EPS`` or the focal loss
``focal:GAMMA`` (Zhou et al., NeurIPS 2022; definitions in :mod:`nclab.core.losses`;
minimizers in definitions §13), K classes, n features per class (N = K n), dimension d.
Note that, as in those papers, the penalty on H is not divided by N. W is K x d (row k is w_k)
and H is N x d. Solved by full-batch gradient descent in float64.

Global minimizers (d >= K - 1, gamma = sqrt(n lambda_W lambda_H) with K gamma < 1): the
rows of W form a simplex ETF of norm a, h_{k,i} = (s/a) w_k, a^2 K lambda_W = s^2 N
lambda_H, b = 0 for cross-entropy and b = 1/(K (1 + lambda_b)) 1 for the squared error
(which also needs lambda_b/(1 + lambda_b) <= K gamma); the logit scale t = a s solves a
one-dimensional problem (see :attr:`RegularizedUFM.optimal_value`). When K gamma >= 1
the minimizer is W = H = 0.

With class counts n_1, ..., n_K (``counts=``, imbalanced classes; N = sum_k n_k) the
objective is the same sum over every feature; no closed-form minimum is known then
(``optimal_value`` is None). Its minimizers show minority collapse (Fang et al., 2021) and,
as the weight decays vanish, the SELI geometry (Thrampoulidis et al., 2022; definitions §12).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from nclab.core import losses
from nclab.core.errors import NCInputError
from nclab.core.validation import positive_number
from nclab.ufm._base import (
    UFMSolution,
    check_sizes,
    class_labels,
    cross_entropy,
    own_class_entries,
    random_normal,
    solve,
)
from nclab.ufm.optim import Params

LOSSES = ("ce", "mse", "ls:EPS", "focal:GAMMA")


def smoothed_logit_gap(num_classes: int, smoothing: float, gamma: float) -> float:
    """The logit gap u* (own logit minus another's) of the label-smoothed UFM minimizer.

    On the simplex-ETF family the objective is log(1 + (K-1) e^-u) + (K-1) c u with
    c = EPS/K + gamma; it is minimal at e^-u = c/(1 - (K-1) c), i.e.
    u* = log((1 - (K-1) c)/c), and at u* = 0 (W = H = 0) when K c >= 1. With gamma = 0
    the softmax of the own class is then 1 - EPS + EPS/K, the smoothed target itself.
    """
    c = smoothing / num_classes + gamma
    if num_classes * c >= 1:
        return 0.0
    return math.log((1 - (num_classes - 1) * c) / c)


def minimizer_norms(logit_scale: float, per_class: int, lambda_w: float,
                    lambda_h: float) -> tuple[float, float]:
    """(||w_k||, ||h_{k,i}||) of a balanced ETF minimizer with logit scale t = a s.

    Scaling W by c and H by 1/c keeps the logits, so a minimizer balances the two
    penalties: lambda_W K a^2 = lambda_H N s^2 with N = K n, i.e.
    a^2 = t sqrt(n lambda_H / lambda_W) and s^2 = t sqrt(lambda_W / (n lambda_H)).
    With the t* of ``RegularizedUFM.logit_scale`` this gives the norms of the global
    minimizer for ``ce``, ``mse`` and ``ls:EPS`` as a function of EPS and the weight
    decays (definitions §13); t* = 0 gives W = H = 0.
    """
    ratio = math.sqrt(per_class * lambda_h / lambda_w)
    return math.sqrt(logit_scale * ratio), math.sqrt(logit_scale / ratio)


def check_counts(counts: Sequence[int], num_classes: int) -> tuple[int, ...]:
    """K class counts, each an integer >= 1, as a tuple; one NCInputError line otherwise."""
    values = list(counts)
    if len(values) != num_classes:
        raise NCInputError(f"counts needs one entry per class ({num_classes}); got "
                           f"{len(values)}")
    bad = [v for v in values if isinstance(v, bool) or int(v) != v or v < 1]
    if bad:
        raise NCInputError(f"every class count must be an integer >= 1; got {bad[0]!r}")
    return tuple(int(v) for v in values)


class RegularizedUFM:
    """Unconstrained features model with weight decay on W, H and b.

    Parameters
    ----------
    num_classes : int
        K >= 2.
    dim : int
        d >= 1. For d < K - 1 no simplex ETF exists (see ``optimal_value``).
    per_class : int
        n features per class, N = K n.
    counts : sequence of int, optional
        n_k features of class k (K entries, each >= 1) instead of ``per_class``:
        imbalanced classes, N = sum_k n_k. ``per_class`` is then the largest count.
    loss : {"ce", "mse", "ls:EPS", "focal:GAMMA"}
        Cross-entropy, (1/2) ||W h + b - e_k||^2 with e_k the one-hot target, or the
        label-smoothed cross-entropy / focal loss of :mod:`nclab.core.losses`.
    lambda_w, lambda_h : float
        Weight decay on W and H, > 0 (without them cross-entropy has no minimizer).
    lambda_b : float
        Weight decay on b, >= 0.

    Examples
    --------
    >>> ufm = RegularizedUFM(num_classes=10, dim=16, per_class=5, lambda_w=5e-3, lambda_h=5e-3)
    >>> solution = ufm.solve(seeds=range(4))
    >>> bool((solution.gap.abs() < 1e-6).all())        # every start reaches f*
    True
    """

    def __init__(self, num_classes: int, dim: int, per_class: int = 1, *, loss: str = "ce",
                 lambda_w: float = 5e-3, lambda_h: float = 5e-3, lambda_b: float = 5e-3,
                 counts: Sequence[int] | None = None) -> None:
        self.counts = None if counts is None else check_counts(counts, num_classes)
        if self.counts is not None:
            per_class = max(self.counts)
        self.num_classes, self.dim, self.per_class = check_sizes(num_classes, dim, per_class)
        # ce and mse keep their fast paths; ls:EPS and focal:GAMMA go through the trainer's
        # definitions (nclab.core.losses), ls:0 and focal:0 included
        if str(loss).partition(":")[0] not in ("ce", "mse", "ls", "focal"):
            raise NCInputError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
        self.criterion = losses.ClassificationLoss.parse(loss)
        loss = self.criterion.text
        self.loss = loss
        self.lambda_w = positive_number(lambda_w, "lambda_w")
        self.lambda_h = positive_number(lambda_h, "lambda_h")
        self.lambda_b = positive_number(lambda_b, "lambda_b", allow_zero=True)

    def __repr__(self) -> str:
        size = (f"per_class={self.per_class}" if self.counts is None or self.balanced
                else f"counts={list(self.counts)}")
        return (f"RegularizedUFM(num_classes={self.num_classes}, dim={self.dim}, "
                f"{size}, loss={self.loss!r}, lambda_w={self.lambda_w:g}, "
                f"lambda_h={self.lambda_h:g}, lambda_b={self.lambda_b:g})")

    @property
    def balanced(self) -> bool:
        """Every class has ``per_class`` features (no ``counts``, or equal ones)."""
        return self.counts is None or len(set(self.counts)) == 1

    @property
    def num_samples(self) -> int:
        """N = K n, or the sum of the counts."""
        return (self.num_classes * self.per_class if self.counts is None or self.balanced
                else sum(self.counts))

    def labels(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Labels (N,) of the rows of H, sorted by class."""
        if self.balanced:
            return class_labels(self.num_classes, self.per_class, device)
        return torch.arange(self.num_classes, device=device).repeat_interleave(
            torch.tensor(self.counts, device=device))

    @property
    def gamma(self) -> float:
        """sqrt(n lambda_W lambda_H): the price of the logit scale t = a s in f."""
        return math.sqrt(self.per_class * self.lambda_w * self.lambda_h)

    @property
    def logit_scale(self) -> float | None:
        """t* = a s = ||w_k|| ||h_{k,i}|| at the global minimizer (d >= K - 1).

        A sample's logit is t* for its own class and -t*/(K-1) for the others (plus b);
        t* = 0 when K gamma >= 1, where the minimizer is W = H = 0. None for unequal
        counts and for the focal loss (no closed form). For ``ls:EPS`` the logit gap
        u* = t* K/(K-1) = log((1 - (K-1) c)/c), c = EPS/K + gamma, or 0 when K c >= 1
        (definitions §13).
        """
        if not self.balanced or self.criterion.name == "focal":
            return None
        k, gamma = self.num_classes, self.gamma
        if k * gamma >= 1:
            return 0.0
        if self.criterion.name == "ls":
            return (k - 1) / k * smoothed_logit_gap(k, self.criterion.parameter or 0.0, gamma)
        if self.loss == "ce":
            ratio = (k - 1) * gamma  # = q/(1+q) at the optimum, q = (K-1) exp(-t K/(K-1))
            return (k - 1) / k * math.log((k - 1) * (1 - ratio) / ratio)
        return (k - 1) / k * (1 - k * gamma)

    @property
    def minimizer_norms(self) -> tuple[float, float] | None:
        """(||w_k||, ||h_{k,i}||) at the global minimizer (:func:`minimizer_norms` of
        :attr:`logit_scale`); None where ``logit_scale`` is None (focal loss, unequal
        counts) or ``optimal_value`` is None (no ETF minimizer known: d < K - 1, or the
        squared error's bias bound fails)."""
        scale = self.logit_scale
        if scale is None or self.optimal_value is None:
            return None
        return minimizer_norms(scale, self.per_class, self.lambda_w, self.lambda_h)

    @property
    def optimal_value(self) -> float | None:
        """The global minimum f*, or None where it is not known in closed form.

        Notes
        -----
        On the ETF family the objective is g(t) + K gamma t plus a bias term, with
        gamma = sqrt(n lambda_W lambda_H) and t = a s:

        - cross-entropy: g(t) = log(1 + (K-1) exp(-t K/(K-1))), b = 0; the minimum over
          t is the global one for d >= K - 1 (Zhu et al., 2021, Theorem 3.1). None for
          d < K - 1.
        - label smoothing ``ls:EPS``: g(t) = log(1 + (K-1) exp(-u)) + (K-1) (EPS/K) u with
          u = t K/(K-1), b = 0; global for d >= K - 1 (Zhou et al., NeurIPS 2022, for
          losses of this class), None for d < K - 1. Focal loss: None.
        - unequal class counts: None (no closed form).
        - squared error: g(t) = (K-1)/(2K) (t K/(K-1) - 1)^2 and b = 1/(K(1+lambda_b)) 1
          adds lambda_b/(2K(1+lambda_b)). In Z = H W^T the problem is a nuclear-norm
          regularized least squares (lambda_W ||W||^2/2 + lambda_H ||H||^2/2 >=
          sqrt(lambda_W lambda_H) ||Z||_*) whose KKT conditions the centred ETF meets
          iff lambda_b/(1+lambda_b) <= K gamma; None otherwise. For lambda_b = 0 the
          bias absorbs the mean target and the bound holds for every d: for d < K - 1
          the minimizer keeps d of the K - 1 equal singular values of the centred
          targets (no ETF). For d < K - 1 and lambda_b > 0: None (not proven).
        """
        k = self.num_classes
        if not self.balanced or self.criterion.name == "focal":
            return None
        if self.criterion.name == "ls":
            if self.dim < k - 1:
                return None
            scale = self.logit_scale
            if scale is None:
                return None
            u = scale * k / (k - 1)
            slope = (k - 1) * ((self.criterion.parameter or 0.0) / k + self.gamma)
            return math.log1p((k - 1) * math.exp(-u)) + slope * u
        if self.loss == "ce":
            if self.dim < k - 1:
                return None
            t = self.logit_scale
            assert t is not None  # the counts are balanced
            return math.log1p((k - 1) * math.exp(-t * k / (k - 1))) + k * self.gamma * t
        return self._mse_optimum()

    def _mse_optimum(self) -> float | None:
        k, n, lambda_b = self.num_classes, self.per_class, self.lambda_b
        if lambda_b / (1 + lambda_b) > k * self.gamma or (self.dim < k - 1 and lambda_b > 0):
            return None
        # The centred one-hot targets have K-1 singular values sqrt(n); the optimum
        # soft-thresholds them by N sqrt(lambda_W lambda_H) and keeps at most d of them.
        sigma = math.sqrt(n)
        kept = max(sigma * (1 - k * self.gamma), 0.0)
        rank = min(self.dim, k - 1)
        loss = ((k - 1 - rank) * sigma**2 + rank * (sigma - kept) ** 2) / (2 * k * n)
        price = math.sqrt(self.lambda_w * self.lambda_h)
        return loss + price * rank * kept + lambda_b / (2 * k * (1 + lambda_b))

    def objective(self, weight: torch.Tensor, features: torch.Tensor, bias: torch.Tensor
                  ) -> torch.Tensor:
        """f(W, H, b) for W (..., K, d), H (..., N, d), b (..., K); returns shape (...)."""
        return self.value_and_grad((weight, features, bias))[0]

    def value_and_grad(self, params: Params) -> tuple[torch.Tensor, Params]:
        """f and its gradient (dW, dH, db) at ``params = (W, H, b)``."""
        weight, features, bias = params
        logits = features @ weight.transpose(-1, -2) + bias.unsqueeze(-2)
        num = logits.shape[-2]
        if self.criterion.name in ("ls", "focal"):
            value, dlogits = self._criterion_loss(logits)
        elif not self.balanced:
            value, dlogits = self._imbalanced_loss(logits)
        elif self.loss == "ce":
            value, dlogits = cross_entropy(logits, self.per_class)
        else:
            residual = logits
            own_class_entries(residual, self.per_class).sub_(1.0)  # logits is a fresh tensor
            value = residual.square().sum(dim=(-2, -1)) / (2 * num)
            dlogits = residual / num
        value = value + 0.5 * (self.lambda_w * weight.square().sum(dim=(-2, -1))
                               + self.lambda_h * features.square().sum(dim=(-2, -1))
                               + self.lambda_b * bias.square().sum(dim=-1))
        grad_w = dlogits.transpose(-1, -2) @ features + self.lambda_w * weight
        grad_h = dlogits @ weight + self.lambda_h * features
        grad_b = dlogits.sum(dim=-2) + self.lambda_b * bias
        return value, (grad_w, grad_h, grad_b)

    def _criterion_loss(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean ``ls``/``focal`` loss of each run and its gradient in the logits
        (..., N, K), by the trainer's definition and autograd (one run at a time, since
        the criterion sums over its rows)."""
        labels = self.labels(logits.device)
        num, k = logits.shape[-2:]
        with torch.enable_grad():
            leaf = logits.detach().requires_grad_(True)
            runs = leaf.reshape(-1, num, k)
            values = torch.stack([self.criterion(run, labels) for run in runs]) / num
            (grad,) = torch.autograd.grad(values.sum(), leaf)
        return values.reshape(logits.shape[:-2]).detach(), grad

    def _imbalanced_loss(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean loss and its gradient in the logits (..., N, K) against one-hot targets
        of the class-sorted labels (the balanced path reads them off a strided view)."""
        num = logits.shape[-2]
        targets = F.one_hot(self.labels(logits.device), self.num_classes).to(logits.dtype)
        if self.loss == "ce":
            log_p = torch.log_softmax(logits, dim=-1)
            return -(targets * log_p).sum(dim=(-2, -1)) / num, (log_p.exp() - targets) / num
        residual = logits - targets
        return residual.square().sum(dim=(-2, -1)) / (2 * num), residual / num

    def evaluate(self, params: Params) -> tuple[torch.Tensor, Params]:
        """f and its gradient, for :func:`nclab.ufm.optim.descend`."""
        return self.value_and_grad(params)

    def direction(self, params: Params, grads: Params) -> Params:
        return tuple(-g for g in grads)

    def retract(self, params: Params, direction: Params, step: torch.Tensor) -> Params:
        return tuple(torch.addcmul(x, step.view(-1, *([1] * (x.ndim - 1))), v)
                     for x, v in zip(params, direction, strict=True))

    def random_start(self, seeds: Sequence[int], device: torch.device | str = "cpu",
                     dtype: torch.dtype = torch.float64) -> Params:
        """Gaussian starts with rows of expected norm 1; b = 0."""
        k, num = self.num_classes, self.num_samples
        draws = random_normal(seeds, (k + num, self.dim), dtype, device) / math.sqrt(self.dim)
        bias = torch.zeros(len(seeds), k, dtype=dtype, device=device)
        return draws[:, :k], draws[:, k:], bias

    def solve(self, seeds: Sequence[int] = (0,), *, steps: int = 5000, lr: float = 1.0,
              grad_tol: float = 1e-10, device: torch.device | str = "cpu",
              start: Params | None = None, callback: Callable[[int], None] | None = None
              ) -> UFMSolution:
        """Full-batch gradient descent from one random start per seed, all runs batched.

        Parameters and result as in :meth:`nclab.ufm.SphereUFM.solve`; ``start`` is
        (W, H, b) of shapes (S, K, d), (S, N, d), (S, K).
        """
        seeds = [int(s) for s in seeds]
        if start is None:
            start = self.random_start(seeds, device)
        return solve(self, start, seeds, self.labels(device), steps=steps, lr=lr,
                     grad_tol=grad_tol, optimal_value=self.optimal_value, callback=callback)
