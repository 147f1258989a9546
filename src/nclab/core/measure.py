"""The array entry points: every metric of in-memory features in one call.

Each streams the arrays through its statistic and computes its metrics; the statistics
and the formulas stay independent of these conveniences.
"""

from __future__ import annotations

from typing import Any

from nclab.core.errors import NCInputError
from nclab.core.metrics import CollapseMetrics, ood_feature_mean
from nclab.core.regression_metrics import RegressionMetrics
from nclab.core.regression_stats import RegressionStats
from nclab.core.stats import CollapseStats, DecisionStats
from nclab.core.validation import (
    as_features,
    as_labels,
    as_targets,
    classifier_rows,
    ensure_finite,
    ensure_moderate_scale,
    positive_int,
)


def measure(
    features: Any,
    labels: Any,
    weight: Any = None,
    bias: Any = None,
    *,
    num_classes: int | None = None,
    weighted_mean: bool = False,
    ood_features: Any = None,
    cdnv_exponent: float = 2.0,
    batch_size: int = 65_536,
    spectral: bool = False,
    margins: bool = False,
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
    ood_features : array or tensor of shape (N_ood, d), optional
        Out-of-distribution features, for ``nc5_ood_orthogonality``.
    cdnv_exponent : float
        Power p of the distance in the cdnv denominator (2: Galanti et al.).
    batch_size : int
        Rows per streamed batch.
    spectral : bool
        Also RankMe, alpha-ReQ, LiDAR and the explained variance (definitions §8).
    margins : bool
        Also the one-vs-rest margins of the means and of W (definitions §10).

    Returns
    -------
    CollapseMetrics
    """
    batch_size = positive_int(batch_size, "batch_size")
    x = as_features(features)
    if num_classes is None and weight is not None:
        num_classes = classifier_rows(weight, x.shape[1], _implied_classes(labels, x))
    y = as_labels(labels, x.shape[0], num_classes)
    if x.shape[0] == 0:
        raise NCInputError("features has no rows")
    ood_mean = None if ood_features is None else ood_feature_mean(ood_features, x.shape[1])
    stats = CollapseStats(num_classes or int(y.max()) + 1, dim=x.shape[1])
    batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    for xb, yb in batches:
        stats.update(xb, yb)
    decisions = None
    if weight is not None:
        decisions = DecisionStats.from_stats(stats, weight, bias)
        for xb, yb in batches:
            decisions.update(xb, yb)
    return stats.compute(weight, bias, decisions=decisions, weighted_mean=weighted_mean,
                           ood_mean=ood_mean, cdnv_exponent=cdnv_exponent,
                         spectral=spectral, margins=margins)


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
    return stats.compute(weight, bias, gamma=gamma, centred_pca=centred_pca)


def _implied_classes(labels: Any, features: Any) -> int | None:
    """max(labels) + 1, for the message about a classifier of the wrong shape."""
    y = as_labels(labels, features.shape[0], None)
    return int(y.max()) + 1 if len(y) else None
