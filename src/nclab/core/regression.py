"""Neural regression collapse (definitions §5): streaming statistics and NRC1-NRC3.

One pass over (features h_i in R^d, targets y_i in R^n) keeps, in float64:

- the count, mean and centred scatter of the stacked vector z_i = [h_i, y_i]
  (feature PCA, target covariance Sigma, and the cross moments behind MSE and R^2);
- the count, mean and centred scatter of the normalized features h~_i = h_i/||h_i||
  (NRC1 and NRC2 project these).

Memory is O((d + n)^2), independent of the number of samples. Partial statistics merge
exactly with the pairwise update of Chan, Golub & LeVeque (definitions §1), and
``all_reduce()`` merges every rank of a ``torch.distributed`` group at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nclab.core import distributed
from nclab.core.errors import NCInputError
from nclab.core.io import json_ready
from nclab.core.streaming import (
    Moments,
    StreamingStatistic,
    check_scatter,
    state_entry,
    state_mapping,
    state_scalar,
    times_power_of_two,
)
from nclab.core.validation import (
    as_features,
    as_targets,
    ensure_finite,
    ensure_moderate_scale,
    positive_int,
    to_numpy64,
)

#: The NRC metrics of definitions §5, in definitions order.
NRC_NAMES = ("nrc1", "nrc2", "nrc3")
#: Points of the first, coarse grid of the gamma search on (0, lambda_min).
GAMMA_GRID = 256
#: Points of the NRC3(gamma) curve of the final W kept in the summary.
GAMMA_CURVE_POINTS = 64


class RegressionStats(StreamingStatistic):
    """One-pass statistics of regression features and targets, accumulated in float64.

    Parameters
    ----------
    dim : int, optional
        Feature dimension d; taken from the first batch when omitted.
    target_dim : int, optional
        Target dimension n; taken from the first batch when omitted.

    Notes
    -----
    Features with norm zero have no direction: they count in the PCA, the target
    statistics and the MSE, but are left out of the normalized moments (NRC1, NRC2);
    ``zero_features`` says how many there were. Both moments are
    :class:`nclab.core.streaming.Moments` with one group (the accumulation shared with
    the classification statistics).

    Examples
    --------
    >>> stats = RegressionStats()
    >>> for features, targets in batches:                        # doctest: +SKIP
    ...     stats.update(features, targets)
    >>> stats.compute(weight=W, bias=b)                            # doctest: +SKIP
    """

    def __init__(self, dim: int | None = None, target_dim: int | None = None) -> None:
        self.dim: int | None = None
        self.target_dim: int | None = None
        if (dim is None) != (target_dim is None):
            raise NCInputError("give both dim and target_dim, or neither")
        if dim is not None and target_dim is not None:
            self._allocate(positive_int(dim, "dim"), positive_int(target_dim, "target_dim"))

    def _allocate(self, dim: int, target_dim: int) -> None:
        if dim < 1 or target_dim < 1:
            raise NCInputError(
                f"feature and target dimensions must be >= 1; got d={dim}, n={target_dim}"
            )
        self.dim, self.target_dim = dim, target_dim
        self._joint = Moments(1, dim + target_dim)
        self._unit = Moments(1, dim)

    def _check_dims(self, dim: int, target_dim: int, what: str) -> None:
        if self.dim is None:
            self._allocate(dim, target_dim)
        elif (dim, target_dim) != (self.dim, self.target_dim):
            raise NCInputError(
                f"{what} has (d, n) = ({dim}, {target_dim}); "
                f"these statistics have ({self.dim}, {self.target_dim})"
            )

    # ------------------------------------------------------------------ accumulation
    def update(self, features: Any, targets: Any) -> RegressionStats:
        """Add a batch (an empty one changes nothing).

        Parameters
        ----------
        features : array or tensor of shape (b, d)
            Any float dtype, any device; the batch products run there (half precision is
            promoted to float32).
        targets : array or tensor of shape (b, n) or (b,)
            Real targets; a 1-D array is one target column (n = 1).

        Returns
        -------
        self
        """
        h = as_features(features, check_finite=False)  # checked by the magnitude pass
        y = as_targets(targets, h.shape[0])
        dtype = torch.promote_types(h.dtype, y.dtype)
        h, y = h.to(dtype), y.to(device=h.device, dtype=dtype)
        self._check_dims(h.shape[1], y.shape[1], "this batch")
        if h.shape[0] == 0:
            return self
        try:
            self._joint.update(torch.cat([h, y], dim=1), name="features and targets")
        except NCInputError:
            ensure_finite(h)  # name the array and the row
            ensure_finite(y, "targets")
            raise
        norms = torch.linalg.vector_norm(h, dim=1)
        nonzero = norms > 0
        if bool(nonzero.any()):
            self._unit.update(h[nonzero] / norms[nonzero, None], name="normalized features")
        return self

    def _merge(self, other: RegressionStats) -> RegressionStats:
        if other.dim is None or other.target_dim is None:
            return self
        self._check_dims(other.dim, other.target_dim, "the other statistics")
        self._joint.merge(other._joint)
        self._unit.merge(other._unit)
        return self

    def _all_reduce(self) -> RegressionStats:
        """Works with any ``torch.distributed`` backend (gloo on CPU, nccl on GPU); each
        rank sends its moments about the global means: the exact pairwise merge."""
        shape = torch.tensor([self.dim or 0, self.target_dim or 0])
        dim, target_dim = (int(v) for v in distributed.all_reduce(shape, op="max"))
        if dim == 0:
            return self
        self._check_dims(dim, target_dim, "another rank's statistics")
        self._joint.all_reduce()
        self._unit.all_reduce()
        return self

    def reset(self) -> RegressionStats:
        """Forget every sample; d and n stay."""
        if self.dim is not None:
            self._joint.reset()
            self._unit.reset()
        return self

    def compute(self, weight: Any = None, bias: Any = None, **kwargs: Any) -> RegressionMetrics:
        """``compute_regression_metrics(self, weight, bias, **kwargs)``."""
        return compute_regression_metrics(self, weight, bias, **kwargs)

    # ------------------------------------------------------------------ derived quantities
    @staticmethod
    def _in_data_units(moments: Moments) -> tuple[np.ndarray, np.ndarray]:
        """(mean (k,), scatter (k, k)) of one-group moments, in the data's units."""
        _, means, _, scatter = moments.moments()
        shift = -moments.exponent
        return (times_power_of_two(means[0], shift).cpu().numpy(),
                times_power_of_two(scatter, 2 * shift).cpu().numpy())

    @property
    def num_samples(self) -> int:
        return 0 if self.dim is None else self._joint.rows

    @property
    def unit_count(self) -> int:
        """How many features had a direction (norm > 0): the samples of NRC1 and NRC2."""
        return 0 if self.dim is None else self._unit.rows

    @property
    def zero_features(self) -> int:
        """How many features had norm zero (left out of NRC1 and NRC2)."""
        return self.num_samples - self.unit_count

    def joint_mean(self) -> np.ndarray:
        """Mean of z = [h, y], shape (d + n,)."""
        return self._in_data_units(self._joint)[0]

    def feature_mean(self) -> np.ndarray:
        """Mean of h, shape (d,)."""
        return self.joint_mean()[: self.dim]

    def target_mean(self) -> np.ndarray:
        """ybar, shape (n,)."""
        return self.joint_mean()[self.dim :]

    def joint_covariance(self) -> np.ndarray:
        """Covariance of z = [h, y], shape (d + n, d + n)."""
        return self._in_data_units(self._joint)[1] / self.num_samples

    def feature_covariance(self) -> np.ndarray:
        """(1/M) sum (h_i - hbar)(h_i - hbar)^T, shape (d, d)."""
        d = self.dim
        return self.joint_covariance()[:d, :d]

    def target_covariance(self) -> np.ndarray:
        """Sigma = (1/M) sum (y_i - ybar)(y_i - ybar)^T, shape (n, n)."""
        d = self.dim
        return self.joint_covariance()[d:, d:]

    def unit_second_moment(self) -> np.ndarray:
        """(1/M') sum h~_i h~_i^T over the M' nonzero features (not centred), (d, d)."""
        if self.unit_count == 0:
            raise NCInputError("every feature vector is zero: normalized features are undefined")
        mean, scatter = self._in_data_units(self._unit)
        return scatter / self.unit_count + np.outer(mean, mean)

    # ------------------------------------------------------------------ persistence
    _PARTS = ("joint", "unit")

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only (on the CPU), so that ``torch.load(..., weights_only=True)`` reads
        it back. Means and scatters are of the data times ``2**{part}_exponent``."""
        state = {"dim": torch.tensor(self.dim or 0),
                 "target_dim": torch.tensor(self.target_dim or 0)}
        if self.dim is not None:
            for name, moments in zip(self._PARTS, (self._joint, self._unit), strict=True):
                counts, means, _, scatter = moments.moments()
                state[f"{name}_count"] = counts[0].cpu().clone()
                state[f"{name}_mean"] = means[0].cpu().clone()
                state[f"{name}_scatter"] = scatter.cpu().clone()
                state[f"{name}_exponent"] = torch.tensor(moments.exponent)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> RegressionStats:
        """Restore a :meth:`state_dict`; every entry is checked before anything changes."""
        state = state_mapping(state, "RegressionStats")
        dim, target_dim = state_scalar(state, "dim"), state_scalar(state, "target_dim")
        if dim == 0:
            self.dim = self.target_dim = None
            return self
        if dim < 0 or target_dim < 1:
            raise NCInputError(f"state has dimensions d={dim}, n={target_dim}")
        if self.dim is not None and (dim, target_dim) != (self.dim, self.target_dim):
            raise NCInputError(f"state has (d, n) = ({dim}, {target_dim}); these statistics "
                               f"have ({self.dim}, {self.target_dim})")
        parts = [self._checked_part(state, name, size)
                 for name, size in zip(self._PARTS, (dim + target_dim, dim), strict=True)]
        if parts[1][0] > parts[0][0]:
            raise NCInputError("state entry 'unit_count' exceeds 'joint_count'")
        self._check_dims(dim, target_dim, "the state")
        for moments, (count, mean, scatter, exponent) in zip(
                (self._joint, self._unit), parts, strict=True):
            moments.load(count.reshape(1), mean[None], torch.diagonal(scatter).sum().reshape(1),
                         scatter, exponent)
        return self

    @staticmethod
    def _checked_part(state: Mapping[str, Any], name: str,
                      size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        count = state_entry(state, f"{name}_count", (), integer=True, nonnegative=True)
        mean = state_entry(state, f"{name}_mean", (size,))
        scatter = state_entry(state, f"{name}_scatter", (size, size))
        check_scatter(scatter, f"{name}_scatter")
        return count, mean, scatter, state_scalar(state, f"{name}_exponent", default=0)

    def __repr__(self) -> str:
        return (f"RegressionStats(dim={self.dim}, target_dim={self.target_dim}, "
                f"num_samples={self.num_samples})")


# ---------------------------------------------------------------------------- metrics
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
    if stats.dim is None or stats.num_samples == 0:
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


def measure_regression(
    features: Any,
    targets: Any,
    weight: Any = None,
    bias: Any = None,
    *,
    gamma: float | str | None = "search",
    centred_pca: bool = True,
    batch_size: int = 65_536,
) -> RegressionMetrics:
    """NRC metrics of in-memory features in one call.

    Parameters
    ----------
    features : array or tensor of shape (M, d)
    targets : array or tensor of shape (M, n) or (M,)
    weight : array of shape (n, d), optional
    bias : array of shape (n,), optional
    gamma, centred_pca
        As in :func:`compute_regression_metrics`.
    batch_size : int
        Rows per streamed batch.

    Raises
    ------
    NCInputError
        Also for magnitudes beyond 1e64 or nonzero ones below 1e-64: NRC3 forms
        fourth powers of them, which leave the float64 range (rescale the arrays).
    """
    x = as_features(features)
    y = as_targets(targets, x.shape[0])
    ensure_finite(y, "targets")
    if x.shape[0] == 0:
        raise NCInputError("features has no rows")
    for name, values in (("features", x), ("targets", y), ("weight", weight), ("bias", bias)):
        if values is not None:
            ensure_moderate_scale(values, name)
    stats = RegressionStats()
    for start in range(0, len(x), batch_size):
        stats.update(x[start : start + batch_size], y[start : start + batch_size])
    return compute_regression_metrics(stats, weight, bias, gamma=gamma, centred_pca=centred_pca)


def nrc3_history(rows: list[dict[str, Any]], gamma: float | None = None,
                 curve_points: int = GAMMA_CURVE_POINTS) -> dict[str, Any]:
    """NRC3 of each logged row at one gamma, searched on the last row's W (definitions §5).

    Parameters
    ----------
    rows : list of dict
        Logged rows with ``epoch``, ``head_gram`` and ``target_cov``.
    gamma : float, optional
        Use this gamma instead of the search on the last row.
    curve_points : int
        Points of the curve NRC3(gamma) of the last row, log-spaced on (0, lambda_min).

    Returns
    -------
    dict
        ``gamma``, ``gamma_epoch`` (the row it was searched on), ``epoch`` and ``nrc3``
        (lists, one per row), ``curve`` ({"gamma", "nrc3"} of the last row), and
        ``warning`` instead of the values when NRC3 does not exist (n = 1, singular
        Sigma, W = 0).
    """
    rows = [row for row in rows if row.get("head_gram") is not None]
    if not rows:
        return {"warning": "no logged row holds head_gram: run the 'nrc' evaluator"}
    last = rows[-1]
    if len(last["head_gram"]) < 2:
        return {"warning": "nrc3 is not reported for n = 1 (it is 0 trivially)"}
    sigma = np.asarray(last["target_cov"])
    try:
        chosen = nrc3_from_gram(sigma, last["head_gram"],
                                "search" if gamma is None else gamma)
        values = [nrc3_from_gram(sigma, row["head_gram"], chosen["gamma"])["nrc3"]
                  if np.any(row["head_gram"]) else None for row in rows]
    except NCInputError as exc:
        return {"warning": f"nrc3 not computed: {exc}"}
    lam_min = chosen["lambda_min"]
    # from below the chosen gamma (it can sit near 0) up to lambda_min
    grid = lam_min * np.geomspace(min(1e-4, 0.5 * chosen["gamma"] / lam_min), 1 - 1e-3,
                                  curve_points)
    curve = nrc3_from_gram(sigma, last["head_gram"], grid)
    return {"gamma": chosen["gamma"], "gamma_epoch": last["epoch"],
            "gamma_searched": gamma is None, "lambda_min": lam_min,
            "epoch": [row["epoch"] for row in rows], "nrc3": values,
            "curve": {"gamma": curve["gamma"], "nrc3": curve["nrc3"]}}


def nrc_drops(rows: list[dict[str, Any]], nrc3: dict[str, Any],
              split: str = "train") -> dict[str, float | None]:
    """First logged value / last logged value of NRC1, NRC2 (``split``; as defined and centred)
    and NRC3."""
    first, last = rows[0], rows[-1]
    pairs = {name: (first.get(f"{split}_{name}"), last.get(f"{split}_{name}"))
             for name in ("nrc1", "nrc2", "nrc1_centred", "nrc2_centred")}
    values = nrc3.get("nrc3") or [None]
    pairs["nrc3"] = (values[0], values[-1])
    return {name: a / b if a is not None and b else None for name, (a, b) in pairs.items()}
