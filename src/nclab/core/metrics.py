"""Neural Collapse metrics (definitions §1 and §7) from a CollapseStats and a classifier."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nclab.core import geometry
from nclab.core.errors import NCInputError
from nclab.core.io import finite_or_none, json_ready
from nclab.core.margins import margin_metrics
from nclab.core.metric_info import METRICS
from nclab.core.metric_info import names as metric_names
from nclab.core.spectral import class_rankme, spectral_metrics
from nclab.core.tables import metrics_html, missing_notes
from nclab.core.validation import as_classifier, as_features, positive_int, to_numpy64

if TYPE_CHECKING:  # the statistics call these formulas, never the reverse
    from nclab.core.stats import CollapseStats, DecisionStats

#: Every metric of definitions §1, then §7, in their order there (declared in metric_info).
METRIC_NAMES = metric_names()
#: The spectral metrics of definitions §8 (``compute_metrics(..., spectral=True)``).
SPECTRAL_NAMES = metric_names("spectral")
#: The one-vs-rest margins of definitions §10 (``compute_metrics(..., margins=True)``).
MARGIN_NAMES = metric_names("margins")


@dataclass(frozen=True)
class CollapseMetrics:
    """Every metric of definitions §1 and §7, by its name there, plus what they were
    computed on.

    Metrics are floats; those that need the classifier are None when it was not given,
    ``ncc_mismatch`` / ``accuracy`` are None until a second pass (DecisionStats) ran,
    ``bias_relation`` needs the bias and ``nc5_ood_orthogonality`` the mean of
    out-of-distribution features. ``cdnv_exponent`` is the power p of the distance in
    the cdnv denominator when it is not Galanti et al.'s 2 (None: p = 2). The spectral
    metrics of definitions §8 (``rankme``, ``rankme_centred``, ``alpha_req``, ``lidar``
    and the ``explained_variance`` curve, shape (d,)) are None unless asked for; with
    statistics built with ``per_class_scatter=True`` they include ``class_rankme`` (the
    RankMe of each present class's centred features, NaN where undefined) and its mean
    ``class_rankme_mean``. The one-vs-rest margins of definitions §10 (``ovr_margin_*``,
    with certified lower bounds, and ``softmax_code_lower`` / ``softmax_code_upper``, the
    best margin C unit vectors in d dimensions can have: equal when known exactly) are
    None unless asked for.
    """

    nc1: float | None = None
    nc1_trace: float | None = None
    cdnv: float | None = None
    equinorm_means: float | None = None
    equinorm_weights: float | None = None
    equiangularity_means: float | None = None
    equiangularity_weights: float | None = None
    maxangle_means: float | None = None
    maxangle_weights: float | None = None
    etf_error_means: float | None = None
    etf_error_weights: float | None = None
    self_duality: float | None = None
    wh_duality: float | None = None
    ncc_mismatch: float | None = None
    accuracy: float | None = None
    gnc2_dist_means: float | None = None
    gnc2_log_means: float | None = None
    unc3_duality_cv: float | None = None
    unc3_duality_var: float | None = None
    nc5_ood_orthogonality: float | None = None
    bias_relation: float | None = None
    rankme: float | None = None
    rankme_centred: float | None = None
    alpha_req: float | None = None
    lidar: float | None = None
    explained_variance: tuple[float, ...] | None = None
    class_rankme_mean: float | None = None
    class_rankme: tuple[float, ...] | None = None
    ovr_margin_means: float | None = None
    ovr_margin_means_lower: float | None = None
    ovr_margin_weights: float | None = None
    ovr_margin_weights_lower: float | None = None
    softmax_code_lower: float | None = None
    softmax_code_upper: float | None = None
    num_samples: int = 0
    num_classes: int = 0
    dim: int = 0
    weighted_mean: bool = False
    etf_meaningful: bool = True
    cdnv_exponent: float | None = None
    empty_classes: tuple[int, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; non-finite values become None."""
        return json_ready(self)

    def scalars(self, prefix: str = "") -> dict[str, float]:
        """Every numeric metric that has a value, as ``{prefix + name: float}``.

        Ready for any logger (TensorBoard's ``add_scalar``, ``LightningModule.log_dict``,
        W&B, MLflow): metrics that are None (no classifier, no second pass) are left out,
        and so are the bookkeeping fields (counts, flags, lists).
        """
        return {f"{prefix}{name}": float(value) for name in METRICS
                if (value := getattr(self, name)) is not None}

    def plot(self, ax: Any = None, **options: Any) -> tuple[Any, Any]:
        """A lollipop chart of the metrics, the gaps (0 at perfect collapse) on a log axis.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Default: a new figure (pyplot, so a notebook shows it).
        **options
            ``names=(...)`` chooses the metrics; see
            :meth:`nclab.report.displays.CollapseDisplay.from_metrics`.

        Returns
        -------
        (Figure, Axes)
        """
        from nclab.report.displays import CollapseDisplay  # layer 2, drawn on demand

        return CollapseDisplay.from_metrics(self, **options).plot(ax=ax)

    def _repr_html_(self) -> str:
        values = {name: getattr(self, name) for name in METRICS}
        notes = [*self.warnings, *missing_notes(values)]
        return metrics_html(f"CollapseMetrics of N = {self.num_samples} samples, "
                            f"C = {self.num_classes} classes, d = {self.dim}",
                            {"value": values}, notes)


def _check_measurable(stats: CollapseStats) -> int:
    """The feature dimension d; NCInputError unless the metrics are defined."""
    if stats.dim is None or stats.num_samples == 0:
        raise NCInputError("no samples were seen: nothing to measure")
    num_present = int(stats.present.sum())
    if num_present < 2:
        raise NCInputError(f"need at least 2 classes with samples; got {num_present}")
    if stats.counts[stats.present].max() < 2:
        raise NCInputError("every class has a single sample: within-class variability is undefined")
    return stats.dim


def _positive_exponent(value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise NCInputError(f"cdnv_exponent must be a number > 0; got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise NCInputError(f"cdnv_exponent must be a finite number > 0; got {value!r}")
    return float(value)


def _ood_vector(ood_mean: Any, dim: int) -> np.ndarray | None:
    if ood_mean is None:
        return None
    vector = to_numpy64(ood_mean, "ood_mean")
    if vector.shape != (dim,):
        raise NCInputError(f"ood_mean must have shape (d,) = ({dim},); got {vector.shape}")
    if not np.isfinite(vector).all():
        raise NCInputError("ood_mean contains NaN or inf")
    return vector


def compute_metrics(
    stats: CollapseStats,
    weight: Any = None,
    bias: Any = None,
    *,
    decisions: DecisionStats | None = None,
    weighted_mean: bool = False,
    ood_mean: Any = None,
    cdnv_exponent: float = 2.0,
    block: int = geometry.DEFAULT_BLOCK,
    spectral: bool = False,
    margins: bool = False,
    backend: str = "auto",
    tiles: str = "float64",
) -> CollapseMetrics:
    """Compute the collapse metrics.

    Parameters
    ----------
    stats : CollapseStats
        First-pass statistics.
    weight : array of shape (C, d), optional
        Classifier weight W (rows for classes without samples are left out).
    bias : array of shape (C,), optional
    decisions : DecisionStats, optional
        Finished second pass, for ``ncc_mismatch`` and ``accuracy``.
    weighted_mean : bool
        Use the sample-weighted global mean instead of the average of class means.
    ood_mean : array of shape (d,), optional
        Mean of out-of-distribution features, for ``nc5_ood_orthogonality``.
    cdnv_exponent : float
        Power p of the distance in the cdnv denominator ||mu_c - mu_c'||^p; 2 is
        Galanti et al.'s CDNV (the reference library's ``dist_exp`` is p / 2).
    block : int
        Tile size for the O(C^2) pair metrics.
    spectral : bool
        Also the spectral metrics of definitions §8 (one tridiagonal reduction and one
        generalized eigenvalue problem, d x d: about 0.4x the rest at C = 1,000, d = 512;
        benchmarks/spectral_cost.py).
    margins : bool
        Also the one-vs-rest margins of the centred means and of W (definitions §10).
        With float64 tiles the pair pass also gives each row's nearest cosine, so the
        margins add only their exact row solves: about 0.5x the pair pass at C = 1,000,
        under 0.1x at C = 10,000 (docs/geometry_past_simplex.md).
    backend : {"auto", "numpy", "torch"}
        Where the O(C d), O(d^2) and O(C^2) work runs: "torch" on the device of the
        statistics (:attr:`CollapseStats.device`), where only scalars and vectors of C
        values come back to the host; "numpy" on the host in float64; "auto" is torch
        when the statistics live off the CPU, numpy on it (the two agree to about 1e-12).
        The spectral metrics and the margins still run on the host.
    tiles : {"float64", "float32"}
        Dtype of the tile products of the pair pass and of the ETF gaps; "float32" sums
        them in float64 and adds an error stated in docs/performance.md (for devices
        whose float64 is slow).

    Returns
    -------
    CollapseMetrics

    Notes
    -----
    Classes with no samples are dropped from every metric, the classifier rows included,
    and listed in ``empty_classes``. Cost: one tiled pass over the class pairs
    (docs/performance.md gives time and memory as functions of N, C and d).
    """
    block = positive_int(block, "block")
    cdnv_exponent = _positive_exponent(cdnv_exponent)
    on_device = _use_torch(backend, stats)
    tile_dtype = _tile_dtype(tiles)
    dim = _check_measurable(stats)
    present = stats.present
    num_present = int(present.sum())
    host_w, b = as_classifier(weight, bias, stats.num_classes, dim)
    ood = _ood_vector(ood_mean, dim)
    notes = []
    empty = tuple(int(c) for c in np.flatnonzero(~present))
    if empty:
        notes.append(f"{len(empty)} classes have no samples and were left out: {list(empty)[:10]}")
    etf_meaningful = num_present <= dim + 1
    if not etf_meaningful:
        notes.append(f"C={num_present} > d+1={dim + 1}: no simplex ETF exists in d dims, "
                     "so etf_error and wh_duality cannot reach 0")

    # the state of the features times stats.scale (a power of two): the scale-free
    # metrics are exact on it, and no square or fourth power over- or underflows
    scale = stats.scale
    means, global_mean, variances = _scaled_state(stats, present, weighted_mean, on_device)
    # the scatter as stored (no d x d copy): the scaled one is it times 2**scatter_log
    scatter, scatter_log = stats.stored_scatter(tensor=on_device)
    centred = means - global_mean
    # divided in place by a power of two to order one (exact): every geometry call reads
    # it as it is, with no scaled copy; the metrics that are not scale-free (nc1,
    # nc1_trace, cdnv, the duality variance) take the power back below
    centred_scale = geometry.power_of_two_scale(centred)
    centred /= centred_scale
    centred_log = round(math.log2(centred_scale))
    variances = variances / centred_scale / centred_scale
    max_rank = num_present if weighted_mean else num_present - 1
    w, w_shift = _scaled_classifier(host_w, present, means.device if on_device else None)
    # the scaled M~ and W and their d x d Grams, each formed once for every metric (M~
    # and W are of order one already)
    shared = geometry.order_one({}, *(x for x in (centred, w) if x is not None))
    # Sigma_W = scatter / N: the division is left to the scalars (no d x d copy)
    per_sample = 1.0 / stats.num_samples
    values: dict[str, Any] = {
        "nc1": _ldexp(geometry.pseudo_inverse_trace(scatter, centred, max_rank, shared,
                                                    _centring(stats, present, weighted_mean))
                      * per_sample / num_present, scatter_log - 2 * centred_log),
        "nc1_trace": _ldexp(float(np.float64(float(scatter.trace()) * per_sample)
                                  / (float(geometry.squared_norm(centred)) / num_present)),
                            scatter_log - 2 * centred_log),
        "equinorm_means": geometry.equinorm(centred, shared),
    }
    values["etf_error_means"] = geometry.simplex_gap(centred, centred, shared=shared,
                                                     tile_dtype=tile_dtype)
    pair_values, nearest = _pair_metrics(centred, variances, w, cdnv_exponent, block,
                                         tile_dtype, shared, nearest=margins)
    values.update(pair_values)
    log_scale = math.log2(scale)
    values["cdnv"] = _unscaled(values["cdnv"], log_scale - centred_log, 2 - cdnv_exponent)
    if w is not None:
        values.update(_classifier_metrics(w, centred, shared, tile_dtype))
        values["unc3_duality_var"] = _unscaled(values["unc3_duality_var"],
                                               log_scale + w_shift - centred_log, 2)
        if b is not None:  # W mu_G + b times the same power of two as W h
            bias = np.ldexp(b[present], w_shift + round(log_scale))
            values["bias_relation"] = _bias_relation(
                geometry.host_vector(w @ global_mean), bias)
    if decisions is not None:
        values["ncc_mismatch"], values["accuracy"] = decisions.compute()
    if ood is not None:
        values["nc5_ood_orthogonality"] = _ood_orthogonality(means, ood)
    if spectral:
        values.update(_spectral(stats))
    if margins:
        # the margins' solver runs on the host (C x d copies when on a device); their
        # bounds 1 - max cos come from the pair pass (float64 tiles) or a pass of their own
        values.update(margin_metrics(geometry.host_array(centred),
                                     None if w is None else geometry.host_array(w),
                                     nearest_means=nearest[0], nearest_weights=nearest[1]))
    if any(isinstance(v, float) and not math.isfinite(v) for v in values.values()):
        notes.append("some metrics are not finite (coinciding class means or directions, "
                     "or a zero vector)")
    return CollapseMetrics(
        **values, num_samples=stats.num_samples, num_classes=num_present, dim=dim,
        weighted_mean=weighted_mean, etf_meaningful=etf_meaningful,
        cdnv_exponent=None if cdnv_exponent == 2 else float(cdnv_exponent),
        empty_classes=empty, warnings=tuple(notes),
    )


def _use_torch(backend: Any, stats: CollapseStats) -> bool:
    """Whether the metrics run in torch on the statistics' device."""
    if backend not in ("auto", "numpy", "torch"):
        raise NCInputError(f"backend must be 'auto', 'numpy' or 'torch'; got {backend!r}")
    if backend == "auto":
        return stats.device.type != "cpu"
    return backend == "torch"


def _tile_dtype(tiles: Any) -> Any:
    """None (float64 tiles) or np.float32."""
    if tiles not in ("float64", "float32"):
        raise NCInputError(f"tiles must be 'float64' or 'float32'; got {tiles!r}")
    return np.float32 if tiles == "float32" else None


def _scaled_state(stats: CollapseStats, present: np.ndarray, weighted_mean: bool,
                  on_device: bool) -> tuple[Any, Any, Any]:
    """(means (C', d), mu_G (d,), sigma_c^2 (C',)) of the present classes in the scaled
    units: numpy arrays (views of the state where every class is present), or float64
    tensors left on the state's device."""
    counts = stats.counts
    everyone = bool(present.all())
    all_means: Any  # numpy arrays on the host, float64 tensors on the device
    spread: Any
    number: Any
    present_rows: Any = present  # a tensor on the device
    if not on_device:
        all_means, spread, number = stats.scaled_means(), stats.scaled_spread(), counts
    else:
        all_means, spread = stats.scaled_tensors()
        number = torch.from_numpy(counts.astype(np.float64)).to(all_means.device)
        present_rows = torch.from_numpy(present).to(all_means.device)
    means = all_means if everyone else all_means[present_rows]
    number = number if everyone else number[present_rows]
    if weighted_mean:
        global_mean = number @ means / stats.num_samples
    else:
        global_mean = means.mean(0)
    return means, global_mean, (spread if everyone else spread[present_rows]) / number


def _centring(stats: CollapseStats, present: np.ndarray, weighted_mean: bool) -> np.ndarray:
    """Weights a with a^T M~ = 0 for the centred means: the class counts (sample mean)
    or ones (average of the class means)."""
    return (stats.counts[present].astype(np.float64) if weighted_mean
            else np.ones(int(present.sum())))


def _spectral(stats: CollapseStats) -> dict[str, Any]:
    """The spectral metrics of the scaled state (each is scale-free)."""
    found = spectral_metrics(stats.counts, stats.scaled_means(), stats.scaled_scatter(),
                             trusted=True)
    values: dict[str, Any] = {name: getattr(found, name, None) for name in SPECTRAL_NAMES}
    curve = found.explained_variance
    values["explained_variance"] = None if curve is None else tuple(float(v) for v in curve)
    if stats.per_class_scatter:
        values.update(_class_ranks(stats))
    return values


def _class_ranks(stats: CollapseStats) -> dict[str, Any]:
    """RankMe of each present class's centred features (from its own scatter) and their
    mean over the classes where it is defined (NaN, and None in JSON, elsewhere)."""
    present = stats.present
    ranks = class_rankme(stats.counts[present], stats.class_scatter(scaled=True)[present])
    defined = ranks[np.isfinite(ranks)]
    return {"class_rankme": tuple(float(v) for v in ranks),
            "class_rankme_mean": float(defined.mean()) if defined.size else None}


def _scaled_classifier(weight: np.ndarray | None, present: np.ndarray,
                       device: torch.device | None) -> tuple[np.ndarray | torch.Tensor | None, int]:
    """(W's present rows times 2**k, k), on ``device`` when given (else numpy); (None, 0)
    without W. The power of two makes W of order one too: its metrics are scale-free, and
    its Gram neither over- nor underflows for weights of magnitude 1e+-250."""
    if weight is None:
        return None, 0
    rows = weight if present.all() else weight[present]
    shift = _order_one_shift(rows)
    # times the power of two itself where it is a normal number (a multiplication:
    # faster than ldexp, and as exact)
    scaled = rows * math.ldexp(1.0, shift) if abs(shift) < 1000 else np.ldexp(rows, shift)
    return (scaled if device is None else torch.from_numpy(scaled).to(device)), shift


def _order_one_shift(array: np.ndarray) -> int:
    """k such that array * 2**k has its largest magnitude in [0.5, 1) (0 for zeros)."""
    peak = max(float(array.max()), -float(array.min())) if array.size else 0.0
    return -math.frexp(peak)[1] if peak > 0 else 0


def _unscaled(value: float, log_scale: float, power: float) -> float:
    """A metric proportional to scale**power on the scaled state (scale = 2**log_scale),
    for the data themselves: value / scale**power (inf where that leaves float64)."""
    return _ldexp(value, -power * log_scale)


def _ldexp(value: float, exponent: float) -> float:
    """value * 2**exponent (inf where that leaves float64)."""
    if exponent == 0 or value == 0 or not math.isfinite(value):
        return value
    whole = math.floor(exponent)
    try:
        return math.ldexp(value * 2.0 ** (exponent - whole), whole)
    except OverflowError:
        return math.copysign(math.inf, value)


def _pair_metrics(centred: Any, variances: Any, weight: Any, exponent: float, block: int,
                  tile_dtype: Any, shared: geometry.Shared, nearest: bool = False
                  ) -> tuple[dict[str, float], tuple[Any, Any]]:
    """The metrics over class pairs, from one shared tiled pass, and (with ``nearest``)
    each row's largest cosine to another row of the means and of W (None each where not
    computed: float32 tiles, no W).

    For C > 4 d (C > d with float32 tiles) the spread of the cosines has a closed form on
    d x d matrices that costs less than summing their squares over the pairs and does
    not cancel (geometry.cosine_spread); else the pairwise sums are used, which stay
    exact near a simplex ETF.
    """
    count, dim = centred.shape
    closed_form = geometry.spread_in_closed_form(count, dim, tile_dtype)
    sums = geometry.pair_sums(centred, variances, weight, exponent=exponent,
                              cosine_squares=not closed_form, block=block,
                              tile_dtype=tile_dtype, shared=shared, nearest=nearest)
    pairs = sums.pairs
    values = {
        "cdnv": sums.cdnv / pairs,
        "gnc2_dist_means": geometry.pair_moments(sums.chord, sums.chord_square, pairs)[1],
        "gnc2_log_means": geometry.pair_moments(sums.log, sums.log_square, pairs)[1],
    }
    if not math.isfinite(sums.log):
        values["gnc2_log_means"] = math.inf  # coinciding directions: -log 0
    for name, vectors, angles in (("means", centred, sums.means), ("weights", weight,
                                                                   sums.weights)):
        if angles is None:
            continue
        values[f"maxangle_{name}"] = angles.absolute / pairs
        values[f"equiangularity_{name}"] = (
            geometry.cosine_spread(vectors) if closed_form and vectors is not None
            else angles.spread(pairs))
    found = (sums.means.nearest, None if sums.weights is None else sums.weights.nearest)
    return {key: float(value) for key, value in values.items()}, found


def _classifier_metrics(weight: Any, centred: Any, shared: geometry.Shared,
                        tile_dtype: Any) -> dict[str, float]:
    # s_c = w_c . (mu_c - mu_G): C values, the same on the host on every backend
    duality = geometry.host_vector(geometry.row_dots(weight, centred))
    mean, squares = geometry.mean_and_squares(duality)
    with np.errstate(invalid="ignore", divide="ignore"):
        duality_cv = np.sqrt(squares / len(duality)) / mean
    return {
        "equinorm_weights": geometry.equinorm(weight, shared),
        "etf_error_weights": geometry.simplex_gap(weight, weight, shared=shared,
                                                  tile_dtype=tile_dtype),
        "self_duality": geometry.self_duality(weight, centred, shared),
        "wh_duality": geometry.simplex_gap(weight, centred, shared=shared,
                                           tile_dtype=tile_dtype),
        "unc3_duality_cv": float(duality_cv),
        "unc3_duality_var": float(squares / (len(duality) - 1)),
    }


def _bias_relation(projected: np.ndarray, bias: np.ndarray) -> float:
    """||W mu_G + b|| / (||W mu_G|| + ||b||) from W mu_G: 0 when the bias cancels it."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.linalg.norm(projected + bias)
                     / (np.linalg.norm(projected) + np.linalg.norm(bias)))


def _ood_orthogonality(means: Any, ood_mean: np.ndarray) -> float:
    """Mean over classes of |cos(mu_c, mu_G^ood)| (uncentred means, as NECO)."""
    if isinstance(means, torch.Tensor):
        projected = means @ torch.from_numpy(ood_mean).to(means.device)
    else:
        projected = means @ ood_mean
    norms = geometry.host_vector(geometry.row_norms(means))
    with np.errstate(invalid="ignore", divide="ignore"):
        cosines = geometry.host_vector(projected) / (norms * np.linalg.norm(ood_mean))
    return float(np.abs(cosines).mean())


@dataclass(frozen=True)
class PerClassMetrics:
    """Per-class views of collapse, for figures of which classes collapse last.

    Attributes
    ----------
    classes : tuple of int
        The classes with samples, in order; every array below follows it.
    counts : ndarray of shape (C_present,)
    variances : ndarray of shape (C_present,)
        sigma_c^2.
    ncc_mismatch, accuracy : ndarray of shape (C_present,) or None
        Fractions over the samples of each true class (None without a second pass).
    cdnv : ndarray of shape (C_present, C_present) or None
        The pairwise CDNV matrix, 0 on the diagonal (None unless asked for).
    cdnv_exponent : float
    """

    classes: tuple[int, ...]
    counts: np.ndarray
    variances: np.ndarray
    ncc_mismatch: np.ndarray | None = None
    accuracy: np.ndarray | None = None
    cdnv: np.ndarray | None = None
    cdnv_exponent: float = 2.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (arrays become lists, NaN becomes None)."""
        return finite_or_none({key: _listed(getattr(self, key))
                               for key in self.__dataclass_fields__})


def _listed(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


def per_class_metrics(
    stats: CollapseStats,
    decisions: DecisionStats | None = None,
    *,
    cdnv_matrix: bool = False,
    cdnv_exponent: float = 2.0,
) -> PerClassMetrics:
    """sigma_c^2, ncc_mismatch and accuracy of each class, and the C x C CDNV matrix.

    Parameters
    ----------
    stats : CollapseStats
    decisions : DecisionStats, optional
        Finished second pass, for the per-class ``ncc_mismatch`` and ``accuracy``.
    cdnv_matrix : bool
        Also return the dense C x C CDNV matrix (C^2 float64 memory).
    cdnv_exponent : float
        Power p of the distance in the CDNV denominator.

    Returns
    -------
    PerClassMetrics
    """
    cdnv_exponent = _positive_exponent(cdnv_exponent)
    _check_measurable(stats)
    present = stats.present
    variances = stats.class_variances()
    values: dict[str, Any] = {}
    if decisions is not None:
        mismatch, accuracy = decisions.compute_per_class()
        values.update(ncc_mismatch=mismatch[present], accuracy=accuracy[present])
    if cdnv_matrix:
        values["cdnv"] = geometry.cdnv_matrix(stats.means[present], variances, cdnv_exponent)
    return PerClassMetrics(tuple(int(c) for c in np.flatnonzero(present)),
                           stats.counts[present].copy(), variances,
                           cdnv_exponent=float(cdnv_exponent), **values)


def ood_feature_mean(features: Any, dim: int | None = None) -> np.ndarray:
    """The float64 mean of out-of-distribution features (N_ood, d), checked.

    Raises NCInputError for an empty array or a dimension other than ``dim``.
    """
    x = as_features(features, name="ood_features")
    if x.shape[0] == 0:
        raise NCInputError("ood_features has no rows")
    if dim is not None and x.shape[1] != dim:
        raise NCInputError(f"ood_features has dimension {x.shape[1]}; the features have {dim}")
    return x.to(dtype=torch.float64).mean(dim=0).cpu().numpy()
