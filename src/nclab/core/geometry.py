"""Pure float64 functions on class means and classifier rows (definitions §1).

Each takes plain numpy arrays, or float64 torch tensors on any device, and returns one
number; with tensors every O(C d), O(d^2) and O(C^2) step runs in torch on their
device and only scalars (and, for a few metrics, vectors of C values) come back.
Quantities over class pairs are computed in square tiles of the upper triangle, so that
C = 10,000 classes needs only O(block^2) extra memory. The scale-free quantities first
divide their inputs by a power of two near their largest entry (exact), so that squares
neither overflow nor underflow for any finite input.

``tile_dtype=float32`` (the pair pass and the tiled ETF gaps) forms each tile product
in float32 and sums in float64: docs/performance.md states the error this adds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nclab.core.errors import NCInputError

#: Side of the tiles of the pass over pairs: a 512 x 512 float64 tile (2 MiB) stays
#: closer to the cache for its elementwise passes than a 1,024 one, and each call's two
#: tile buffers touch a quarter of the fresh memory (``benchmarks/phases.py --block``
#: compares; docs/performance.md gives the run).
DEFAULT_BLOCK = 512
# Above this many C x C entries the simplex gaps are summed over tiles of G, not all of it.
_DENSE_GRAM_LIMIT = 4_000_000

#: Either a float64 numpy array or a float64 torch tensor (any device).
Array = Any


# ---------------------------------------------------------------------------------------
# The few operations whose spelling differs between numpy and torch. Everything else
# (arithmetic, @, .T, .sum(axis=), einsum, sqrt/log/abs with out=) is written once
# against ``_lib(x)``, the array's own module.

def _lib(x: Array) -> Any:
    return torch if isinstance(x, torch.Tensor) else np


def _scalar(value: Array) -> np.float64:
    """A 0-d result as a numpy float64 (so that 0 / 0 gives NaN as in numpy)."""
    return np.float64(value.item() if isinstance(value, torch.Tensor) else value)


def host_vector(x: Array) -> np.ndarray:
    """A vector of C values (or fewer) as a numpy array: the only arrays that leave the
    device, for the per-class statistics computed the same way on every backend."""
    return host_array(x)


def host_array(x: Array) -> np.ndarray:
    """Any array as numpy (a copy from the device for a tensor off the CPU)."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def row_norms(x: Array) -> Array:
    """||x_c|| for each row, shape (C,)."""
    if isinstance(x, torch.Tensor):
        return torch.linalg.vector_norm(x, dim=1)
    return np.sqrt(np.einsum("cd,cd->c", x, x))  # no C x d temporary


def row_dots(left: Array, right: Array) -> Array:
    """left_c . right_c for each row, shape (C,)."""
    return _lib(left).einsum("cd,cd->c", left, right)


def _empty(like: Array, size: int, dtype: Any = None) -> Array:
    if isinstance(like, torch.Tensor):
        return torch.empty(size, dtype=dtype or like.dtype, device=like.device)
    return np.empty(size, dtype=dtype or like.dtype)


def _nonzero(mask: Array) -> tuple:
    return mask.nonzero(as_tuple=True) if isinstance(mask, torch.Tensor) else np.nonzero(mask)


def _subtract_diagonal(square: Array, value: float) -> None:
    if isinstance(square, torch.Tensor):
        square.diagonal().sub_(value)
    else:
        np.fill_diagonal(square, square.diagonal() - value)


def _float32(dtype: Any) -> bool:
    """Whether a ``tile_dtype`` (None: float64) is float32."""
    return dtype is not None and np.dtype(dtype) == np.float32


def _as_dtype(x: Array, dtype: Any) -> Array:
    """x in float32 or float64 (``dtype`` given as numpy's)."""
    if dtype is None or x.dtype == dtype:
        return x
    if isinstance(x, torch.Tensor):
        return x.to(torch.float32 if np.dtype(dtype) == np.float32 else torch.float64)
    return x.astype(dtype)


def _svd(matrix: Array) -> tuple[Array, Array]:
    """(singular values, right singular vectors as rows), thin."""
    if isinstance(matrix, torch.Tensor):
        _, singular, vt = torch.linalg.svd(matrix, full_matrices=False)
        return singular, vt
    _, singular, vt = np.linalg.svd(matrix, full_matrices=False)
    return singular, vt


def power_of_two_scale(x: Array) -> float:
    """A power of two s with max |x| / s in [0.5, 1) (1 for an all-zero x).

    Dividing by s is exact, so ratios of norms are unchanged while their squares stay
    far from overflow and underflow.
    """
    # max and -min: no |x| temporary (NaN and inf still give a non-finite peak)
    peak = max(float(x.max()), -float(x.min())) if math.prod(x.shape) else 0.0
    if peak == 0.0 or not math.isfinite(peak):
        return 1.0
    return math.ldexp(1.0, math.frexp(peak)[1])


#: A dict shared by the geometry calls of one compute_metrics call: what they derive
#: from the same input array (its power-of-two scale, the scaled copy, its d x d Gram)
#: is formed once. Keyed by (id(array), what); each entry keeps its array alive, so
#: that an id is never reused within the dict's life.
Shared = dict[tuple[int, str], tuple[Array, Any]]


def _shared(shared: Shared | None, what: str, array: Array, make: Callable[[], Any]) -> Any:
    """``make()``, or what it gave for ``array`` earlier in ``shared``."""
    if shared is None:
        return make()
    key = (id(array), what)
    if key not in shared:
        shared[key] = (array, make())
    return shared[key][1]


def order_one(shared: Shared, *arrays: Array) -> Shared:
    """Record in ``shared`` that each array already has its largest magnitude in
    [0.5, 1) (or is zero), so that :func:`scaled` takes it as it is without looking."""
    for x in arrays:
        shared[(id(x), "scaled")] = (x, (1.0, x))
    return shared


def scaled(x: Array, shared: Shared | None = None) -> tuple[float, Array]:
    """(s, x / s) with s = power_of_two_scale(x): exact, formed once per array in
    ``shared``."""
    def make() -> tuple[float, Array]:
        scale = power_of_two_scale(x)
        return scale, x if scale == 1.0 else x / scale
    return _shared(shared, "scaled", x, make)


def _squared_row_norms(x: Array, shared: Shared | None) -> Array:
    """||x_c / s||^2 for each row (s as in :func:`scaled`), formed once per array."""
    def make() -> Array:
        z = scaled(x, shared)[1]
        return _lib(z).einsum("cd,cd->c", z, z)
    return _shared(shared, "squared row norms", x, make)


def _column_sums(x: Array, shared: Shared | None) -> Array:
    """The column sums of x / s, (d,) (s as in :func:`scaled`), formed once per array."""
    return _shared(shared, "column sums", x, lambda: scaled(x, shared)[1].sum(axis=0))


def _scaled_gram(x: Array, shared: Shared | None) -> Callable[[], Array]:
    """A lazy (x / s)^T (x / s), d x d (s as in :func:`scaled`), formed once per array in
    ``shared``."""
    def make() -> Array:
        z = scaled(x, shared)[1]
        return z.T @ z
    return lambda: _shared(shared, "gram", x, make)


def _outer_gram(x: Array, shared: Shared | None) -> Array:
    """(x / s)(x / s)^T, C x C (s as in :func:`scaled`), formed once per array
    in ``shared`` for the dense ETF gaps and the pass over pairs (callers do not modify
    it)."""
    def make() -> Array:
        z = scaled(x, shared)[1]
        return z @ z.T
    return _shared(shared, "outer gram", x, make)


def _dense(count: int, dim: int, block: int = DEFAULT_BLOCK, tile_dtype: Any = None) -> bool:
    """Whether the C x C Gram of C rows of dimension d is formed whole, in float64, by
    both the ETF gaps and the pass over pairs (then each array's is formed once)."""
    return (count <= dim + 1 and count * count <= _DENSE_GRAM_LIMIT and count <= block
            and not _float32(tile_dtype))


def pseudo_inverse_trace(sigma_w: Array, centred_means: Array, max_rank: int,
                         shared: Shared | None = None,
                         centring: np.ndarray | None = None) -> float:
    """Tr(Sigma_W Sigma_B^+) with Sigma_B = M~^T M~ / C.

    Sigma_B^+ keeps at most ``max_rank`` eigenpairs, and only those above
    max(d, C) * eps times the largest: a default-rcond pseudo-inverse would invert noise.
    ``shared`` (see :data:`Shared`) keeps the scaled means and the d x d Gram formed here
    (C > d) for the other metrics of the same means. ``centring`` (C,), when given, are
    weights a with a^T M~ = 0 (ones for means centred on their average, the class counts
    for the sample mean): for C <= d they let a (C-1) x (C-1) Gram replace the SVD.
    """
    num_classes, dim = centred_means.shape
    # the eigenvalues below are in units scale^2
    scale, unit_scaled = scaled(centred_means, shared)
    # of the scaled means: no square of a nonzero one underflows to 0
    if float(_squared_row_norms(centred_means, shared).sum()) == 0.0:
        raise NCInputError("all class means coincide: the between-class covariance is zero")
    floor = max(dim, num_classes) * np.finfo(np.float64).eps
    if num_classes > dim and dim <= max_rank:
        # every eigenvalue kept where the Gram is well conditioned: Sigma_B^+ = C G^-1
        within = _inverse_gram_trace(sigma_w, _scaled_gram(centred_means, shared))
        if within is not None:
            return num_classes * within / (scale * scale)
    if num_classes <= dim and centring is not None and max_rank >= num_classes - 1:
        # likewise with the (C-1) x (C-1) Gram of the deflated means
        within = _deflated_inverse_trace(sigma_w, _deflated(unit_scaled, centring))
        if within is not None:
            return num_classes * within / (scale * scale)
    pairs = None
    if num_classes > dim:
        # ill-conditioned means, C > d: every SVD below is of R (d x d), M~ = QR, whose
        # right singular pairs are those of M~; when every eigenvalue is surely kept,
        # Sigma_B^+ = C (R^T R)^-1 needs no singular vectors at all (a quarter of the SVD)
        triangle = _triangular_factor(unit_scaled)
        inverse = _gram_inverse_if_all_kept(triangle, floor) if dim <= max_rank else None
        if inverse is not None:  # (R^T R)^-1, symmetric bit for bit: read by rows
            within = _lib(inverse).einsum("ij,ij->", sigma_w, inverse)
            return num_classes * float(within) / (scale * scale)
        pairs = _squared_svd(triangle)
    squares, vt = pairs if pairs is not None else _squared_svd(unit_scaled)
    eigen = squares / num_classes
    # the eigenvalues descend, so those kept are the first ones: a view of vt, no copy
    kept = min(int((eigen > floor * float(eigen[0])).sum()), max_rank)
    eigen, v = eigen[:kept], vt[:kept]
    # v_k^T Sigma_W v_k through one BLAS product: a 3-operand einsum loops in C, 15x
    # slower. Dividing by the power of two after the product is exact: no d x d copy.
    within = _lib(v).einsum("kd,kd->k", v @ sigma_w, v) / (scale * scale)
    return float(within @ (1.0 / eigen))


#: Smallest eigenvalue ratio of a Gram of the means for which its inverse replaces the
#: SVD of M~ (every eigenvalue is then kept): the inverse from its Cholesky factor
#: carries a relative error of about eps / ratio, so 1e-11 from this ratio up;
#: worse-conditioned means take the SVD.
_GRAM_CONDITION = 1e-5


def _inverse_gram_trace(sigma_w: Array, gram: Callable[[], Array]) -> float | None:
    """Tr(Sigma_W G^-1) for the d x d Gram G of a (C, d) matrix, C > d (``gram``, a lazy
    ``matrix.T @ matrix`` shared with other users), or None where G is ill conditioned
    (see :func:`_well_conditioned_inverse`; then the SVD route of
    :func:`pseudo_inverse_trace` runs)."""
    inverse = _well_conditioned_inverse(gram())
    if inverse is None:
        return None
    # G^-1 is symmetric (bit for bit): the trace of the product reads both by rows
    return float(_lib(inverse).einsum("ij,ij->", sigma_w, inverse))


def _deflated_inverse_trace(sigma_w: Array, deflated: Array) -> float | None:
    """Tr(Sigma_W D^T G^-2 D) for the deflated means D, (C-1, d) (:func:`_deflated`),
    and G = D D^T; None where G is ill conditioned.

    M~^T M~ = D^T D, whose pseudo-inverse is D^T G^-2 D where D has full row rank; so
    the trace is Tr(Y Sigma_W Y^T) with Y = G^-1 D: the products of the eigh route (the
    Gram, a (C-1)^2 x d one for Y, a (C-1) x d x d one) with G's Cholesky inverse in
    place of its eigh, which costs several times as much.
    """
    inverse = _well_conditioned_inverse(deflated @ deflated.T)
    if inverse is None:
        return None
    rows = inverse @ deflated
    return float(_lib(rows).einsum("kd,kd->", rows @ sigma_w, rows))


def _well_conditioned_inverse(gram: Array) -> Array | None:
    """G^-1 of a symmetric Gram whose eigenvalue ratio is at least _GRAM_CONDITION, else
    None, from its Cholesky factor (torch's, on a view for numpy: numpy has none, and
    scipy's would cost a 0.1 to 0.8 s import in a process that has not loaded it yet).

    Bounds of the ratio's inverse, lambda_max / lambda_min, decide where they can: from
    below, its diagonal's own ratio (:func:`_gram_surely_ill_conditioned`, before any
    factor), max_i G_ii / min_i L_ii^2 (each squared pivot L_ii^2 of the Cholesky factor
    is an entry of a Schur complement of G, hence at least lambda_min), so that a Gram
    surely too ill-conditioned is not inverted, then max_i G_ii max_j (G^-1)_jj; from
    above, ||G||_F ||G^-1||_F, looser than the ratio by at most the side of G, to
    accept. Only between them are G's eigenvalues computed (a third of its eigh, no
    eigenvectors).
    """
    if _gram_surely_ill_conditioned(gram):
        return None
    tensor = _as_tensor(gram)
    factor, info = torch.linalg.cholesky_ex(tensor)
    if int(info) != 0:  # not numerically positive definite
        return None
    pivots = factor.diagonal().square()
    if not float(tensor.diagonal().max()) <= float(pivots.min()) / _GRAM_CONDITION:
        return None
    # numpy's view for numpy input: the norms below in numpy, a few us each
    inverse = _inverse_from_factor(factor, gram)
    bound = float(_frobenius(gram)) * float(_frobenius(inverse))
    if not math.isfinite(bound):
        return None
    # (G^-1)_jj <= 1 / lambda_min: a second bound from below, once G^-1 is at hand
    if float(gram.diagonal().max()) * float(inverse.diagonal().max()) > 1.0 / _GRAM_CONDITION:
        return None
    if bound > 1.0 / _GRAM_CONDITION:
        values = _lib(gram).linalg.eigvalsh(gram)  # ascending
        if not float(values[0]) >= _GRAM_CONDITION * float(values[-1]):
            return None
    return inverse


def _inverse_from_factor(factor: torch.Tensor, like: Array, upper: bool = False) -> Array:
    """(F F^T)^-1, or (F^T F)^-1 with ``upper``, from a triangular factor F (LAPACK's
    potri), by rows: it is symmetric bit for bit and stored by columns, so its transpose
    is the same matrix, contiguous. numpy's view of it where ``like`` is a numpy array."""
    inverse = torch.cholesky_inverse(factor, upper=upper).mT
    return inverse if isinstance(like, torch.Tensor) else inverse.numpy()


def _as_tensor(x: Array) -> torch.Tensor:
    """A tensor of ``x``: itself, or a view of a numpy array (a copy only for a strided
    view that torch cannot share)."""
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))


def _deflated(matrix: Array, centring: np.ndarray) -> Array:
    """Q^T M, (C-1, d), for the columns Q of a reflection orthogonal to ``centring`` a.

    M^T a = 0 puts the rows of M in the (C-1)-dimensional span of Q, so M^T M =
    (Q^T M)^T (Q^T M): the same right singular pairs, with one row fewer and none of
    them zero. Q is the Householder reflection taking a to the first axis, without its
    first column; a has no negative entry, so its first entry is added, not subtracted.
    """
    unit = np.asarray(centring, dtype=np.float64) / np.linalg.norm(centring)
    unit[0] += 1.0
    unit *= math.sqrt(2.0) / np.linalg.norm(unit)  # H = I - u u^T
    if isinstance(matrix, torch.Tensor):
        on_device = torch.from_numpy(unit).to(matrix.device)
        return torch.addr(matrix[1:], on_device[1:], on_device @ matrix, alpha=-1.0)
    deflated = np.outer(unit[1:], unit @ matrix)
    return np.subtract(matrix[1:], deflated, out=deflated)


def _squared_svd(matrix: Array) -> tuple[Array, Array]:
    """(squared singular values descending, right singular vectors as rows), thin."""
    singular, vt = _svd(matrix)
    return singular**2, vt


def _triangular_factor(matrix: Array) -> Array:
    """R of the QR factorization of a (C, d) matrix, C >= d: upper triangular, (d, d),
    with R^T R = M^T M to rounding of the order of eps times the largest eigenvalue
    times the condition number (the SVD's accuracy, not the Gram's: no squaring).
    torch's for numpy too (on a view): its LAPACK (MKL) is faster than numpy's here."""
    triangle = torch.linalg.qr(_as_tensor(matrix), mode="r")[1]
    return triangle if isinstance(matrix, torch.Tensor) else triangle.numpy()


def _gram_inverse_if_all_kept(triangle: Array, floor: float) -> Array | None:
    """(R^T R)^-1, (d, d), when every eigenvalue of R^T R is certainly above twice
    ``floor`` times the largest (so the truncated pseudo-inverse keeps them all); else
    None.

    The certificate is ||R||_F^2 ||R^-1||_F^2 <= 1 / (2 floor), where ||R^-1||_F^2 is
    the trace of that inverse: the first factor bounds the largest eigenvalue from
    above, the second the inverse of the smallest. It is looser than the eigenvalue
    ratio by at most d^2 (30 to 100 on the means of training runs), and under it the
    inverse carries a relative error below about 1e-9 times that of R. A singular R (a
    dead unit: a zero column) has a zero on its diagonal, hence None.
    """
    # torch's inverse from the triangular factor (LAPACK's potri, a third of the
    # product of R^-1 with a d x d matrix) for numpy too: a view, no copy
    factor = _as_tensor(triangle)
    if not bool((factor.diagonal() != 0).all()):
        return None
    inverse = _inverse_from_factor(factor, triangle, upper=True)
    product = float(_frobenius(factor)) ** 2 * float(inverse.diagonal().sum())
    return inverse if math.isfinite(product) and product <= 0.5 / floor else None


def _gram_surely_ill_conditioned(gram: Array) -> bool:
    """Whether the eigenvalue ratio of a Gram, such as M^T M (d, d), is below half of
    _GRAM_CONDITION for certain (then its Cholesky factor would be formed only to be
    discarded).

    Its diagonal (for M^T M the squared column norms of M) bounds its extreme eigenvalues:
    lambda_min <= min_j G_jj and lambda_max >= max_j G_jj. A dead unit (a zero column)
    is the common case in training. The factor 1/2 leaves a margin far above the
    eigenvalues' rounding error (about d * eps * lambda_max), so whenever this says True
    their test would have rejected the Gram too, and the SVD result is the same.
    """
    squares = gram.diagonal()
    return float(squares.min()) < 0.5 * _GRAM_CONDITION * float(squares.max())


def equinorm(vectors: Array, shared: Shared | None = None) -> float:
    """std_c ||v_c|| / mean_c ||v_c|| (population std, ddof=0)."""
    norms = host_vector(_lib(vectors).sqrt(_squared_row_norms(vectors, shared)))
    mean, squares = mean_and_squares(norms)
    with np.errstate(invalid="ignore", divide="ignore"):  # zero vectors: NaN
        return float(np.sqrt(squares / len(norms)) / mean)


def mean_and_squares(values: np.ndarray) -> tuple[np.float64, np.float64]:
    """(mean, sum of squared deviations from it) of a vector, as numpy scalars (a zero
    mean then divides as in numpy): numpy's std and var spend more on Python than on
    a vector of C values."""
    mean = np.float64(values.sum()) / len(values)
    deviation = values - mean
    return mean, np.float64(deviation @ deviation)


def simplex_gap(left: Array, right: Array, block: int = DEFAULT_BLOCK,
                shared: Shared | None = None, tile_dtype: Any = None,
                grams: Shared | None = None) -> float:
    """|| G/||G||_F - (I - 11^T/C)/sqrt(C-1) ||_F for G = left @ right.T (C x C).

    etf_error uses left = right = M~ (or W); wh_duality uses left = W, right = M~.
    Every entry of the difference is formed and squared, so that a gap of 1e-10 is
    resolved to about 1e-15 (``sqrt(2 - 2 <G, target> / ||G||)`` would lose every digit
    below about 1e-8); for C > d + 1 the gap is at least sqrt((C-1-d)/(C-1)) and the
    trace identity below loses nothing. Else, up to C^2 = _DENSE_GRAM_LIMIT, G is formed
    whole; beyond, it is summed in block x block tiles (O(block^2) memory) and
    normalised by the estimate
    ||G||_F^2 = <L^T L, R^T R>, whose error the same pass measures and removes.
    ``shared`` (see :data:`Shared`) keeps the scaled arrays and the d x d Grams L^T L and
    R^T R, so that each is formed once over several calls (``grams``, its name in the
    previous release, still works and warns). ``tile_dtype`` (np.float32)
    forms the tiles in float32 and sums them in float64.
    """
    if grams is not None:
        warnings.warn("simplex_gap(grams=...) is now simplex_gap(shared=...)",
                      DeprecationWarning, stacklevel=2)
        shared = grams if shared is None else shared
    with np.errstate(invalid="ignore", divide="ignore"):  # a zero matrix gives NaN
        left_gram, right_gram = _scaled_gram(left, shared), _scaled_gram(right, shared)
        left_is_right, original, right_original = right is left, left, right
        left = scaled(left, shared)[1]
        right = left if left_is_right else scaled(right, shared)[1]
        count = left.shape[0]
        target = 1.0 / np.sqrt(count - 1)
        if count <= left.shape[1] + 1 and count * count <= _DENSE_GRAM_LIMIT:
            # kept in ``shared`` only where the pass over pairs reads it too
            kept = left_is_right and _dense(count, left.shape[1], block, tile_dtype)
            gram = _outer_gram(original, shared) if kept else left @ right.T
            # G / ||G|| - T: in a new array where G is kept for others, else in G itself
            norm = _scalar(_frobenius(gram))
            gap = gram / norm if kept else gram
            if not kept:
                gap /= norm
            gap += target / count
            _subtract_diagonal(gap, target)
            return float(np.sqrt(_scalar(squared_norm(gap))))
        estimate = np.sqrt(_scalar((left_gram() * right_gram()).sum()))
        if count > left.shape[1] + 1:
            # rank G <= d < C - 1: the gap is at least sqrt((C-1-d)/(C-1)), so the trace
            # identity <G, I - 11^T/C> = Tr(L R^T) - (1^T L)(R^T 1)/C cancels nothing and
            # the O(C^2 d) tiles are not needed
            # each array's squared row norms and column sums formed once per call
            dots = (_squared_row_norms(original, shared).sum() if left_is_right
                    else _lib(left).einsum("cd,cd->", left, right))
            inner = _scalar(dots - _column_sums(original, shared)
                            @ _column_sums(right_original, shared) / count)
            return float(np.sqrt(max(2.0 - 2.0 * inner * target / estimate, 0.0)))
        gap_sq, norm_sq = _tiled_gap_sums(left, right, float(estimate), target, block,
                                          tile_dtype)
        # with r = ||G|| / estimate: ||G/||G|| - T||^2 = (gap_sq - (r - 1)^2) / r, exactly
        ratio = np.sqrt(norm_sq)
        return float(np.sqrt(max(gap_sq - (ratio - 1.0) ** 2, 0.0) / ratio))


def _tiled_gap_sums(left: Array, right: Array, estimate: float, target: float,
                    block: int, tile_dtype: Any = None) -> tuple[float, float]:
    """(||G/e - T||_F^2, ||G/e||_F^2) over block x block tiles of G = left @ right.T.

    T = (I - 11^T/C) * target and e = ``estimate``. A symmetric G (``left is right``)
    sums only the tiles on and above the diagonal, counting those above twice.
    """
    count = left.shape[0]
    symmetric = left is right
    off_diagonal = target / count
    gap_sq = norm_sq = 0.0
    left = _as_dtype(left, tile_dtype)
    right = left if symmetric else _as_dtype(right, tile_dtype)
    for i0 in range(0, count, block):
        rows = slice(i0, min(i0 + block, count))
        for j0 in range(i0 if symmetric else 0, count, block):
            cols = slice(j0, min(j0 + block, count))
            tile = _as_dtype(left[rows] @ right[cols].T, np.float64)
            tile /= estimate
            weight = 2.0 if symmetric and j0 > i0 else 1.0
            norm_sq += weight * float((tile * tile).sum())
            tile += off_diagonal
            if i0 == j0:
                _subtract_diagonal(tile, target)
            gap_sq += weight * float((tile * tile).sum())
    return gap_sq, norm_sq


def self_duality(weight: Array, centred_means: Array, shared: Shared | None = None) -> float:
    """|| W/||W||_F - M~/||M~||_F ||_F^2 (Papyan's NC3)."""
    weight = scaled(weight, shared)[1]
    centred_means = scaled(centred_means, shared)[1]
    a = 1.0 / _scalar(_frobenius(weight))
    b = 1.0 / _scalar(_frobenius(centred_means))
    # the gap itself, for its digits, as a^2 ||w - (b / a) m||^2: two passes over chunks
    # of rows that stay in cache, and no C x d temporaries
    ratio, total = b / a, 0.0
    buffer = _empty(weight, min(_ROW_CHUNK, weight.shape[0]) * weight.shape[1])
    for start in range(0, weight.shape[0], _ROW_CHUNK):
        rows = slice(start, start + _ROW_CHUNK)
        gap = buffer[: math.prod(weight[rows].shape)].reshape(weight[rows].shape)
        _lib(gap).multiply(centred_means[rows], ratio, out=gap)
        _lib(gap).subtract(weight[rows], gap, out=gap)
        total += float(squared_norm(gap))
    return total * float(a) * float(a)


#: Rows per chunk of the O(C d) passes done in pieces (a few hundred KiB at d = 512).
_ROW_CHUNK = 64


def squared_norm(x: Array) -> Array:
    """||x||_F^2 as a 0-d array (one pass, no temporary for a contiguous x)."""
    flat = x.reshape(-1)
    return flat @ flat


def _frobenius(x: Array) -> Array:
    """||x||_F as a 0-d array."""
    return squared_norm(x) ** 0.5


# ---------------------------------------------------------------------------------------
# One shared pass over class pairs, and the closed forms that need no pairs
# (definitions §1 and §7). Costs are stated in docs/performance.md.

#: Below this fraction of the squared norms a Gram-based squared distance has lost most
#: of its digits to cancellation; such pairs are recomputed from explicit differences.
_CANCELLATION = 1e-6
#: The same for float32 tile products, whose Gram entries carry errors of about
#: sqrt(d) 2^-24 times the squared norms: closer pairs are recomputed in float64.
_CANCELLATION_FLOAT32 = 1e-2


@dataclass
class AngleSums:
    """Sums over the pairs c < c' of s = cos(v_c, v_c') + 1/(C-1), of |s|, and of
    (s - centre)^2 with ``centre`` the exact mean of s (from a closed form), so that
    the spread suffers no cancellation however close the cosines are to each other.

    ``square`` is None when the caller asked for the closed form of the spread instead.
    ``nearest``, when asked for (:func:`pair_sums`), is each row's largest cosine to any
    other row, (C,): a running maximum during the pass, a numpy vector after it.
    """

    shifted: float = 0.0
    square: float | None = 0.0
    absolute: float = 0.0
    centre: float = 0.0
    nearest: Array | None = None

    def spread(self, pairs: int) -> float:
        """Population std over the pairs of the cosines (equiangularity)."""
        assert self.square is not None, "the squares were not summed (closed form used)"
        _, variance = pair_moments(self.shifted - self.centre * pairs, self.square, pairs)
        return float(np.sqrt(variance))


@dataclass
class PairSums:
    """Float64 sums over the pairs c < c' of one pass (see :func:`pair_sums`).

    Attributes
    ----------
    pairs : int
        C (C - 1) / 2.
    cdnv : float
        Sum of (sigma_c^2 + sigma_c'^2) / (2 ||mu_c - mu_c'||^p).
    means, weights : AngleSums
        Cosine sums of the centred means and of the classifier rows (None without W).
    chord, chord_square : float
        Sums of ||u_c - u_c'|| and of its square, u the unit centred means.
    log, log_square : float
        Sums of -log ||u_c - u_c'|| and of its square (inf for coinciding directions).
    """

    pairs: int
    cdnv: float = 0.0
    means: AngleSums = field(default_factory=AngleSums)
    weights: AngleSums | None = None
    chord: float = 0.0
    chord_square: float = 0.0
    log: float = 0.0
    log_square: float = 0.0


def _pair_blocks(n: int, block: int) -> Iterator[tuple[slice, slice]]:
    """Tiles (rows, cols) covering the pairs i < j: those on and above the diagonal.

    A tile on the diagonal is used whole (a symmetric square: each pair twice, plus the
    diagonal, which the sums mask); gathering its strict upper triangle instead would
    cost more than the products themselves.
    """
    for i0 in range(0, n, block):
        rows = slice(i0, min(i0 + block, n))
        for j0 in range(i0, n, block):
            if i0 != j0 or rows.stop - i0 > 1:  # a one-row diagonal tile holds no pair
                yield rows, slice(j0, min(j0 + block, n))


def _fill_diagonal(square: Array, value: float) -> None:
    if isinstance(square, torch.Tensor):
        square.diagonal().fill_(value)
    elif square.flags.c_contiguous and square.shape[0] == square.shape[1]:
        # a strided view of the diagonal: np.fill_diagonal's checks cost more than that
        square.reshape(-1)[:: square.shape[1] + 1] = value
    else:
        np.fill_diagonal(square, value)


class _Tile:
    """One tile of the pass over pairs and its reused buffers.

    A tile is a 2-D (rows x cols) view of flat buffers allocated once (fresh C x C-sized
    temporaries on every tile cost page faults). A tile on the diagonal holds every pair
    twice: its sums are halved (:attr:`weight`) and its diagonal is given values that add
    nothing (:meth:`mask_diagonal`). With ``tile_dtype`` float32 the products are formed
    in float32 (operands cast once by :meth:`operand`) and stored in float64, and the
    cancellation test is widened to :data:`_CANCELLATION_FLOAT32`.
    """

    def __init__(self, like: Array, block: int, tile_dtype: Any = None) -> None:
        self._like = like
        self._flat = [_empty(like, block * block) for _ in range(2)]
        self.rows = self.cols = slice(0, 0)
        self.tile_dtype = tile_dtype
        self.cancellation = _CANCELLATION_FLOAT32 if _float32(tile_dtype) else _CANCELLATION

    def operand(self, vectors: Array) -> Array:
        """``vectors`` in the dtype of the tile products."""
        return _as_dtype(vectors, self.tile_dtype)

    def move(self, rows: slice, cols: slice) -> None:
        self.rows, self.cols = rows, cols

    @property
    def diagonal(self) -> bool:
        """Whether the tile is a square on the diagonal (each of its pairs twice)."""
        return self.rows.start == self.cols.start

    @property
    def weight(self) -> float:
        """What a sum over the tile counts for in a sum over pairs: 1/2 on the diagonal."""
        return 0.5 if self.diagonal else 1.0

    def mask_diagonal(self, x: Array, value: float) -> int:
        """Set the diagonal of a tile on the diagonal to ``value``; how many entries."""
        if not self.diagonal:
            return 0
        _fill_diagonal(x, value)
        return self.rows.stop - self.rows.start

    def buffers(self) -> list[Array]:
        """Two scratch arrays of the tile's shape."""
        shape = (self.rows.stop - self.rows.start, self.cols.stop - self.cols.start)
        return [flat[: shape[0] * shape[1]].reshape(shape) for flat in self._flat]

    def product(self, left: Array, out: Array) -> Array:
        """left[rows] @ left[cols].T, into ``out`` (``left`` from :meth:`operand`); on
        the diagonal the BLAS takes it as a symmetric rank-k update (half the work)."""
        if left.dtype == out.dtype:
            return _lib(left).matmul(left[self.rows], left[self.cols].T, out=out)
        out[...] = left[self.rows] @ left[self.cols].T
        return out

    def vectors(self, values: Array) -> tuple[Array, Array]:
        """Per-class values broadcast to the tile: (row values, column values)."""
        return values[self.rows, None], values[None, self.cols]

    def cross_sum(self, x: Array, values: Array) -> float:
        """Sum over the tile of x_ij (values_i + values_j) (one reduction of a tile on
        the diagonal, symmetric up to rounding)."""
        # matrix-vector products: fewer passes than the sums along each axis
        if self.diagonal:
            return 2.0 * float((x @ values[self.cols]).sum())
        return float((x @ values[self.cols]).sum() + (values[self.rows] @ x).sum())

    def refine(self, squared: Array, vectors: Array, sq_norms: Array | None) -> None:
        """Recompute, in place, the squared distances of the tile that cancelled.

        ``squared`` came from squared norms minus twice a Gram entry; where it is below
        _CANCELLATION times the two squared norms (``sq_norms``; None for unit vectors)
        it is replaced by the squared norm of the explicit difference. One min() keeps
        the common case at a single reduction. (The diagonal of a tile on the diagonal
        is masked by the caller first.)
        """
        if sq_norms is None:
            limit: Array | float = 2.0 * self.cancellation
            bound = limit
        else:
            bound = self.cancellation * float(sq_norms[self.rows].max()
                                              + sq_norms[self.cols].max())
        if float(squared.min()) >= bound:
            return
        if sq_norms is not None:
            norm_r, norm_c = self.vectors(sq_norms)
            limit = self.cancellation * (norm_r + norm_c)
        risky = squared < limit
        i, j = _nonzero(risky)
        diff = vectors[self.rows.start + i] - vectors[self.cols.start + j]
        squared[risky] = _lib(diff).einsum("pd,pd->p", diff, diff)


def _add_nearest(cosines: Array, sums: AngleSums, tile: _Tile) -> None:
    """Raise ``sums.nearest`` to the largest cosine of each row and column of the tile
    (its diagonal, a row with itself, is first set to -inf; the caller masks it again)."""
    best = sums.nearest
    if best is None:
        return
    tile.mask_diagonal(cosines, -math.inf)
    xp = _lib(cosines)
    for index, axis in ((tile.rows, 1), (tile.cols, 0)):
        peak = cosines.amax(dim=axis) if xp is torch else cosines.max(axis=axis)
        xp.maximum(best[index], peak, out=best[index])


def _angle_sums(cosines: Array, offset: float, sums: AngleSums, spare: Array,
                tile: _Tile) -> None:
    """Add a tile of cosines to ``sums``; ``cosines`` and ``spare`` are overwritten.

    The diagonal of a tile on the diagonal is set to the centre: it adds nothing to the
    squares, and its known share of the other two sums is taken off.
    """
    cosines += offset
    masked = tile.mask_diagonal(cosines, sums.centre)
    sums.shifted += tile.weight * (float(cosines.sum()) - masked * sums.centre)
    if sums.square is not None:
        deviation = _lib(cosines).subtract(cosines, sums.centre, out=spare).ravel()
        sums.square += tile.weight * float(deviation @ deviation)
    absolute = float(_lib(cosines).abs(cosines, out=cosines).sum())
    sums.absolute += tile.weight * (absolute - masked * abs(sums.centre))


def _angle_start(unit: _UnitRows, offset: float, squares: bool) -> AngleSums:
    """Empty sums, centred at the mean of cos + offset over pairs: the mean cosine over
    c != c' is (||sum_c u_c||^2 - sum_c ||u_c||^2) / (C (C - 1)). (Any centre gives the
    same spread; this one leaves nothing to cancel.)"""
    count = unit.inverse.shape[0]
    total = unit.inverse @ unit.vectors
    mean = _scalar(total @ total - unit.squares().sum()) / (count * (count - 1))
    return AngleSums(square=0.0 if squares else None, centre=float(mean + offset))


class _UnitRows:
    """The rows u_c = v_c / ||v_c|| of ``vectors`` (C, d), from their squared norms
    (``squares``, else formed here), without a C x d array unless asked for: indexing
    forms only the rows indexed (the few pairs that :meth:`_Tile.refine` recomputes).
    A zero row gives inf and NaN downstream."""

    def __init__(self, vectors: Array, squares: Array | None = None) -> None:
        if squares is None:
            squares = _lib(vectors).einsum("cd,cd->c", vectors, vectors)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.inverse = 1.0 / _lib(squares).sqrt(squares)  # 1 / ||v_c||
        self.vectors, self._squares = vectors, squares

    def squares(self) -> Array:
        """||u_c||^2 as rounded: 1 up to a few eps."""
        with np.errstate(invalid="ignore"):
            return self._squares * self.inverse**2

    def __getitem__(self, index: Any) -> Array:
        return self.vectors[index] * self.inverse[index][:, None]

    def whole(self) -> Array:
        """All of them, (C, d)."""
        with np.errstate(invalid="ignore"):
            return self.vectors * self.inverse[:, None]


def pair_sums(
    centred: Array,
    variances: Array,
    weight: Array | None = None,
    *,
    exponent: float = 2.0,
    cosine_squares: bool = True,
    block: int = DEFAULT_BLOCK,
    tile_dtype: Any = None,
    shared: Shared | None = None,
    nearest: bool = False,
) -> PairSums:
    """Every sum over class pairs that the metrics need, in ONE tiled pass.

    Per tile, one Gram product of the centred means gives the distances of ``cdnv``,
    the cosines of ``equiangularity_means`` / ``maxangle_means`` and the chords of the
    ``gnc2`` metrics; one product of the classifier rows gives their cosines. Time:
    C^2 d multiply-adds (half with no classifier) and about 20 passes over C^2 / 2
    tile entries; extra memory: 2 block^2 float64 buffers and a few C x d arrays.

    Parameters
    ----------
    centred : ndarray or float64 tensor of shape (C, d)
        Centred class means mu_c - mu_G (the other arrays alike, on the same device).
    variances : ndarray of shape (C,)
        sigma_c^2.
    weight : ndarray of shape (C, d), optional
        Classifier rows.
    exponent : float
        p of the cdnv denominator ||mu_c - mu_c'||^p (2 is Galanti et al.'s CDNV).
    cosine_squares : bool
        Also sum the squared cosines (the pairwise form of equiangularity); False when
        the caller uses :func:`cosine_spread` (C > d) instead.
    block : int
        Tile side.
    tile_dtype : np.float32, optional
        Form the tile products in float32 (sums stay float64).
    shared : dict, optional
        See :data:`Shared` (the scaled centred means).
    nearest : bool
        Also each row's largest cosine to any other row, max_{j != c} cos(v_c, v_j), of
        the centred means and of the classifier rows (``AngleSums.nearest``), from the
        tiles of cosines formed anyway: two more reductions a tile. Only with float64
        tiles (float32 cosines would not give the certified bound of
        :func:`nclab.core.margins.ovr_margin_bracket`); with float32 tiles they stay None.

    Returns
    -------
    PairSums
    """
    count = centred.shape[0]
    offset = 1.0 / (count - 1)
    # one tile, the whole Gram: each array's is the one the ETF gaps use (shared)
    dense, original = _dense(count, centred.shape[1], block, tile_dtype), centred
    # the cdnv ratio gains s^(p-2) under mu -> mu / s, sigma^2 -> sigma^2 / s^2: a
    # power of two s keeps the squared norms far from overflow at no rounding cost
    sq_norms = _squared_row_norms(centred, shared)
    scale, centred = scaled(centred, shared)
    variances = variances / (scale * scale)
    unit_means = _UnitRows(centred, sq_norms)
    result = PairSums(count * (count - 1) // 2,
                      means=_angle_start(unit_means, offset, cosine_squares))
    unit_weights = None
    if weight is not None:
        # the unit rows of W / s are those of W (s a power of two): exact
        unit_weights = _UnitRows(scaled(weight, shared)[1], _squared_row_norms(weight, shared))
        result.weights = _angle_start(unit_weights, offset, cosine_squares)
    if nearest and not _float32(tile_dtype):
        for sums in (result.means, result.weights):
            if sums is not None:
                sums.nearest = _lib(centred).full_like(sq_norms, -math.inf)
    tile = _Tile(centred, min(block, count), tile_dtype)
    centred_operand = tile.operand(centred)
    # W / s as it is: each tile of its Gram is scaled to cosines, as the means' are (no
    # C x d array of unit rows)
    weight_operand = None if unit_weights is None or dense else tile.operand(
        unit_weights.vectors)
    for rows, cols in _pair_blocks(count, block):
        tile.move(rows, cols)
        gram, work = tile.buffers()
        if dense:
            gram[...] = _outer_gram(original, shared)
        else:
            tile.product(centred_operand, gram)
        _add_cdnv(result, tile, gram, work, centred, sq_norms, variances, exponent)
        _scale_entries(gram, unit_means.inverse, tile)  # now the cosines of the means
        _add_chords(result, tile, gram, work, unit_means)
        assert result.means is not None
        _add_nearest(gram, result.means, tile)
        _angle_sums(gram, offset, result.means, work, tile)
        if unit_weights is not None and result.weights is not None:
            if weight_operand is None:  # dense: the Gram of W / s, formed once
                work[...] = _outer_gram(weight, shared)
            else:
                tile.product(weight_operand, work)
            cosines = _scale_entries(work, unit_weights.inverse, tile)
            _add_nearest(cosines, result.weights, tile)
            _angle_sums(cosines, offset, result.weights, gram, tile)
    result.cdnv *= scale ** (2.0 - exponent)
    for sums in (result.means, result.weights):
        if sums is not None and sums.nearest is not None:
            # a cosine is at most 1: rounding may have put it just above
            sums.nearest = np.minimum(host_vector(sums.nearest), 1.0)
    return result


def _scale_entries(x: Array, inverse: Array, tile: _Tile) -> Array:
    """x_ij inverse_i inverse_j, in place, for a tile x of a Gram: its cosines when
    ``inverse`` holds the inverse row norms."""
    norm_r, norm_c = tile.vectors(inverse)
    x *= norm_r
    x *= norm_c
    return x


def _add_cdnv(result: PairSums, tile: _Tile, gram: Array, work: Array, centred: Array,
              sq_norms: Array, variances: Array, exponent: float) -> None:
    """Add sum (sigma_c^2 + sigma_c'^2) / (2 ||mu_c - mu_c'||^p) of the tile to ``result``."""
    xp = _lib(gram)
    squared = xp.multiply(gram, -2.0, out=work)
    norm_r, norm_c = tile.vectors(sq_norms)
    squared += norm_r
    squared += norm_c
    tile.mask_diagonal(squared, math.inf)  # a class with itself: adds 1 / inf = 0
    tile.refine(squared, centred, sq_norms)
    with np.errstate(divide="ignore"):  # coinciding means: an infinite cdnv
        if exponent == 2.0:  # numpy's division: vectorized where its reciprocal is not
            xp.divide(1.0, squared, out=squared) if xp is np else squared.reciprocal_()
        else:
            power = torch.pow if xp is torch else np.power
            power(squared, -exponent / 2, out=squared)
    result.cdnv += tile.weight * tile.cross_sum(squared, variances) / 2


def _add_chords(result: PairSums, tile: _Tile, cosines: Array, work: Array,
                unit: _UnitRows) -> None:
    """Add ||u_c - u_c'|| = sqrt(2 - 2 cos) and -log of it to the sums of ``result``
    (a class with itself adds a chord 0, and then, for the logarithm, a chord 1)."""
    xp = _lib(cosines)
    chord = xp.multiply(cosines, -2.0, out=work)
    chord += 2.0
    tile.mask_diagonal(chord, 2.0)  # no refinement for the diagonal
    tile.refine(chord, unit, None)  # after it every entry is >= 0
    tile.mask_diagonal(chord, 0.0)
    weight = tile.weight
    result.chord_square += weight * float(chord.sum())
    xp.sqrt(chord, out=chord)
    result.chord += weight * float(chord.sum())
    tile.mask_diagonal(chord, 1.0)
    with np.errstate(divide="ignore"):  # coinciding directions: -log 0 = inf
        xp.log(chord, out=chord)
    flat = chord.ravel()
    result.log -= weight * float(flat.sum())
    result.log_square += weight * float(flat @ flat)


def pair_moments(total: float, total_square: float, pairs: int) -> tuple[float, float]:
    """(mean, population variance) from a sum and a sum of squares over ``pairs`` values."""
    mean = total / pairs
    with np.errstate(invalid="ignore"):
        return mean, max(total_square / pairs - mean * mean, 0.0)


#: Above this many classes per dimension the spread of the cosines is computed in closed
#: form (O(C d^2)); below, the squares summed by the pass over pairs cost less.
_CLOSED_FORM_CLASSES_PER_DIM = 4


def spread_in_closed_form(count: int, dim: int, tile_dtype: Any = None) -> bool:
    """Whether equiangularity of C vectors in d dimensions takes :func:`cosine_spread`
    rather than the pairwise squares of :func:`pair_sums`: for C > 4 d (two extra passes
    over C^2 / 2 pairs would cost more than its d x d Gram), and for any C > d with
    float32 tiles (whose cosines carry errors of about 1e-7, the closed form none)."""
    return count > (1 if _float32(tile_dtype) else _CLOSED_FORM_CLASSES_PER_DIM) * dim


def cosine_spread(vectors: Array) -> float:
    """std over c != c' of cos(v_c, v_c') in closed form, O(C d^2): no pass over pairs.

    With unit rows u_c, their mean a, r_c = u_c - a and t_c = a . r_c, the cosine is
    |a|^2 + x_cc' with x_cc' = t_c + t_c' + r_c . r_c', and over all ordered pairs,
    the diagonal included,

        sum x   = 2 C sum_c t_c + ||R^T 1||^2
        sum x^2 = 2 C sum_c t_c^2 + 2 (sum_c t_c)^2 + 4 (R^T t) . (R^T 1) + ||R^T R||_F^2

    from which the diagonal terms x_cc = 2 t_c + ||r_c||^2 are removed. Measuring from
    the mean direction a removes the common part |a|^2 exactly. The variance is a
    difference of two sums; for C > d it is bounded below by about ||R||_F^4 / (d C^2)
    against a squared mean of about ||R||_F^4 / C^4, so nothing cancels. For C <= d
    (near a simplex ETF it would) use the pairwise sums of :func:`pair_sums`.
    """
    count = vectors.shape[0]
    unit = _UnitRows(vectors).whole()
    mean_dir = unit.mean(axis=0)
    resid = unit - mean_dir
    along = resid @ mean_dir
    resid_sum = resid.sum(axis=0)
    gram = resid.T @ resid
    diagonal = 2.0 * along + _lib(resid).einsum("cd,cd->c", resid, resid)
    total = _scalar(2.0 * count * along.sum() + resid_sum @ resid_sum - diagonal.sum())
    total_sq = _scalar(2.0 * count * (along @ along) + 2.0 * along.sum() ** 2
                       + 4.0 * (resid.T @ along) @ resid_sum + (gram * gram).sum()
                       - diagonal @ diagonal)
    _, variance = pair_moments(total, total_sq, count * (count - 1))
    return float(np.sqrt(variance))


def cdnv_matrix(means: np.ndarray, variances: np.ndarray, exponent: float = 2.0
                ) -> np.ndarray:
    """The C x C matrix of (sigma_c^2 + sigma_c'^2) / (2 ||mu_c - mu_c'||^p); 0 diagonal.

    Dense (C^2 memory): meant for figures of which class pairs stay apart.
    """
    centred = means - means.mean(axis=0)
    scale = power_of_two_scale(centred)  # as in pair_sums: squares kept in range
    centred, variances = centred / scale, variances / (scale * scale)
    sq_norms = np.einsum("cd,cd->c", centred, centred)
    tile = _Tile(centred, 0)
    tile.move(slice(0, len(means)), slice(0, len(means)))
    squared = sq_norms[:, None] + sq_norms[None, :] - 2.0 * centred @ centred.T
    tile.refine(squared, centred, sq_norms)
    np.fill_diagonal(squared, np.inf)
    with np.errstate(divide="ignore"):
        ratio = (variances[:, None] + variances[None, :]) / (2.0 * squared ** (exponent / 2))
    return ratio * scale ** (2.0 - exponent)
