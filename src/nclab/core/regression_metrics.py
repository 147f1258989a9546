"""NRC1-NRC3, the explained variance, MSE and R^2 (definitions §5) from the statistics.

The functional layer of the regression side: formulas on a
:class:`~nclab.core.regression_stats.RegressionStats` (whose ``compute`` calls them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nclab.core.errors import NCInputError
from nclab.core.io import json_ready
from nclab.core.validation import to_numpy64

if TYPE_CHECKING:  # the statistics call these formulas, never the reverse
    from nclab.core.regression_stats import RegressionStats

#: Points of the first, coarse grid of the gamma search on (0, lambda_min).
GAMMA_GRID = 256


@dataclass(frozen=True)
class RegressionMetrics:
    """NRC1-NRC3 (definitions §5) and the fit of the linear head, by their names there.

    ``nrc2``, ``mse`` and ``r2`` need the weight W (and bias b); ``nrc3`` needs W, n >= 2
    and a target covariance of full rank. Absent metrics are None and ``warnings`` says why.
    ``gamma`` is the gamma of NRC3, given or found by the grid search (``gamma_searched``).
    ``explained_variance_ratio`` holds the top principal components of the centred
    features, largest first; ``top_n_explained`` is the sum of the first n of them.
    """

    nrc1: float | None = None
    nrc2: float | None = None
    nrc3: float | None = None
    gamma: float | None = None
    gamma_searched: bool = False
    mse: float | None = None
    r2: float | None = None
    explained_variance_ratio: tuple[float, ...] = ()
    top_n_explained: float | None = None
    lambda_min: float | None = None
    lambda_max: float | None = None
    num_samples: int = 0
    dim: int = 0
    target_dim: int = 0
    zero_features: int = 0
    centred_pca: bool = True
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; non-finite values become None."""
        return json_ready(self)


def compute_regression_metrics(
    stats: RegressionStats,
    weight: Any = None,
    bias: Any = None,
    *,
    gamma: float | str | None = "search",
    centred_pca: bool = True,
    components: int | None = None,
) -> RegressionMetrics:
    """Compute NRC1-NRC3, the explained variance, MSE and R^2.

    Parameters
    ----------
    stats : RegressionStats
    weight : array of shape (n, d), optional
        Last-layer weight W.
    bias : array of shape (n,), optional
        Last-layer bias b (zero when omitted).
    gamma : float, "search" or None
        NRC3's gamma: a value in (0, lambda_min), ``"search"`` for the minimizing gamma on
        that interval, or None to skip NRC3. With singular target covariance an explicit
        float is an error and ``"search"`` leaves nrc3 None with a warning.
    centred_pca : bool
        Principal directions of the centred features (definitions); False uses the uncentred
        second moment of h instead, as some public code does.
    components : int, optional
        How many explained-variance ratios to report; default min(d, max(10, n + 1)).

    Returns
    -------
    RegressionMetrics
    """
    if stats.dim is None or stats.target_dim is None or stats.num_samples == 0:
        raise NCInputError("no samples were seen: nothing to measure")
    d, n = stats.dim, stats.target_dim
    w, b = as_regressor(weight, bias, n, d)
    notes: list[str] = []
    if stats.zero_features:
        notes.append(f"{stats.zero_features} feature vectors are zero and were left out of "
                     "nrc1 and nrc2 (no direction)")
    if n >= d:
        notes.append(f"n={n} >= d={d}: the top-n principal subspace is all of R^d, so nrc1 is 0 "
                     "trivially; nrc3 cannot reach 0 when n > d (rank W W^T <= d)")
    values: dict[str, Any] = {}
    ratios, directions = _principal_components(stats, centred_pca)
    k = min(d, components if components is not None else max(10, n + 1))
    values["explained_variance_ratio"] = tuple(float(r) for r in ratios[:k])
    values["top_n_explained"] = float(ratios[: min(n, d)].sum())
    if stats.unit_count:
        unit = stats.unit_second_moment()
        values["nrc1"] = _residual_energy(unit, directions[:, min(n, d):])
        if w is not None:
            values["nrc2"] = _residual_energy(unit, _row_space_complement(w))
    else:
        notes.append("every feature vector is zero: nrc1 and nrc2 are undefined")
    sigma = stats.target_covariance()
    eigenvalues = np.linalg.eigvalsh(sigma)
    values["lambda_min"], values["lambda_max"] = float(eigenvalues[0]), float(eigenvalues[-1])
    if w is not None:
        values["mse"], values["r2"] = _fit(stats, w, b, notes)
        if gamma is not None:
            values.update(_nrc3(sigma, stats.target_mean(), w, gamma, notes))
    return RegressionMetrics(
        **values, num_samples=stats.num_samples, dim=d, target_dim=n,
        zero_features=stats.zero_features, centred_pca=centred_pca, warnings=tuple(notes),
    )


def as_regressor(weight: Any, bias: Any, n: int, d: int) -> tuple[np.ndarray | None, np.ndarray]:
    """Return (W, b) as float64 arrays of shapes (n, d) and (n,); b is zero when omitted."""
    if weight is None:
        if bias is not None:
            raise NCInputError("bias given without weight")
        return None, np.zeros(n)
    w = to_numpy64(weight)
    if w.ndim == 1 and n == 1:
        w = w[None]
    if w.shape != (n, d):
        raise NCInputError(f"weight must have shape (n, d) = ({n}, {d}); got {w.shape}")
    if not np.isfinite(w).all():
        raise NCInputError("weight contains NaN or inf")
    b = np.zeros(n) if bias is None else to_numpy64(bias).reshape(-1)
    if b.shape != (n,):
        raise NCInputError(f"bias must have shape (n,) = ({n},); got {np.shape(bias)}")
    if not np.isfinite(b).all():
        raise NCInputError("bias contains NaN or inf")
    return w, b


def _principal_components(stats: RegressionStats, centred: bool) -> tuple[np.ndarray, np.ndarray]:
    """Explained-variance ratios (d,) and directions (d, d, as columns), largest first."""
    moment = stats.feature_covariance()
    if not centred:
        mean = stats.feature_mean()
        moment = moment + np.outer(mean, mean)
    eigenvalues, vectors = np.linalg.eigh(moment)
    eigenvalues, vectors = np.clip(eigenvalues[::-1], 0, None), vectors[:, ::-1]
    total = eigenvalues.sum()
    ratios = eigenvalues / total if total > 0 else np.zeros_like(eigenvalues)
    return ratios, vectors


def _residual_energy(second_moment: np.ndarray, complement: np.ndarray) -> float:
    """Mean squared norm of the part of h~ in span(complement): Tr(B^T S B).

    Summing over an orthonormal basis B of the complement (instead of 1 - Tr(P S)) keeps
    the small values of a collapsed model accurate to rounding.
    """
    if complement.shape[1] == 0:
        return 0.0
    return float(max(np.einsum("ij,ik,kj->", complement, second_moment, complement), 0.0))


def _row_space_complement(w: np.ndarray) -> np.ndarray:
    """Orthonormal basis (d, d - rank W) of the orthogonal complement of W's row space."""
    _, s, vt = np.linalg.svd(w, full_matrices=True)
    tol = max(w.shape) * np.finfo(float).eps * (s[0] if len(s) else 0.0)
    rank = int((s > tol).sum())
    return vt[rank:].T


def _fit(
    stats: RegressionStats, w: np.ndarray, b: np.ndarray, notes: list[str]
) -> tuple[float, float]:
    """MSE (mean over samples and outputs) and R^2 (uniform average over outputs).

    The residual r = W h + b - y is linear in z = [h, y], so its second moment follows from
    the joint mean and covariance. For a constant target column R^2 is 1 when it is fitted
    exactly and 0 otherwise, as in scikit-learn.
    """
    n = len(b)
    a = np.hstack([w, -np.eye(n)])
    offset = a @ stats.joint_mean() + b
    residual = a @ stats.joint_covariance() @ a.T + np.outer(offset, offset)
    per_output = np.clip(np.diag(residual), 0, None)
    variance = np.diag(stats.target_covariance())
    tiny = _constant_columns(stats.target_covariance(), stats.target_mean())
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(tiny, np.where(per_output <= 0, 1.0, 0.0), 1 - per_output / variance)
    if tiny.any():
        notes.append(f"R^2 of constant target columns {np.flatnonzero(tiny).tolist()} is 1 if "
                     "fitted exactly, else 0")
    return float(per_output.mean()), float(r2.mean())


def _constant_columns(sigma: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Mask (n,) of the target columns that are constant up to rounding.

    A column counts as constant when its variance is below rounding of its own size, or
    below 1e-12 of the largest column variance (then Sigma is singular in practice).
    """
    variance = np.diag(sigma)
    rounding = (64 * np.finfo(float).eps * np.abs(mean)) ** 2
    return (variance <= rounding) | (variance <= 1e-12 * variance.max())


def _nrc3(
    sigma: np.ndarray, mean: np.ndarray, w: np.ndarray, gamma: float | str, notes: list[str]
) -> dict[str, Any]:
    n = len(sigma)
    explicit = not isinstance(gamma, str)
    if isinstance(gamma, str) and gamma != "search":
        raise NCInputError(f"gamma must be a number, 'search' or None; got '{gamma}'")
    if n == 1:
        notes.append("nrc3 is not reported for n = 1 (it is 0 trivially)")
        return {}
    problem = _singular_targets(sigma, mean)
    if problem:
        if explicit:
            raise NCInputError(f"nrc3 needs a full-rank target covariance: {problem}")
        notes.append(f"nrc3 not computed: {problem}")
        return {}
    gram = w @ w.T
    if not np.linalg.norm(gram):
        if explicit:
            raise NCInputError("nrc3 is undefined for W = 0")
        notes.append("nrc3 not computed: W = 0")
        return {}
    nrc3, lam_min = _nrc3_function(sigma, gram)
    if explicit:
        g = float(gamma)
        if not 0 < g < lam_min:
            raise NCInputError(f"gamma must lie in (0, lambda_min) = (0, {lam_min:.6g}); got {g}")
        return {"nrc3": nrc3(g), "gamma": g, "gamma_searched": False}
    return {**_search_gamma(nrc3, lam_min), "gamma_searched": True}


def _nrc3_function(sigma: np.ndarray, gram: np.ndarray) -> tuple[Any, float]:
    """(gamma -> NRC3, lambda_min) for a fixed W W^T (nonzero) and Sigma (full rank)."""
    eigenvalues, vectors = np.linalg.eigh(sigma)
    # In Sigma's eigenbasis A_gamma is diagonal: NRC3 = 2 - 2 <diag(B), a> / ||a||.
    diagonal = np.einsum("ji,jk,ki->i", vectors, gram / np.linalg.norm(gram), vectors)
    roots = np.sqrt(eigenvalues)

    def nrc3(g: float) -> float:
        a = roots - math.sqrt(g)
        return float(max(2 - 2 * diagonal @ a / np.linalg.norm(a), 0.0))

    return nrc3, float(eigenvalues[0])


def nrc3_from_gram(
    sigma: Any, gram: Any, gamma: float | str | Any = "search"
) -> dict[str, Any]:
    """NRC3 from the n x n matrices alone: Sigma and W W^T (no features needed).

    This is how a training log recomputes NRC3 at the gamma of the final W for every
    epoch (definitions §5) from the ``W W^T`` it stored per epoch.

    Parameters
    ----------
    sigma : array (n, n)
        Target covariance, of full rank.
    gram : array (n, n)
        W W^T, nonzero.
    gamma : float, "search" or array of floats
        One gamma in (0, lambda_min); ``"search"`` for the minimizing one; or several
        gammas (a curve of NRC3 against gamma).

    Returns
    -------
    dict
        ``nrc3`` (a float, or a list for several gammas), ``gamma`` and ``lambda_min``.
    """
    sigma, gram = to_numpy64(sigma), to_numpy64(gram)
    n = len(sigma)
    if sigma.shape != (n, n) or gram.shape != (n, n) or n < 2:
        raise NCInputError(f"sigma and gram must be n x n with n >= 2; got {sigma.shape} and "
                           f"{gram.shape}")
    problem = _singular_targets(sigma, np.zeros(n))
    if problem:
        raise NCInputError(f"nrc3 needs a full-rank target covariance: {problem}")
    if not np.linalg.norm(gram):
        raise NCInputError("nrc3 is undefined for W = 0")
    nrc3, lam_min = _nrc3_function(sigma, gram)
    if isinstance(gamma, str):
        if gamma != "search":
            raise NCInputError(f"gamma must be a number, an array or 'search'; got '{gamma}'")
        return {**_search_gamma(nrc3, lam_min), "lambda_min": lam_min}
    gammas = np.asarray(gamma, dtype=np.float64)
    if gammas.size == 0 or not ((gammas > 0) & (gammas < lam_min)).all():
        raise NCInputError(f"gamma must lie in (0, lambda_min) = (0, {lam_min:.6g}); "
                           f"got {gammas.tolist()}")
    values = [nrc3(float(g)) for g in gammas.ravel()]
    if gammas.ndim == 0:
        return {"nrc3": values[0], "gamma": float(gammas), "lambda_min": lam_min}
    return {"nrc3": values, "gamma": gammas.ravel().tolist(), "lambda_min": lam_min}


def _search_gamma(nrc3: Any, lam_min: float) -> dict[str, float]:
    """Grid search on (0, lambda_min), then a bounded refinement around the best point."""
    grid = lam_min * np.linspace(0, 1, GAMMA_GRID + 2)[1:-1]
    values = np.array([nrc3(g) for g in grid])
    best = int(values.argmin())
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    if best == 0:
        lo = grid[0] * 1e-6
    from scipy.optimize import minimize_scalar  # slow to import; only a gamma search needs it

    refined = minimize_scalar(nrc3, bounds=(lo, hi), method="bounded",
                              options={"xatol": lam_min * 1e-12})
    if refined.fun <= values[best]:
        return {"nrc3": float(refined.fun), "gamma": float(refined.x)}
    return {"nrc3": float(values[best]), "gamma": float(grid[best])}


def _singular_targets(sigma: np.ndarray, mean: np.ndarray) -> str:
    """Why Sigma is not of full rank, naming the columns; empty when it is."""
    constant = np.flatnonzero(_constant_columns(sigma, mean))
    if constant.size:
        cols = ", ".join(str(int(c)) for c in constant)
        verb = "columns {} are" if constant.size > 1 else "column {} is"
        return (f"target {verb.format(cols)} constant "
                f"(variance {np.diag(sigma)[constant[0]]:.3g}); drop or perturb it")
    eigenvalues, vectors = np.linalg.eigh(sigma)
    if eigenvalues[0] <= 1e-12 * eigenvalues[-1]:
        involved = np.flatnonzero(np.abs(vectors[:, 0]) > 1e-6)
        cols = ", ".join(str(int(c)) for c in involved)
        return (f"target columns {cols} are linearly dependent "
                f"(lambda_min = {eigenvalues[0]:.3g})")
    return ""


