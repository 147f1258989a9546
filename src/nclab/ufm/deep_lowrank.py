"""Deep neural collapse against the low-rank candidate of the deep ReLU UFM (Sukenik,
Lampert & Mondelli, NeurIPS 2024, "Neural collapse versus low-rank bias"), definitions §15.

Both candidates are collapsed within each class (H_l repeats its K class means, the
columns of M_l) and are built from two matrices: X (r' x K, entries >= 0), the class
means of every layer below the last ReLU (each W_l in between a multiple of the
identity, so the ReLUs leave them alone), and Y (K x r'), the map to the last ReLU, with
relu(Y X) = I: the last layer's class means are orthogonal and W_L is a multiple of I.

- deep neural collapse (DNC): X = Y = I_K, rank K at every layer;
- the strongly regular graph (SRG) candidate, for K = r (r - 1) / 2 classes, the edges of
  the complete graph on r vertices: X = B, the r x K vertex-edge incidence matrix, and
  Y = B^T - J / 2 (each class's row 1/2 on its two vertices, -1/2 elsewhere: the least
  norm with relu(Y B) = I). Y B is 1 on the diagonal, 0 for edges sharing a vertex and
  -1 for disjoint edges (the pre-activation of the paper's Figure 1, rank r, r - 1 for
  r = 4); every layer below it has rank r, not K.

With the L + 1 scales balanced (the least weight decay for a given output scale c),

    f = min over c >= 0 of (c - 1)^2 / 2 + ((L + 1) / 2) kappa c^(2 / (L + 1)),
    kappa = (lambda_H n ||X||^2 (lambda_W r')^(L - 2) lambda_W ||Y||^2 lambda_W K)^(1/(L+1)),

so a candidate beats DNC exactly when its ||X||^2 r'^(L-2) ||Y||^2 K is below K^(L+1)
(whatever the weight decays, unless both minima are the zero point): for the SRG,
K^2 r^(L-1) / 2 < K^(L+1), i.e. r < (r - 1)^(L-2) / 2^(L-3). :func:`candidate_params`
builds the point itself, so that the closed form can be checked against
:meth:`DeepUFM.objective`. The scales are optimal for the shapes X, Y; the shapes are
the paper's, not optimized (a lower low-rank point may exist).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.ufm.deep import positive_decay
from nclab.ufm.optim import Params

__all__ = [
    "Candidate",
    "candidate_objective",
    "candidate_params",
    "dnc_objective",
    "dnc_shape",
    "incidence",
    "low_rank_objective",
    "srg_shape",
]


@dataclass(frozen=True)
class Candidate:
    """The best point of one candidate shape (see the module docstring).

    Attributes
    ----------
    objective : float
        f at that point.
    scale : float
        c, the diagonal of the class means of the outputs W_L H_L (0: the zero point).
    kappa : float
        The weight decay constant of the closed form.
    rank : int
        The rank of the class means below the last ReLU (r', or r - 1 for the SRG at
        r = 4).
    """

    objective: float
    scale: float
    kappa: float
    rank: int


def incidence(vertices: int) -> np.ndarray:
    """The r x K vertex-edge incidence matrix B of the complete graph on r >= 3 vertices,
    K = r (r - 1) / 2 edges in lexicographic order."""
    if isinstance(vertices, bool) or int(vertices) != vertices or vertices < 3:
        raise NCInputError(f"vertices must be an integer >= 3; got {vertices!r}")
    edges = list(itertools.combinations(range(int(vertices)), 2))
    matrix = np.zeros((int(vertices), len(edges)))
    for column, (u, v) in enumerate(edges):
        matrix[[u, v], column] = 1.0
    return matrix


def srg_shape(vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y) = (B, B^T - J / 2) of the SRG candidate with r = ``vertices``."""
    matrix = incidence(vertices)
    return matrix, matrix.T - 0.5


def dnc_shape(num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y) = (I, I) of deep neural collapse with K = ``num_classes``."""
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
        raise NCInputError(f"num_classes must be an integer >= 2; got {num_classes!r}")
    return np.eye(int(num_classes)), np.eye(int(num_classes))


def _check(shape: tuple[np.ndarray, np.ndarray], layers: int) -> tuple[np.ndarray, np.ndarray]:
    inner, head = (np.asarray(a, dtype=np.float64) for a in shape)
    if inner.ndim != 2 or head.shape != inner.shape[::-1] or inner.shape[1] < 2:
        raise NCInputError(f"X must be r x K and Y K x r, K >= 2; got {inner.shape} and "
                           f"{head.shape}")
    if (inner < 0).any():
        raise NCInputError("X must be >= 0 (the class means of ReLU layers)")
    if not np.allclose(np.maximum(head @ inner, 0), np.eye(inner.shape[1]), rtol=0,
                       atol=1e-12):
        raise NCInputError("relu(Y X) must be the identity (orthogonal class means of equal "
                           "norm after the last ReLU)")
    if isinstance(layers, bool) or int(layers) != layers or layers < 2:
        raise NCInputError(f"layers must be an integer >= 2 (one ReLU at least); got "
                           f"{layers!r}")
    return inner, head


def _factor_decays(inner: np.ndarray, head: np.ndarray, layers: int, lambda_w: float,
                   lambda_h: float, per_class: int) -> list[float]:
    """mu_j with decay (1/2) sum_j mu_j x_j^2 for the scales x_j of H_1, W_1, ..., W_L."""
    width, size = inner.shape
    return ([lambda_h * per_class * float(np.sum(inner ** 2))]
            + [lambda_w * width] * (layers - 2)
            + [lambda_w * float(np.sum(head ** 2)), lambda_w * size])


def _best_scale(kappa: float, layers: int) -> tuple[float, float]:
    """argmin and min over c >= 0 of g(c) = (c - 1)^2 / 2 + ((L+1)/2) kappa c^(2/(L+1))."""
    power = 2.0 / (layers + 1)

    def g(c: float) -> float:
        return 0.5 * (c - 1.0) ** 2 + 0.5 * (layers + 1) * kappa * c ** power

    # g'(c) = 0 <=> c^p (1 - c) = kappa, p = 1 - power; the left side rises on (0, top)
    # and falls on (top, 1): the local minimum is its root in (top, 1), if any
    exponent = 1.0 - power
    top = exponent / (1.0 + exponent)
    best, value = 0.0, g(0.0)
    if top ** exponent * (1.0 - top) > kappa:
        low, high = top, 1.0
        for _ in range(200):
            middle = 0.5 * (low + high)
            if middle ** exponent * (1.0 - middle) > kappa:
                low = middle
            else:
                high = middle
        if g(low) < value:
            best, value = low, g(low)
    return best, value


def candidate_objective(shape: tuple[np.ndarray, np.ndarray], layers: int, *,
                        lambda_w: float, lambda_h: float, per_class: int = 1) -> Candidate:
    """The objective of the best point of a candidate shape (module docstring).

    Parameters
    ----------
    shape : (X (r' x K), Y (K x r'))
        X >= 0 and relu(Y X) = I.
    layers : int
        L >= 2.
    lambda_w, lambda_h : float
        Weight decays (> 0).
    per_class : int
        n samples per class.
    """
    inner, head = _check(shape, layers)
    lambda_w = positive_decay("lambda_w", lambda_w)
    lambda_h = positive_decay("lambda_h", lambda_h)
    decays = _factor_decays(inner, head, int(layers), lambda_w, lambda_h, per_class)
    kappa = math.prod(decays) ** (1.0 / (layers + 1))
    scale, value = _best_scale(kappa, int(layers))
    return Candidate(objective=value, scale=scale, kappa=kappa,
                     rank=int(np.linalg.matrix_rank(head @ inner)))


def dnc_objective(num_classes: int, layers: int, *, lambda_w: float, lambda_h: float,
                  per_class: int = 1) -> Candidate:
    """Deep neural collapse of the deep UFM with K classes and L >= 2 layers (the same
    value for the ReLU and the linear model)."""
    return candidate_objective(dnc_shape(num_classes), layers, lambda_w=lambda_w,
                               lambda_h=lambda_h, per_class=per_class)


def low_rank_objective(vertices: int, layers: int, *, lambda_w: float, lambda_h: float,
                       per_class: int = 1) -> Candidate:
    """The SRG candidate of the ReLU deep UFM with K = r (r - 1) / 2 classes, r =
    ``vertices``."""
    return candidate_objective(srg_shape(vertices), layers, lambda_w=lambda_w,
                               lambda_h=lambda_h, per_class=per_class)


def candidate_params(shape: tuple[np.ndarray, np.ndarray], layers: int, *, lambda_w: float,
                     lambda_h: float, per_class: int = 1, dim: int | None = None) -> Params:
    """The point of :func:`candidate_objective` as DeepUFM parameters (rows are samples).

    Returns
    -------
    tuple of Tensors
        (H_1 (1, N, d), W_1 (1, d, d), ..., W_L (1, K, d)), float64, N = n K, samples
        ordered by class; d = ``dim`` (default max(K, r')).
    """
    inner, head = _check(shape, layers)
    width, size = inner.shape
    layers = int(layers)
    dim = max(size, width) if dim is None else int(dim)
    if dim < max(size, width):
        raise NCInputError(f"dim must be >= max(K, r') = {max(size, width)}; got {dim}")
    best = candidate_objective(shape, layers, lambda_w=lambda_w, lambda_h=lambda_h,
                               per_class=per_class)
    decays = _factor_decays(inner, head, layers, lambda_w, lambda_h, per_class)
    # balanced: mu_j x_j^2 is the same for every factor, and prod x_j = c
    level = best.kappa * best.scale ** (2.0 / (layers + 1))
    x = [math.sqrt(level / mu) for mu in decays]
    blocks = [x[0] * inner] + [x[j] * np.eye(width) for j in range(1, layers - 1)]
    blocks += [x[layers - 1] * head, x[layers] * np.eye(size)]
    h1 = _padded(blocks[0], dim, size)
    weights = [_padded(block, dim, dim) for block in blocks[1:-1]]
    last = _padded(blocks[-1], size, dim)
    arrays = [np.repeat(h1.T, per_class, axis=0), *weights, last]
    return tuple(torch.from_numpy(np.ascontiguousarray(a))[None] for a in arrays)


def _padded(block: np.ndarray, rows: int, columns: int) -> np.ndarray:
    full = np.zeros((rows, columns))
    full[:block.shape[0], :block.shape[1]] = block
    return full
