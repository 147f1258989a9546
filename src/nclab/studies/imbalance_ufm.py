"""The regularized UFM under imbalanced classes: minority collapse and the SELI limit.

- :func:`minority_collapse_sweep`: the step profile (the last ``minority`` classes keep
  round(R n_max) features) over a list of ratios R, one weight decay or one pair of norm
  budgets (the Layer-Peeled Model, ``energies=``); the minority classifier rows' mean
  pairwise cosine (definitions §12) of the best random start per R (Fang, He, Long & Su,
  PNAS 2021).
- :func:`seli_limit_sweep`: fixed class counts over a list of weight decays lambda
  (lambda_W = lambda_H = lambda); the distance of W W^T and of the centred means' Gram to
  the SELI geometry, which vanishes as lambda -> 0 in the model without bias of
  Thrampoulidis et al. (NeurIPS 2022), :class:`BiasFreeUFM`. With a free (undecayed)
  bias it does not: see docs/imbalance.md.

Both return plain dicts (one per setting), for a table or a test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.imbalance import imbalance_metrics
from nclab.ufm import LayerPeeledUFM, RegularizedUFM, UFMSolution
from nclab.ufm.optim import Params

__all__ = [
    "BiasFreeUFM",
    "class_means",
    "minority_collapse_sweep",
    "seli_limit_sweep",
    "solve_counts",
    "step_counts",
    "zero_threshold",
]


class BiasFreeUFM(RegularizedUFM):
    """The regularized UFM with b held at 0 (its random start): f(W, H) of Thrampoulidis
    et al. (2022), whose lambda -> 0 limit is SELI. ``lambda_b`` plays no part."""

    def value_and_grad(self, params: Params) -> tuple[torch.Tensor, Params]:
        value, (grad_w, grad_h, grad_b) = super().value_and_grad(params)
        return value, (grad_w, grad_h, torch.zeros_like(grad_b))


def zero_threshold(counts: Sequence[int], lambda_w: float, lambda_h: float) -> float:
    """C sqrt(n_max lambda_W lambda_H) for class counts n_c.

    For equal counts the minimizer is W = H = 0 exactly when this is >= 1 (Zhu et al.,
    2021); with unequal counts it is the same bound for the largest class, a necessary
    condition for a nonzero minimizer that the sweeps check before solving.
    """
    return len(counts) * math.sqrt(max(counts) * lambda_w * lambda_h)


def class_means(solution: UFMSolution, run: int) -> np.ndarray:
    """The class means (C, d) of the features of run ``run``."""
    features = solution.features[run].cpu().numpy()
    labels = solution.labels.cpu().numpy()
    return np.stack([features[labels == c].mean(axis=0) for c in range(int(labels.max()) + 1)])


def solve_counts(counts: Sequence[int], dim: int, minority: Sequence[int], *, loss: str,
                 lambda_w: float, lambda_h: float, lambda_b: float, seeds: int, steps: int,
                 grad_tol: float = 1e-10, bias: bool = True,
                 energies: tuple[float, float] | None = None) -> dict[str, Any]:
    """Solve the UFM with ``counts`` from ``seeds`` random starts; the best start's §12
    metrics, objective, gradient norm, the spread of the ends' objectives and
    ``minority_norm_ratio`` (mean ‖w_c‖ of the minority over that of the others).

    ``bias=False`` solves :class:`BiasFreeUFM` (b = 0). ``energies=(E_W, E_H)`` solves
    the Layer-Peeled Model instead (``loss`` must be "ce"; the weight decays and ``bias``
    play no part) and adds ``multipliers``, the smallest Lagrange multiplier of its two
    budgets at the best start (> 0: both budgets spent, a KKT point)."""
    if energies is not None:
        if loss != "ce":
            raise NCInputError(f"the Layer-Peeled Model uses cross-entropy; got loss {loss!r}")
        model: RegularizedUFM | LayerPeeledUFM = LayerPeeledUFM(
            len(counts), dim, counts=counts, energy_w=energies[0], energy_h=energies[1])
    else:
        if zero_threshold(counts, lambda_w, lambda_h) >= 1:
            raise NCInputError(
                f"C sqrt(n_max lambda_W lambda_H) = "
                f"{zero_threshold(counts, lambda_w, lambda_h):.3g} >= 1: the minimizer is "
                "W = H = 0 for equal counts; lower the weight decays")
        kind = RegularizedUFM if bias else BiasFreeUFM
        model = kind(len(counts), dim, counts=counts, loss=loss, lambda_w=lambda_w,
                     lambda_h=lambda_h, lambda_b=lambda_b)
    solution = model.solve(range(seeds), steps=steps, grad_tol=grad_tol)
    best = int(solution.objective.argmin())
    metrics = imbalance_metrics(solution.weight[best].cpu().numpy(),
                                class_means(solution, best), counts, minority)
    norms = solution.weight[best].norm(dim=1).cpu().numpy()
    is_minority = np.isin(np.arange(len(counts)), list(minority))
    record = {
        "counts": list(counts), "objective": float(solution.objective[best]),
        # mean norm of the minority rows over that of the others (nan without either)
        "minority_norm_ratio": float(norms[is_minority].mean() / norms[~is_minority].mean())
        if is_minority.any() and not is_minority.all() else float("nan"),
        "objective_spread": float(solution.objective.max() - solution.objective.min()),
        "grad_norm": float(solution.grad_norm[best]),
        "weight_norm": float(solution.weight[best].norm()), **metrics}
    if isinstance(model, LayerPeeledUFM):
        mu_w, mu_h = model.multipliers(solution.weight[best:best + 1],
                                       solution.features[best:best + 1])
        record["multipliers"] = min(float(mu_w[0]), float(mu_h[0]))
    return record


def step_counts(per_class: int, classes: int, minority: int, ratio: float) -> list[int]:
    """n_max for the first C - K classes, round(R n_max) (at least 1) for the last K."""
    if not 0 < ratio <= 1:
        raise NCInputError(f"the ratio R must lie in (0, 1]; got {ratio}")
    if isinstance(minority, bool) or int(minority) != minority or not 1 <= minority < classes:
        raise NCInputError(f"the number of minority classes must be an integer in "
                           f"1..{classes - 1}; got {minority}")
    small = max(1, round(ratio * per_class))
    return [per_class] * (classes - minority) + [small] * minority


def minority_collapse_sweep(ratios: Sequence[float], *, classes: int = 10, dim: int = 16,
                            per_class: int = 1000, minority: int = 5, loss: str = "ce",
                            lambda_w: float = 1e-3, lambda_h: float = 1e-3,
                            lambda_b: float = 1e-3, seeds: int = 2, steps: int = 5000,
                            energies: tuple[float, float] | None = None
                            ) -> list[dict[str, Any]]:
    """One record per R: ``ratio``, ``counts`` and the best start's metrics (§12).

    ``energies=(E_W, E_H)`` solves the Layer-Peeled Model (see :func:`solve_counts`).
    Raises NCInputError before solving when, for the regularized model,
    C sqrt(n_max lambda_W lambda_H) >= 1 (the minimizer of the balanced model is then
    W = H = 0 and no cosine is defined).
    """
    minority_classes = list(range(classes - minority, classes))
    return [{"ratio": float(ratio),
             **solve_counts(step_counts(per_class, classes, minority, ratio), dim,
                            minority_classes, loss=loss, lambda_w=lambda_w, lambda_h=lambda_h,
                            lambda_b=lambda_b, seeds=seeds, steps=steps, energies=energies)}
            for ratio in ratios]


def seli_limit_sweep(counts: Sequence[int], lambdas: Sequence[float], *, dim: int = 16,
                     minority: Sequence[int] | None = None, seeds: int = 2,
                     steps: int = 8000, bias: bool = False) -> list[dict[str, Any]]:
    """One record per lambda (lambda_W = lambda_H = lambda, cross-entropy): ``lambda``
    and the best start's metrics, among them ``seli_distance_weights`` and
    ``seli_distance_means``.

    ``bias=False`` (the default) is the model of the SELI theorem, b = 0; ``bias=True``
    adds a bias without decay (lambda_b = 0). ``minority`` defaults to the classes of the
    smallest count (the cosines of §12 need two of them; None otherwise). The descent
    stops at a gradient norm of 1e-2 lambda (at most 1e-10): the gradient of a point
    near the minimizer shrinks with lambda.
    """
    counts = [int(c) for c in counts]
    if minority is None:
        minority = [c for c, n in enumerate(counts) if n == min(counts)]
    return [{"lambda": float(lam),
             **solve_counts(counts, dim, minority, loss="ce", lambda_w=lam, lambda_h=lam,
                            lambda_b=0.0, seeds=seeds, steps=steps,
                            grad_tol=min(1e-10, 1e-2 * lam), bias=bias)}
            for lam in lambdas]
