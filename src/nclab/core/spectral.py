"""Spectral and effective-rank metrics of the features (definitions §8), from one pass.

The streaming statistics hold, per class, the count n_c and the mean mu_c, and the pooled
within-class scatter S_W (d x d). They give every second moment these metrics need, with
no second pass and no stored features:

    X^T X = S_W + sum_c n_c mu_c mu_c^T                 uncentred second moment
    S_T   = S_W + sum_c n_c (mu_c - mu)(mu_c - mu)^T    total scatter (mu the sample mean)

Every metric here is scale-free: pass the statistics' scaled arrays
(``stats.scaled_means()``, ``stats.scaled_scatter()``), which are of order one whatever
the magnitude of the features. Matrices are validated at the public functions; the
underscored helpers assume that.

**Resolution.** A second moment summed over N rows and then decomposed carries a rounding
error of up to about max(N, d) eps lambda_max in its eigenvalues (the bound of a Gram of N
rows, and the tolerance of numpy's ``matrix_rank``), so eigenvalues below that floor count
as exactly zero: singular values below sqrt(max(N, d) eps) sigma_max (1.5e-6 of the
largest at N = 10,000) are not determined by the statistics. The SVD of the N x d
features would resolve them, at the cost of storing the features.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from nclab.core.errors import NCInputError
from nclab.core.geometry import power_of_two_scale
from nclab.core.validation import positive_int, to_numpy64

#: Added to every normalized singular value or eigenvalue before the entropy, exactly as
#: in Garrido et al. (2023), RankMe; LiDAR (Thilak et al., 2024) uses the same form.
EPSILON = 1e-7
#: LiDAR's regularization Sigma_W + delta (tr(Sigma_W + Sigma_B) / d) I, relative to the
#: features' mean variance per coordinate so that LiDAR is scale-free.
LIDAR_DELTA = 1e-4
#: alpha-ReQ's fit range, ranks k = 6..100 of the descending eigenvalues (1-based), as in
#: the authors' implementation (reptrix, after Stringer et al. 2019).
ALPHA_FIRST_RANK, ALPHA_LAST_RANK = 6, 100
#: Relative asymmetry |A - A^T| / max|A| above which a matrix is not symmetric: far above
#: the rounding of a d x d sum of outer products, far below any genuine asymmetry.
_SYMMETRY_TOLERANCE = 1e-10
#: Most negative eigenvalue, relative to the largest, that a positive semi-definite
#: matrix shows after rounding.
_PSD_TOLERANCE = 1e-9
_EPS = np.finfo(np.float64).eps


class SecondMoments(NamedTuple):
    """The second moments of the features that the spectral metrics read, all (d, d)."""

    uncentred: np.ndarray    #: X^T X
    total: np.ndarray        #: S_T, the scatter about the sample mean
    within_cov: np.ndarray   #: Sigma_W = S_W / N
    between_cov: np.ndarray  #: Sigma_B over the present classes (definitions, Notation)
    num_samples: int         #: N


@dataclass(frozen=True)
class SpectralMetrics:
    """Every metric of definitions §8 from one set of statistics.

    ``alpha_req`` is None when fewer than two ranks of the fit range have an eigenvalue
    above rounding (for example d < 7 with the default range).
    """

    rankme: float | None
    rankme_centred: float | None
    alpha_req: float | None
    lidar: float
    explained_variance: np.ndarray | None  #: (d,), cumulative, ends at 1


# ------------------------------------------------------------------ the statistics
def second_moments(counts: Any, means: Any, scatter: Any) -> SecondMoments:
    """The second moments of the features from the streamed statistics.

    Parameters
    ----------
    counts : array of shape (C,)
        Samples per class n_c (non-negative integers; classes with none are left out).
    means : array of shape (C, d)
        Class means mu_c (rows of absent classes are ignored).
    scatter : array of shape (d, d)
        Pooled within-class scatter S_W = sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T.

    Returns
    -------
    SecondMoments
        X^T X, S_T, Sigma_W = S_W / N and Sigma_B = (1/C) sum_c (mu_c - mu_G)(mu_c - mu_G)^T
        with mu_G the plain average of the present class means.
    """
    parts = _class_parts(*_checked_statistics(counts, means, scatter))
    # X^T X = S_T + N mu mu^T: a sum of semi-definite terms, nothing cancels; the
    # outer product of one vector with itself is exactly symmetric, like the rest
    root_n_mean = math.sqrt(parts.num_samples) * parts.sample_mean
    with np.errstate(over="ignore", invalid="ignore"):  # refused below, in one line
        uncentred = parts.total + np.outer(root_n_mean, root_n_mean)
    if not np.isfinite(uncentred).all():
        raise NCInputError(_OVERFLOW)
    return SecondMoments(uncentred, parts.total, parts.within / parts.num_samples,
                         parts.class_gram / len(parts.centred), parts.num_samples)


_OVERFLOW = "the second moments overflow float64: pass the statistics' scaled means and scatter"


class _ClassParts(NamedTuple):
    """What the metrics read of the statistics, over the present classes."""

    centred: np.ndarray      #: (C', d) class means about their plain average
    class_gram: np.ndarray   #: (d, d) centred^T centred = C' Sigma_B
    total: np.ndarray        #: (d, d) S_T, a new array
    within: np.ndarray       #: (d, d) S_W as given (not copied)
    sample_mean: np.ndarray  #: (d,) mu
    num_samples: int         #: N


def _class_parts(counts: np.ndarray, means: np.ndarray, scatter: np.ndarray) -> _ClassParts:
    """The class Grams and S_T of checked statistics (one C x d x d product when the
    classes are balanced, two otherwise); NCInputError when they overflow."""
    present = counts > 0
    n, mu = counts[present].astype(np.float64), means[present]
    total_count = int(counts.sum())
    with np.errstate(over="ignore", invalid="ignore"):  # refused below, in one line
        centred = mu - mu.mean(axis=0)
        class_gram = centred.T @ centred  # a.T @ a: one syrk
        sample_mean = n @ mu / total_count
        if (n == n[0]).all():  # balanced: the sample mean is the plain mean
            total = scatter + n[0] * class_gram
        else:
            weighted = np.sqrt(n)[:, None] * (mu - sample_mean)
            total = scatter + weighted.T @ weighted
    if not (np.isfinite(total).all() and np.isfinite(sample_mean).all()):
        raise NCInputError(_OVERFLOW)
    return _ClassParts(centred, class_gram, total, scatter, sample_mean, total_count)


def _checked_statistics(counts: Any, means: Any,
                        scatter: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    counts = _finite(counts, "counts")
    means = _finite(means, "means")
    if counts.ndim != 1 or means.ndim != 2 or means.shape[0] != counts.shape[0]:
        raise NCInputError(f"counts must have shape (C,) and means (C, d); got "
                           f"{counts.shape} and {means.shape}")
    if (counts < 0).any() or (counts != np.round(counts)).any():
        raise NCInputError("counts must be non-negative integers")
    if counts.sum() < 1:
        raise NCInputError("the statistics hold no samples")
    scatter = _symmetric(scatter, "scatter", scale=False)
    if scatter.shape[0] != means.shape[1]:
        raise NCInputError(f"scatter has shape {scatter.shape}; the means have dimension "
                           f"{means.shape[1]}")
    return counts.astype(np.int64), means, scatter


# ------------------------------------------------------------------ the metrics
def rankme(second_moment: Any, num_samples: int) -> float:
    """RankMe (Garrido et al., ICML 2023) of the N x d features X as given (uncentred).

    Parameters
    ----------
    second_moment : array of shape (d, d)
        X^T X (any positive multiple of it: the metric is scale-free).
    num_samples : int
        N, the number of rows of X.

    Returns
    -------
    float
        exp(-sum_k p_k log p_k) with p_k = sigma_k / sum_j sigma_j + 1e-7 over the
        min(N, d) singular values sigma_k of X, the square roots of the largest
        eigenvalues of X^T X (X is never formed); in [1, min(N, d)] up to epsilon.
    """
    count = positive_int(num_samples, "num_samples")
    return _required(_rankme_of(_spectrum(second_moment, "second_moment"), count, count),
                     "RankMe is undefined: every feature is zero")


def rankme_centred(total_scatter: Any, num_samples: int) -> float:
    """RankMe of the centred features X - 1 mu^T (mu the sample mean).

    Parameters
    ----------
    total_scatter : array of shape (d, d)
        S_T = (X - 1 mu^T)^T (X - 1 mu^T), or any positive multiple of it.
    num_samples : int
        N >= 2.

    Returns
    -------
    float
        RankMe over the min(N - 1, d) largest singular values of the centred matrix:
        centring removes one dimension, and the zero it forces is not counted.
    """
    rows = positive_int(num_samples, "num_samples")
    if rows < 2:
        raise NCInputError("centred RankMe needs at least 2 samples")
    return _required(_rankme_of(_spectrum(total_scatter, "total_scatter"), rows - 1, rows),
                     "centred RankMe is undefined: every feature is the same")


def alpha_req(covariance: Any, first_rank: int = ALPHA_FIRST_RANK,
              last_rank: int = ALPHA_LAST_RANK, num_samples: int | None = None) -> float:
    """alpha-ReQ (Agrawal et al., NeurIPS 2022): the decay exponent alpha of
    lambda_k ~ k^-alpha, the eigenvalues of the feature covariance in descending order.

    Parameters
    ----------
    covariance : array of shape (d, d)
        The covariance of the features (any positive multiple, e.g. S_T).
    first_rank, last_rank : int
        The fit range of ranks k (1-based, inclusive), cut at the last eigenvalue above
        rounding, max(N, d) eps lambda_1.
    num_samples : int, optional
        N, the number of samples the covariance was summed over (0 when unknown).

    Returns
    -------
    float
        -slope of the least-squares line through (log k, log lambda_k), each point
        weighted 1/k (equal weight per decade of k).
    """
    first, last = _rank_range(first_rank, last_rank)
    rows = 0 if num_samples is None else positive_int(num_samples, "num_samples")
    return _required(_alpha_of(_spectrum(covariance, "covariance"), first, last, rows),
                     f"alpha-ReQ fits ranks {first}..{last}, but fewer than 2 eigenvalues "
                     f"there are above rounding: pass a smaller first_rank")


def lidar(within_cov: Any, between_cov: Any, delta: float = LIDAR_DELTA) -> float:
    """LiDAR (Thilak et al., ICLR 2024) with the classes as the surrogate classes.

    Parameters
    ----------
    within_cov : array of shape (d, d)
        Sigma_W, the pooled within-class covariance.
    between_cov : array of shape (d, d)
        Sigma_B, the covariance of the class means about their plain average.
    delta : float
        Regularization relative to the features' mean variance per coordinate.

    Returns
    -------
    float
        The effective rank (RankMe's entropy form, epsilon 1e-7, over all d eigenvalues)
        of Sigma_W,delta^(-1/2) Sigma_B Sigma_W,delta^(-1/2) with
        Sigma_W,delta = Sigma_W + delta (tr(Sigma_W + Sigma_B) / d) I; its eigenvalues are
        those of the generalized problem Sigma_B v = lambda Sigma_W,delta v.
    """
    delta = _positive(delta, "delta")
    within = _symmetric(within_cov, "within_cov", scale=False)
    between = _symmetric(between_cov, "between_cov", scale=False)
    if within.shape != between.shape:
        raise NCInputError(f"within_cov has shape {within.shape}, between_cov {between.shape}")
    if (np.diag(within) < 0).any():
        raise NCInputError("within_cov is not positive semi-definite (a negative variance)")
    return _lidar_of(within, between, delta)


def explained_variance(covariance: Any) -> np.ndarray:
    """The cumulative explained-variance curve of the feature covariance.

    Parameters
    ----------
    covariance : array of shape (d, d)
        Any positive multiple of the covariance (e.g. S_T).

    Returns
    -------
    ndarray of shape (d,)
        Entry k-1: (lambda_1 + ... + lambda_k) / (lambda_1 + ... + lambda_d), the share of
        the variance in the top k principal directions; non-decreasing in [0, 1], ending at 1.
    """
    return _required(_cumulative(_spectrum(covariance, "covariance")),
                     "the explained variance is undefined: the covariance is zero")


def spectral_metrics(counts: Any, means: Any, scatter: Any, *, delta: float = LIDAR_DELTA,
                     first_rank: int = ALPHA_FIRST_RANK, last_rank: int = ALPHA_LAST_RANK,
                     trusted: bool = False) -> SpectralMetrics:
    """Every metric of definitions §8 from the statistics: one tridiagonal reduction of
    S_T that gives the spectra of both S_T (centred RankMe, alpha-ReQ, the explained
    variance) and X^T X (RankMe), and one generalized eigenvalue problem for LiDAR.

    Parameters
    ----------
    counts, means, scatter
        As in :func:`second_moments` (pass the statistics' scaled means and scatter).
    delta, first_rank, last_rank
        As in :func:`lidar` and :func:`alpha_req`.
    trusted : bool
        The arrays are a CollapseStats' own (``counts``, ``scaled_means()``,
        ``scaled_scatter()``), checked as they were summed: skip their checks.

    Returns
    -------
    SpectralMetrics
    """
    delta = _positive(delta, "delta")
    first, last = _rank_range(first_rank, last_rank)
    if trusted:
        arrays = (np.asarray(counts, dtype=np.int64), np.asarray(means, dtype=np.float64),
                  np.asarray(scatter, dtype=np.float64))
    else:
        arrays = _checked_statistics(counts, means, scatter)
    parts = _class_parts(*arrays)
    rows = parts.num_samples
    if rows < 2:
        raise NCInputError("the spectral metrics need at least 2 samples")
    total, uncentred = _total_and_uncentred_spectra(parts.total, parts.sample_mean, rows)
    if total is None:
        raise NCInputError("every feature is the same: the spectral metrics are undefined")
    return SpectralMetrics(
        rankme=_rankme_of(uncentred, rows, rows),
        rankme_centred=_rankme_of(total, rows - 1, rows),
        alpha_req=_alpha_of(total, first, last, rows),
        lidar=_lidar_of_classes(parts, delta),
        explained_variance=_cumulative(total),
    )


def class_rankme(counts: Any, class_scatter: Any) -> np.ndarray:
    """RankMe of each class's centred features, from its own scatter.

    Parameters
    ----------
    counts : array of shape (C,)
        Samples per class n_c.
    class_scatter : array of shape (C, d, d)
        S_c = sum_{y_i = c} (h_i - mu_c)(h_i - mu_c)^T (any positive multiple of each).

    Returns
    -------
    ndarray of shape (C,)
        The entropy rank of the min(n_c - 1, d) largest singular values of the class's
        centred features, as ``rankme_centred`` for the whole; NaN where it is undefined
        (fewer than 2 samples, or all of the class's features equal).
    """
    counts = _finite(counts, "counts")
    scatter = _finite(class_scatter, "class_scatter")
    if counts.ndim != 1 or scatter.shape[:1] != counts.shape or scatter.ndim != 3 \
            or scatter.shape[1] != scatter.shape[2]:
        raise NCInputError(f"counts must have shape (C,) and class_scatter (C, d, d); got "
                           f"{counts.shape} and {scatter.shape}")
    if (counts < 0).any() or (counts != np.round(counts)).any():
        raise NCInputError("counts must be non-negative integers")
    ranks = np.full(counts.shape, np.nan)
    for label in np.flatnonzero(counts >= 2):
        rows = int(counts[label])
        values = _spectrum(scatter[label], f"class_scatter[{label}]")
        found = _rankme_of(values, rows - 1, rows)
        ranks[label] = np.nan if found is None else found
    return ranks


# ------------------------------------------------------------------ the shared spectra
def _total_and_uncentred_spectra(total: np.ndarray, sample_mean: np.ndarray,
                                 rows: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Descending eigenvalues (clipped at 0; None for a zero matrix) of S_T and of
    X^T X = S_T + N mu mu^T from one tridiagonal reduction.

    A reflector H maps mu onto the first axis; LAPACK's reduction of H S_T H to a
    tridiagonal T (``dsytrd``, lower) leaves that axis where it is, so the same
    orthogonal change of basis takes X^T X to T + N ||mu||^2 e_1 e_1^T: the two spectra
    differ in one diagonal entry of T, and each costs an O(d^2) ``dsterf`` after the one
    O(d^3) reduction (two ``eigvalsh`` calls would reduce twice). Orthogonal
    transformations keep the rounding at eps times the largest eigenvalue, as eigh's own.
    ``total`` is overwritten.
    """
    from scipy.linalg import lapack  # here: `import nclab` stays free of scipy

    scale = power_of_two_scale(total)
    total *= 1.0 / scale  # exact: a power of two
    norm = float(np.linalg.norm(sample_mean))
    with np.errstate(over="ignore"):
        boost = rows * (norm * norm) / scale
    if not math.isfinite(boost):
        raise NCInputError(_OVERFLOW)
    if norm > 0:
        _reflect_onto_first_axis(total, sample_mean / norm)
    # the C-ordered matrix read as Fortran's transpose: symmetric, so no copy is needed
    _, diagonal, off_diagonal, _, info = lapack.dsytrd(
        total.T, lower=1, lwork=_REDUCTION_BLOCK * total.shape[0], overwrite_a=1)
    values = []
    for shift in (0.0, boost):
        shifted = diagonal.copy()
        shifted[0] += shift
        found, failed = lapack.dsterf(shifted, off_diagonal.copy(), overwrite_d=1,
                                      overwrite_e=1)
        if info or failed:
            raise NCInputError("the eigenvalue solver did not converge on the total scatter")
        found = found[::-1]
        _check_semidefinite(found, "the second moment" if shift else "the total scatter")
        values.append(np.maximum(found, 0.0) if found[0] > 0 else None)
    return values[0], values[1]


#: Columns per block of LAPACK's blocked tridiagonal reduction (its workspace is this
#: times d); scipy's default workspace would run the unblocked, level-2 BLAS one.
_REDUCTION_BLOCK = 64


def _reflect_onto_first_axis(matrix: np.ndarray, unit: np.ndarray) -> None:
    """matrix <- H matrix H, in place, for the Householder reflector H (symmetric,
    orthogonal) with H unit = -sign(unit_0) e_1: a rank-two update, O(d^2)."""
    v = unit.copy()
    v[0] += math.copysign(1.0, v[0])  # no cancellation in the first entry
    v /= np.linalg.norm(v)
    product = matrix @ v
    w = 2.0 * product - 2.0 * float(v @ product) * v
    matrix -= np.outer(v, w)
    matrix -= np.outer(w, v)


# ------------------------------------------------------------------ LiDAR
def _lidar_of_classes(parts: _ClassParts, delta: float) -> float:
    """LiDAR from the class means and S_W; with fewer classes than dimensions through
    the C' x C' matrix Z Z^T, Z = M~ L^-T, whose nonzero eigenvalues are those of the
    generalized problem (Sigma_B = M~^T M~ / C'), else through that problem itself."""
    centred, rows = parts.centred, parts.num_samples
    count, dim = centred.shape
    between_trace = float(np.einsum("cd,cd->", centred, centred)) / count
    factor, unit = _regularized_factor(parts.within / rows, between_trace, delta)
    if count >= dim:
        return _lidar_from(_generalized_values(factor, parts.class_gram / (count * unit)))
    import scipy.linalg

    solved = scipy.linalg.solve_triangular(factor, centred.T, lower=True, check_finite=False)
    small = np.linalg.eigvalsh(solved.T @ solved / (count * unit))[::-1]
    values = np.zeros(dim)  # the d - C' further eigenvalues are zero: LiDAR counts all d
    values[:count] = small
    return _lidar_from(values)


def _lidar_of(within: np.ndarray, between: np.ndarray, delta: float) -> float:
    """LiDAR of validated symmetric Sigma_W, Sigma_B (d, d)."""
    factor, unit = _regularized_factor(within, float(np.trace(between)), delta)
    return _lidar_from(_generalized_values(factor, between / unit))


def _regularized_factor(within: np.ndarray, between_trace: float,
                        delta: float) -> tuple[np.ndarray, float]:
    """(L, s): the lower Cholesky factor L of (Sigma_W + delta v I) / s, with v the mean
    variance per coordinate (tr(Sigma_W) + tr(Sigma_B)) / d and s a power of two near v
    (the ratios are unchanged; nothing over- or underflows)."""
    from scipy.linalg import lapack

    dim = within.shape[0]
    variance = (float(np.trace(within)) + between_trace) / dim
    if not variance > 0:
        raise NCInputError("LiDAR is undefined: every feature is the same")
    unit = power_of_two_scale(np.array([variance]))
    regularized = within / unit
    regularized.flat[:: dim + 1] += delta * variance / unit
    factor, info = lapack.dpotrf(regularized.T, lower=1, clean=0, overwrite_a=1)
    if info != 0:
        raise NCInputError("within_cov is not positive semi-definite")
    return factor, unit


def _generalized_values(factor: np.ndarray, between: np.ndarray) -> np.ndarray:
    """Descending eigenvalues of L^-1 Sigma_B L^-T (``dsygst``, ``dsytrd``, ``dsterf``:
    the generalized eigenvalues without eigenvectors); ``between`` is overwritten."""
    from scipy.linalg import lapack

    reduced, info = lapack.dsygst(between.T, factor, itype=1, lower=1, overwrite_a=1)
    _, diagonal, off_diagonal, _, info_tri = lapack.dsytrd(
        reduced, lower=1, lwork=_REDUCTION_BLOCK * between.shape[0], overwrite_a=1)
    values, failed = lapack.dsterf(diagonal, off_diagonal, overwrite_d=1, overwrite_e=1)
    if info or info_tri or failed:
        raise NCInputError("the eigenvalue solver did not converge on LiDAR's matrix")
    return values[::-1]


def _lidar_from(values: np.ndarray) -> float:
    _check_semidefinite(values, "between_cov")
    if not values[0] > 0:
        raise NCInputError("LiDAR is undefined: all class means coincide")
    return _effective_rank(np.maximum(values, 0.0))


# ------------------------------------------------------------------ on eigenvalues
def _effective_rank(values: np.ndarray) -> float:
    """exp(-sum p log p), p = values / sum(values) + EPSILON; values >= 0, sum > 0."""
    p = values / values.sum() + EPSILON
    return float(np.exp(-np.sum(p * np.log(p))))


def _rankme_of(eigenvalues: np.ndarray | None, count: int, rows: int) -> float | None:
    """RankMe from the descending eigenvalues of a Gram of ``rows`` rows: the first
    ``count`` singular values, those at rounding level exactly zero; None for a zero Gram."""
    if eigenvalues is None:
        return None
    squares = eigenvalues[:count]
    singular = np.sqrt(np.where(squares > _floor(eigenvalues, rows), squares, 0.0))
    return _effective_rank(singular)


def _alpha_of(eigenvalues: np.ndarray | None, first: int, last: int,
              rows: int) -> float | None:
    """-slope of log lambda_k on log k over ranks first..last (cut at rounding), with
    weights 1/k; None when fewer than two ranks remain."""
    if eigenvalues is None:
        return None
    above = int(np.count_nonzero(eigenvalues > _floor(eigenvalues, rows)))
    ranks = np.arange(first, min(last, above) + 1, dtype=np.float64)
    if ranks.size < 2:
        return None
    x, y, w = np.log(ranks), np.log(eigenvalues[ranks.astype(int) - 1]), 1.0 / ranks
    x_mean, y_mean = np.average(x, weights=w), np.average(y, weights=w)
    slope = np.sum(w * (x - x_mean) * (y - y_mean)) / np.sum(w * (x - x_mean) ** 2)
    return float(-slope)


def _cumulative(eigenvalues: np.ndarray | None) -> np.ndarray | None:
    if eigenvalues is None:
        return None
    shares = np.cumsum(eigenvalues) / eigenvalues.sum()
    shares[-1] = 1.0  # exactly, whatever the rounding of the sum
    return np.minimum(shares, 1.0)


def _floor(eigenvalues: np.ndarray, rows: int) -> float:
    """The rounding level of the eigenvalues of a d x d Gram of ``rows`` rows:
    max(rows, d) eps lambda_max."""
    return max(rows, eigenvalues.size) * _EPS * eigenvalues[0]


def _spectrum(matrix: Any, name: str) -> np.ndarray | None:
    """Descending eigenvalues of a validated, exactly rescaled symmetric matrix, clipped
    at zero; None for a zero matrix."""
    return _scaled_spectrum(_symmetric(matrix, name, scale=True), name)


def _scaled_spectrum(matrix: np.ndarray, name: str) -> np.ndarray | None:
    scale = power_of_two_scale(matrix)
    values = np.linalg.eigvalsh(matrix / scale)[::-1]
    _check_semidefinite(values, name)
    return np.maximum(values, 0.0) if values[0] > 0 else None


# ------------------------------------------------------------------ validation
def _finite(value: Any, name: str) -> np.ndarray:
    array = to_numpy64(value, name)
    if not np.isfinite(array).all():
        raise NCInputError(f"{name} holds NaN or infinite values")
    return array


def _symmetric(matrix: Any, name: str, scale: bool) -> np.ndarray:
    """A finite, square, symmetric (up to rounding) float64 matrix, symmetrized; with
    ``scale`` divided by a power of two (exactly) so that its largest entry is of order 1."""
    array = _finite(matrix, name)
    if array.ndim != 2 or array.shape[0] != array.shape[1] or array.shape[0] == 0:
        raise NCInputError(f"{name} must be a non-empty square (d, d) matrix; got shape "
                           f"{array.shape}")
    if scale:
        array = array / power_of_two_scale(array)
    peak = np.max(np.abs(array))
    if np.max(np.abs(array - array.T)) > _SYMMETRY_TOLERANCE * peak:
        raise NCInputError(f"{name} is not symmetric")
    return (array + array.T) / 2


def _check_semidefinite(descending: np.ndarray, name: str) -> None:
    if descending[-1] < -_PSD_TOLERANCE * max(descending[0], 0.0) or not descending[0] >= 0:
        raise NCInputError(f"{name} is not positive semi-definite (eigenvalue "
                           f"{descending[-1]:.3g} against a largest of {descending[0]:.3g})")


def _positive(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise NCInputError(f"{name} must be a positive number; got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise NCInputError(f"{name} must be a positive finite number; got {value!r}")
    return number


def _rank_range(first_rank: int, last_rank: int) -> tuple[int, int]:
    first = positive_int(first_rank, "first_rank")
    last = positive_int(last_rank, "last_rank")
    if last <= first:
        raise NCInputError(f"last_rank must exceed first_rank; got {first}..{last}")
    return first, last


def _required(value: Any, message: str) -> Any:
    if value is None:
        raise NCInputError(message)
    return value
