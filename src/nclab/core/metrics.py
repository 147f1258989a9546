"""Neural Collapse metrics (SPEC section 1) from a CollapseStats and a classifier."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nclab.core import geometry
from nclab.core.errors import NCInputError
from nclab.core.io import json_ready
from nclab.core.stats import CollapseStats, DecisionStats
from nclab.core.validation import as_classifier, as_features, as_labels

#: Every metric of SPEC section 1, in SPEC order.
METRIC_NAMES = (
    "nc1", "nc1_trace", "cdnv", "equinorm_means", "equinorm_weights", "equiangularity_means",
    "equiangularity_weights", "maxangle_means", "maxangle_weights", "etf_error_means",
    "etf_error_weights", "self_duality", "wh_duality", "ncc_mismatch", "accuracy",
)
#: Metrics that need the classifier (W, b); they are None without it.
CLASSIFIER_METRICS = (
    "equinorm_weights", "equiangularity_weights", "maxangle_weights", "etf_error_weights",
    "self_duality", "wh_duality", "ncc_mismatch", "accuracy",
)


@dataclass(frozen=True)
class CollapseMetrics:
    """Every metric of SPEC section 1, by its SPEC name, plus what they were computed on.

    Metrics are floats; those that need the classifier are None when it was not given,
    and ``ncc_mismatch`` / ``accuracy`` are None until a second pass (DecisionStats) ran.
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
    num_samples: int = 0
    num_classes: int = 0
    dim: int = 0
    weighted_mean: bool = False
    etf_meaningful: bool = True
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
        return {f"{prefix}{name}": float(value) for name in METRIC_NAMES
                if (value := getattr(self, name)) is not None}


def compute_metrics(
    stats: CollapseStats,
    weight: Any = None,
    bias: Any = None,
    *,
    decisions: DecisionStats | None = None,
    weighted_mean: bool = False,
    block: int = geometry.DEFAULT_BLOCK,
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
    block : int
        Tile size for the O(C^2) pair metrics.

    Returns
    -------
    CollapseMetrics

    Notes
    -----
    Classes with no samples are dropped from every metric, the classifier rows included,
    and listed in ``empty_classes``.
    """
    if stats.dim is None or stats.num_samples == 0:
        raise NCInputError("no samples were seen: nothing to measure")
    present = stats.present
    num_present = int(present.sum())
    if num_present < 2:
        raise NCInputError(f"need at least 2 classes with samples; got {num_present}")
    if stats.counts[present].max() < 2:
        raise NCInputError("every class has a single sample: within-class variability is undefined")
    w, _ = as_classifier(weight, bias, stats.num_classes, stats.dim)
    notes = []
    empty = tuple(int(c) for c in np.flatnonzero(~present))
    if empty:
        notes.append(f"{len(empty)} classes have no samples and were left out: {list(empty)[:10]}")
    etf_meaningful = num_present <= stats.dim + 1
    if not etf_meaningful:
        notes.append(f"C={num_present} > d+1={stats.dim + 1}: no simplex ETF exists in d dims, "
                     "so etf_error and wh_duality cannot reach 0")

    means = stats.means[present]
    centred = means - stats.global_mean(weighted=weighted_mean)
    sigma_w = stats.within_class_covariance()
    max_rank = num_present if weighted_mean else num_present - 1
    values: dict[str, Any] = {
        "nc1": geometry.pseudo_inverse_trace(sigma_w, centred, max_rank) / num_present,
        "nc1_trace": float(np.trace(sigma_w) / (np.sum(centred * centred) / num_present)),
        "cdnv": geometry.cdnv(means, stats.class_variances(), block),
        "equinorm_means": geometry.equinorm(centred),
        "etf_error_means": geometry.simplex_gap(centred, centred),
    }
    values["equiangularity_means"], values["maxangle_means"] = geometry.cosine_moments(
        centred, block)
    if w is not None:
        w = w[present]
        values.update(
            equinorm_weights=geometry.equinorm(w),
            etf_error_weights=geometry.simplex_gap(w, w),
            self_duality=geometry.self_duality(w, centred),
            wh_duality=geometry.simplex_gap(w, centred),
        )
        values["equiangularity_weights"], values["maxangle_weights"] = geometry.cosine_moments(
            w, block)
    if decisions is not None:
        values["ncc_mismatch"], values["accuracy"] = decisions.compute()
    if any(isinstance(v, float) and not math.isfinite(v) for v in values.values()):
        notes.append("some metrics are not finite (coinciding class means or a zero vector)")
    return CollapseMetrics(
        **values, num_samples=stats.num_samples, num_classes=num_present, dim=stats.dim,
        weighted_mean=weighted_mean, etf_meaningful=etf_meaningful, empty_classes=empty,
        warnings=tuple(notes),
    )


def measure(
    features: Any,
    labels: Any,
    weight: Any = None,
    bias: Any = None,
    *,
    num_classes: int | None = None,
    weighted_mean: bool = False,
    batch_size: int = 65_536,
) -> CollapseMetrics:
    """All collapse metrics of in-memory features in one call.

    Parameters
    ----------
    features : array or tensor of shape (N, d)
    labels : array or tensor of shape (N,)
    weight : array of shape (C, d), optional
    bias : array of shape (C,), optional
    num_classes : int, optional
        C; defaults to ``weight.shape[0]``, else ``max(labels) + 1``.
    weighted_mean : bool
        Use the sample-weighted global mean.
    batch_size : int
        Rows per streamed batch.

    Returns
    -------
    CollapseMetrics
    """
    x = as_features(features)
    if num_classes is None and weight is not None:
        num_classes = int(np.shape(weight)[0])
    y = as_labels(labels, x.shape[0], num_classes)
    if x.shape[0] == 0:
        raise NCInputError("features has no rows")
    stats = CollapseStats(num_classes or int(y.max()) + 1, dim=x.shape[1])
    batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    for xb, yb in batches:
        stats.update(xb, yb)
    decisions = None
    if weight is not None:
        decisions = DecisionStats.from_stats(stats, weight, bias)
        for xb, yb in batches:
            decisions.update(xb, yb)
    return compute_metrics(stats, weight, bias, decisions=decisions, weighted_mean=weighted_mean)
