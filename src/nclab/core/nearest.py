"""The nearest class mean of each feature, decided by a ball test where it can be.

A feature h is strictly nearer to mean mu_k than to any other whenever
||h - mu_k|| < r_k, with r_k half the distance from mu_k to the nearest other mean: by
the triangle inequality ||h - mu_c|| >= ||mu_c - mu_k|| - ||h - mu_k|| > ||h - mu_k||.
Once features collapse onto their class means most of them pass this test for the
class the classifier chose, at O(d) each, and only the others need the O(C d) distances
to every mean. The thresholds allow for the rounding of the working dtype, so that
every feature the test decides is decided as exact arithmetic on the means would.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

#: Entries of one tile of squared distances between the means (64 MiB in float32).
_TILE_ENTRIES = 1 << 24


def _squared_gaps(centred: torch.Tensor, squares: torch.Tensor, rows: slice | torch.Tensor,
                  columns: slice | torch.Tensor) -> torch.Tensor:
    """||mu_i - mu_j||^2 for i in ``rows``, j in ``columns`` (``squares``: ||mu_c||^2),
    by their Gram: one product of a tile, as rounded as the Gram."""
    return (squares[rows, None] + squares[columns]
            - 2.0 * (centred[rows] @ centred[columns].T))


def ball_thresholds(centred: torch.Tensor, present: torch.Tensor,
                    origin_norm: float) -> torch.Tensor:
    """Squared thresholds t (C,) for :func:`screened_nearest`, in ``centred``'s dtype
    and on its device.

    Parameters
    ----------
    centred : tensor of shape (C, d)
        The means less the origin, as the features are compared with them.
    present : bool tensor of shape (C,)
        Classes with a mean; the others are never nearest and get t = -1.
    origin_norm : float
        ||origin||: the features are shifted by it, with the rounding that brings.

    Notes
    -----
    A computed ||h - mu_k||^2 below t_k means h is nearest to mu_k in exact arithmetic:
    the squared distances between means are lowered by a bound on their rounding
    (2 (d + 3) u (p_i + p_j), p the squared norms, u the unit roundoff), and the
    distance of a feature by one on its own (K u (||h - mu_k|| + max ||c|| +
    ||origin||), K = 2 (d + 4)), each taken twice over.
    """
    count, dim = centred.shape
    unit = torch.finfo(centred.dtype).eps / 2
    squares = torch.einsum("cd,cd->c", centred, centred)
    nearest = torch.full_like(squares, math.inf)
    absent = ~present.to(centred.device)
    step = max(1, _TILE_ENTRIES // count)
    for start in range(0, count, step):
        block = slice(start, min(count, start + step))
        bound = 2 * (dim + 3) * unit * (squares[block, None] + squares)
        lowered = _squared_gaps(centred, squares, block, slice(None)) - bound
        lowered[:, absent] = math.inf
        own = torch.arange(block.stop - block.start, device=centred.device)
        lowered[own, own + start] = math.inf  # a mean is not its own neighbour
        nearest[block] = lowered.min(dim=1).values
    radius = nearest.clamp(min=0).sqrt() / 2
    slack = 2 * (2 * (dim + 4)) * unit
    largest = float(squares.max().sqrt()) if count else 0.0
    threshold = (radius - slack * (largest + origin_norm)) / (1 + slack)
    return torch.where((threshold > 0) & ~absent, threshold * threshold, -1.0)


def _squared_distances(rows: torch.Tensor, candidates: torch.Tensor, centred: torch.Tensor,
                       scratch: torch.Tensor) -> torch.Tensor:
    """||h_i - mu_{k_i}||^2 of each row (``scratch``: an (n, d) buffer)."""
    apart = torch.index_select(centred, 0, candidates, out=scratch).sub_(rows)
    return torch.linalg.vector_norm(apart, dim=1).square_()


def worth_screening(shifted: torch.Tensor, candidates: torch.Tensor, centred: torch.Tensor,
                    present: torch.Tensor, scratch: torch.Tensor, sample: int = 64) -> bool:
    """Whether the ball test could decide a quarter of these rows, judged at O(C d
    sample): a radius is at most half the distance to any other mean, so radii from
    ``sample`` evenly spread means bound the true ones from above, and so the share of
    rows the test would decide. Features that have not collapsed fail it, and then the
    C x C x d product of :func:`ball_thresholds` is not made."""
    chosen = present.to(centred.device).nonzero().squeeze(1)
    chosen = chosen[:: max(1, len(chosen) // sample)]
    squares = torch.einsum("cd,cd->c", centred, centred)
    gaps = _squared_gaps(centred, squares, slice(None), chosen)
    gaps[chosen, torch.arange(len(chosen), device=centred.device)] = math.inf
    upper = gaps.min(dim=1).values / 4
    inside = _squared_distances(shifted, candidates, centred, scratch) < upper[candidates]
    return 4 * int(inside.sum()) >= len(candidates)


def screened_nearest(shifted: torch.Tensor, candidates: torch.Tensor, centred: torch.Tensor,
                     thresholds: torch.Tensor, scratch: torch.Tensor,
                     nearest_of: Callable[[torch.Tensor], torch.Tensor]
                     ) -> tuple[torch.Tensor, int]:
    """(argmin_c ||h_i - mu_c|| of each row of ``shifted`` (n, d), the number of rows the
    ball test decided): ``candidates`` (n,) where the test decides it,
    ``nearest_of(rows)`` (all distances) for the rest.

    ``centred`` (C, d) and ``thresholds`` (C,) as for :func:`ball_thresholds`;
    ``scratch`` an (n, d) buffer. When the test decides few rows, one call of
    ``nearest_of`` on every row costs less than gathering the undecided ones.
    """
    decided = _squared_distances(shifted, candidates, centred, scratch) < thresholds[candidates]
    undecided = (~decided).nonzero().squeeze(1)
    count = len(candidates) - len(undecided)
    if len(undecided) == 0:
        return candidates, count
    if 8 * len(undecided) > 7 * len(candidates):
        return nearest_of(shifted), count
    nearest = candidates.clone()
    nearest[undecided] = nearest_of(shifted.index_select(0, undecided))
    return nearest, count
