"""The softmax code: C unit vectors in R^d with the largest one-vs-rest margin (§10).

Jiang et al. (ICML 2024) show that the classifier of the normalized UFM approaches, for
C > d + 1, a configuration maximizing min_c dist(v_c, conv{v_j : j != c}): the softmax
code. :func:`softmax_code` returns its value where it is known in closed form
(:func:`nclab.core.margins.softmax_code_bounds`: C <= d + 1, d <= 2, C <= 2d) with a
configuration attaining it, and otherwise the best of several seeded ascents (a
certified lower bound: the exact margin of a configuration found) next to a proven
upper bound.

The ascent uses the dual form of each distance: for dist_c > 0,

    dist_c = max_{||u|| = 1} <u, v_c> - max_{j != c} <u, v_j>,

so the margin is the max over (V, U) of min_c of explicit terms. Both maxima and the
minimum are smoothed by log-sum-exp at a sharpness beta that grows during the run (a
lower bound of the margin of V at every beta); V and U are normalized rows, moved by
Adam in torch, every start in one batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.margins import ovr_margin, softmax_code_bounds
from nclab.ufm._base import check_sizes, random_normal
from nclab.ufm.landscape import simplex_etf

__all__ = [
    "SoftmaxCode",
    "orthogonal_simplices",
    "regular_polygon",
    "smoothed_margin",
    "softmax_code",
]


@dataclass(frozen=True)
class SoftmaxCode:
    """The best achievable one-vs-rest margin of C unit vectors in R^d.

    Attributes
    ----------
    num_classes, dim : int
    lower : float
        The exact margin of ``vectors`` (certified by :func:`nclab.core.margins.ovr_margin`).
    upper : float
        A proven upper bound on every configuration's margin.
    exact : bool
        ``lower`` is the optimum (closed form known, and attained by ``vectors``).
    vectors : ndarray of shape (C, d)
        A configuration with margin ``lower``.
    method : str
        How ``vectors`` was obtained.
    """

    num_classes: int
    dim: int
    lower: float
    upper: float
    exact: bool
    vectors: np.ndarray
    method: str

    def gap(self, margin: float) -> tuple[float, float]:
        """(least, most) by which ``margin`` falls short of the optimum."""
        return self.lower - margin, self.upper - margin


def regular_polygon(count: int) -> np.ndarray:
    """The regular ``count``-gon on the unit circle, (count, 2)."""
    angles = 2 * np.pi * np.arange(count) / count
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def orthogonal_simplices(count: int, dim: int) -> np.ndarray:
    """``count`` = d + m unit vectors in R^d (2 <= m <= d) as m simplex ETFs on
    orthogonal subspaces of dimensions summing to d: every margin is exactly 1 (the
    other rows lie in {x : <x, v_c> <= 0} and their hull holds 0)."""
    blocks = count - dim
    sizes = [dim // blocks + (i < dim % blocks) for i in range(blocks)]
    out, offset = np.zeros((count, dim)), 0
    row = 0
    for size in sizes:
        out[row:row + size + 1, offset:offset + size] = simplex_etf(size + 1, size).numpy()
        row, offset = row + size + 1, offset + size
    return out


def _closed_form(count: int, dim: int) -> tuple[np.ndarray, str] | None:
    if count <= dim + 1:
        return simplex_etf(count, dim).numpy(), "simplex ETF"
    if dim == 1:
        return np.where(np.arange(count) % 2 == 0, 1.0, -1.0)[:, None], "two opposite rays"
    if dim == 2:
        return regular_polygon(count), "regular polygon"
    if count <= 2 * dim:
        return orthogonal_simplices(count, dim), "orthogonal simplices"
    return None


def softmax_code(num_classes: int, dim: int, *, seeds: Sequence[int] = range(8),
                 steps: int = 1500, lr: float = 0.02, device: torch.device | str = "cpu"
                 ) -> SoftmaxCode:
    """The softmax code of C classes in d dimensions (definitions §10).

    Parameters
    ----------
    num_classes : int
        C >= 2.
    dim : int
        d >= 1.
    seeds : sequence of int
        One ascent per seed (used only where no closed form is known).
    steps : int
        Adam steps per ascent; the sharpness grows from 10 to 10^5 and the step
        shrinks from ``lr`` to ``lr`` / 1000, both geometrically.
    lr : float
        Adam's step size.
    device : torch device

    Returns
    -------
    SoftmaxCode
    """
    count, dim, _ = check_sizes(num_classes, dim, 1)
    if not seeds:
        raise NCInputError("seeds is empty: give at least one")
    if int(steps) != steps or steps < 1:
        raise NCInputError(f"steps must be an integer >= 1; got {steps}")
    lower, upper = softmax_code_bounds(count, dim)
    known = _closed_form(count, dim)
    if known is not None:
        vectors, method = known
        return SoftmaxCode(count, dim, ovr_margin(vectors), upper, True, vectors, method)
    candidates = _ascend(count, dim, [int(s) for s in seeds], int(steps), lr, device)
    margins = [ovr_margin(vectors) for vectors in candidates]
    best = int(np.argmax(margins))
    return SoftmaxCode(count, dim, margins[best], upper, False, candidates[best],
                       f"best of {len(candidates)} seeded ascents (seed {list(seeds)[best]})")


def smoothed_margin(vectors: torch.Tensor, directions: torch.Tensor, sharpness: float
                    ) -> torch.Tensor:
    """A smooth lower bound (S,) of the margin of unit rows ``vectors`` (S, C, d), given
    unit ``directions`` (S, C, d): softmin_c (<u_c, v_c> - softmax_{j != c} <u_c, v_j>)
    with log-sum-exp at ``sharpness`` (each soft max is above the max it replaces)."""
    support = directions @ vectors.transpose(-1, -2)  # (S, C, C): <u_c, v_j>
    own = torch.diagonal(support, dim1=-2, dim2=-1)
    eye = torch.eye(support.shape[-1], dtype=torch.bool, device=support.device)
    others = support.masked_fill(eye, -math.inf)
    terms = own - torch.logsumexp(sharpness * others, dim=-1) / sharpness
    return -torch.logsumexp(-sharpness * terms, dim=-1) / sharpness


def _ascend(count: int, dim: int, seeds: list[int], steps: int, lr: float,
            device: torch.device | str) -> list[np.ndarray]:
    """One ascent of :func:`smoothed_margin` per seed; the final unit rows of each.

    Adam (beta = 0.9, 0.999) written out: torch.optim's first call costs seconds of
    imports, longer than a whole ascent of a small code.
    """
    draws = random_normal(seeds, (2 * count, dim), torch.float64, device)
    params = [draws[:, :count].clone(), draws[:, :count] + 0.1 * draws[:, count:]]
    first = [torch.zeros_like(x) for x in params]
    second = [torch.zeros_like(x) for x in params]
    for step in range(steps):
        # the step shrinks 1000-fold while the smoothing sharpens 10^4-fold: early steps
        # explore a smooth landscape, late ones settle on its sharp maximum
        fraction = step / max(steps - 1, 1)
        sharpness, rate = 10.0 * 1e4 ** fraction, lr * 1e-3 ** fraction
        for x in params:
            x.requires_grad_(True)
        unit, toward = (x / x.norm(dim=-1, keepdim=True) for x in params)
        grads = torch.autograd.grad(smoothed_margin(unit, toward, sharpness).sum(), params)
        with torch.no_grad():
            for x, g, m, v in zip(params, grads, first, second, strict=True):
                m.mul_(0.9).add_(g, alpha=0.1)
                v.mul_(0.999).addcmul_(g, g, value=0.001)
                corrected = (m / (1 - 0.9 ** (step + 1))) / (
                    (v / (1 - 0.999 ** (step + 1))).sqrt() + 1e-12)
                x.requires_grad_(False)
                x.add_(corrected, alpha=rate)
    with torch.no_grad():
        unit = params[0] / params[0].norm(dim=-1, keepdim=True)
    return [row.cpu().numpy() for row in unit]
