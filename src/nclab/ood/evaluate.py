"""Out-of-distribution detection from arrays or from a model and loaders.

Convention (definitions §9): every score is higher for samples that look more
in-distribution, and the in-distribution samples are the positive class of AUROC, AUPR
and FPR95. The scores are fitted on an in-distribution *fit set* (its class means,
shared covariance and principal axes, from one :class:`~nclab.core.stats.CollapseStats`:
by default the in-distribution evaluation set itself, better its training split), then
streamed over the in-distribution evaluation set and every OOD set; the metrics are
computed exactly from the per-sample scores with scikit-learn.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nclab.capture import (
    CaptureOptions,
    Probe,
    classifier_parameters,
    collect,
    find_classifier,
)
from nclab.core.errors import NCInputError
from nclab.core.io import finite_or_none
from nclab.core.stats import CollapseStats
from nclab.core.validation import as_features, as_labels, classifier_rows, positive_int
from nclab.ood.fit import NCI_ALPHA, OODFit, ScoreStream

#: The detection metrics of every (OOD set, method), in the order results list them.
METRICS = ("auroc", "aupr", "fpr95")
#: The true-positive rate (in-distribution samples kept) at which FPR is read.
TPR_LEVEL = 0.95


def detection_metrics(id_scores: Any, ood_scores: Any) -> dict[str, float]:
    """AUROC, AUPR and FPR95 of in-distribution (positive) against OOD scores.

    Parameters
    ----------
    id_scores : array of shape (N_id,)
    ood_scores : array of shape (N_ood,)
        Higher = more in-distribution; a sample is called in-distribution when its
        score is >= the threshold.

    Returns
    -------
    dict
        ``auroc``: scikit-learn's ``roc_auc_score``; ``aupr``: its
        ``average_precision_score`` (the step-wise area, in-distribution positive);
        ``fpr95``: the false-positive rate at the highest threshold whose TPR >= 0.95
        (the smallest FPR among the ROC points that keep 95% of the in-distribution
        samples), from ``roc_curve`` with every threshold kept.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    id_scores, ood_scores = np.asarray(id_scores, np.float64), np.asarray(ood_scores, np.float64)
    if id_scores.size == 0 or ood_scores.size == 0:
        raise NCInputError("detection metrics need at least one in-distribution and one "
                           "OOD score")
    if not (np.isfinite(id_scores).all() and np.isfinite(ood_scores).all()):
        raise NCInputError("scores contain NaN or inf")
    truth = np.concatenate([np.ones(id_scores.size), np.zeros(ood_scores.size)])
    score = np.concatenate([id_scores, ood_scores])
    fpr, tpr, _ = roc_curve(truth, score, drop_intermediate=False)
    return {"auroc": float(roc_auc_score(truth, score)),
            "aupr": float(average_precision_score(truth, score)),
            "fpr95": float(fpr[np.argmax(tpr >= TPR_LEVEL)])}


@dataclass(frozen=True)
class OODResult:
    """Detection metrics of every OOD set and method, and the per-sample scores.

    Attributes
    ----------
    methods : tuple of str
        The scores computed.
    metrics : dict
        OOD set name -> method -> {"auroc", "aupr", "fpr95"}.
    k : int or None
        NECO's subspace dimension (None without NECO).
    neco_explained : float or None
        The share of the fit set's (standardized) variance in NECO's k axes.
    neco_standardize : bool
    nci_alpha : float
    num_classes, dim, num_fit, num_id : int
        C, d, and the samples of the fit set and of the in-distribution set.
    num_ood : dict
        OOD set name -> its number of samples.
    id_scores : dict
        Method -> scores (N_id,) of the in-distribution set (not in ``to_dict``).
    ood_scores : dict
        OOD set name -> method -> scores (N_ood,) (not in ``to_dict``).
    warnings : tuple of str
    """

    methods: tuple[str, ...]
    metrics: dict[str, dict[str, dict[str, float]]]
    k: int | None
    neco_explained: float | None
    neco_standardize: bool
    nci_alpha: float
    num_classes: int
    dim: int
    num_fit: int
    num_id: int
    num_ood: dict[str, int]
    id_scores: dict[str, np.ndarray] = field(repr=False)
    ood_scores: dict[str, dict[str, np.ndarray]] = field(repr=False)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the settings, ``k``, and per OOD set its size and, per method,
        ``auroc``, ``aupr`` and ``fpr95`` (the per-sample scores are left out)."""
        return finite_or_none({
            "methods": list(self.methods), "k": self.k,
            "neco_explained_variance": self.neco_explained,
            "neco_standardize": self.neco_standardize, "nci_alpha": self.nci_alpha,
            "num_classes": self.num_classes, "dim": self.dim, "num_fit": self.num_fit,
            "num_id": self.num_id,
            "ood": {name: {"num_samples": self.num_ood[name], **by_method}
                    for name, by_method in self.metrics.items()},
            "warnings": list(self.warnings),
        })

    def scalars(self, prefix: str = "ood/") -> dict[str, float]:
        """``{prefix + "SET/METHOD/METRIC": value}``, flat for any logger."""
        return {f"{prefix}{name}/{method}/{metric}": value
                for name, by_method in self.metrics.items()
                for method, values in by_method.items() for metric, value in values.items()}


def _result(fitted: OODFit, stats: CollapseStats, standardize: bool,
            id_stream: ScoreStream, ood_streams: dict[str, ScoreStream]) -> OODResult:
    """The metrics of every set and method; scores that are not finite (features or
    logits beyond the float64 range) are refused naming the method and the set."""
    id_scores = id_stream.scores()
    ood_scores = {name: stream.scores() for name, stream in ood_streams.items()}
    for name, stream in [("the in-distribution set", id_stream), *ood_streams.items()]:
        if stream.num_samples == 0:
            raise NCInputError(f"{_label(name)} has no samples")
    for name, by_method in [("the in-distribution set", id_scores), *ood_scores.items()]:
        for method, values in by_method.items():
            if not np.isfinite(values).all():
                raise NCInputError(f"{method} scores of {_label(name)} are not finite (the "
                                   "features or logits leave the float64 range): rescale")
    metrics = {name: {method: detection_metrics(id_scores[method], by_method[method])
                      for method in fitted.methods}
               for name, by_method in ood_scores.items()}
    return OODResult(fitted.methods, metrics, fitted.k, fitted.explained, standardize,
                     fitted.nci_alpha, stats.num_classes, fitted.dim, stats.num_samples,
                     id_stream.num_samples,
                     {name: stream.num_samples for name, stream in ood_streams.items()},
                     id_scores, ood_scores, fitted.warnings)


def _label(name: str) -> str:
    return name if name.startswith("the ") else f"OOD set '{name}'"


def _ood_names(ood: Any, what: str = "ood") -> list[str]:
    if not isinstance(ood, Mapping):
        raise NCInputError(f"{what} must be a dict from a name to an OOD set; got "
                           f"{type(ood).__name__}")
    if not ood:
        raise NCInputError(f"{what} is empty: give at least one OOD set")
    bad = [name for name in ood if not isinstance(name, str) or not name]
    if bad:
        raise NCInputError(f"{what}: every OOD set needs a non-empty string name; got {bad[0]!r}")
    return list(ood)


# ------------------------------------------------------------------ from arrays
def _rows(x: torch.Tensor, what: str, dim: int | None = None) -> torch.Tensor:
    if x.shape[0] == 0:
        raise NCInputError(f"{what} has no rows")
    if dim is not None and x.shape[1] != dim:
        raise NCInputError(f"{what} has feature dimension {x.shape[1]}; the "
                           f"in-distribution features have {dim}")
    return x


def evaluate(
    id_features: Any,
    id_labels: Any = None,
    weight: Any = None,
    bias: Any = None,
    *,
    ood: Mapping[str, Any],
    fit_features: Any = None,
    fit_labels: Any = None,
    num_classes: int | None = None,
    methods: Sequence[str] | None = None,
    neco_k: int | None = None,
    nci_alpha: float = NCI_ALPHA,
    neco_standardize: bool = True,
    batch_size: int = 65_536,
) -> OODResult:
    """OOD detection of in-memory features: every score, AUROC, AUPR and FPR95.

    Parameters
    ----------
    id_features : array or tensor of shape (N, d)
        In-distribution evaluation features (the positive class).
    id_labels : array of shape (N,), optional
        Their labels; needed when they are also the fit set (no ``fit_features``).
    weight : array of shape (C, d), optional
        The classifier; MSP, energy, NECO x MaxLogit and NCI need it.
    bias : array of shape (C,), optional
    ood : dict
        Name -> OOD features (N_ood, d); labels are not needed.
    fit_features, fit_labels : arrays of shapes (M, d) and (M,), optional
        The in-distribution set the scores are fitted on (class means, covariances,
        NECO's axes), usually the training features; default: the evaluation set.
    num_classes : int, optional
        C; default: the rows of ``weight``, else the largest fit label + 1.
    methods : sequence of str, optional
        Names from ``nclab.ood.METHODS``; default: every one the inputs allow.
    neco_k : int, optional
        NECO's subspace dimension; default: the fewest principal axes holding 90% of
        the fit set's (standardized) variance.
    nci_alpha : float
        NCI's filter weight (OpenOOD's 1e-4).
    neco_standardize : bool
        Standardize the coordinates before NECO's PCA, as the authors' code does.
    batch_size : int
        Rows per streamed batch.

    Returns
    -------
    OODResult
    """
    batch_size = positive_int(batch_size, "batch_size")
    names = _ood_names(ood)
    x_id = _rows(as_features(id_features, "in-distribution features"), "in-distribution features")
    dim = x_id.shape[1]
    ood_x = {name: _rows(as_features(ood[name], f"OOD set '{name}' features"),
                         f"OOD set '{name}'", dim) for name in names}
    if fit_features is None:
        if id_labels is None:
            raise NCInputError("id_labels are needed to fit the scores on the in-distribution "
                               "set (or pass fit_features and fit_labels)")
        x_fit, y_fit = x_id, id_labels
    else:
        x_fit = _rows(as_features(fit_features, "fit features"), "fit features", dim)
        if fit_labels is None:
            raise NCInputError("fit_features given without fit_labels")
        y_fit = fit_labels
    if num_classes is not None:
        num_classes = positive_int(num_classes, "num_classes")
    elif weight is not None:
        num_classes = classifier_rows(weight, dim)
    y = as_labels(y_fit, x_fit.shape[0], num_classes)
    stats = CollapseStats(num_classes or int(y.max()) + 1, dim=dim)
    for start in range(0, x_fit.shape[0], batch_size):
        stats.update(x_fit[start:start + batch_size], y[start:start + batch_size])
    fitted = OODFit.from_stats(stats, weight, bias, methods=methods, neco_k=neco_k,
                               nci_alpha=nci_alpha, neco_standardize=neco_standardize)
    id_stream = _stream_rows(fitted, x_id, "in-distribution features", batch_size)
    ood_streams = {name: _stream_rows(fitted, x, f"OOD set '{name}' features", batch_size)
                   for name, x in ood_x.items()}
    return _result(fitted, stats, neco_standardize, id_stream, ood_streams)


def _stream_rows(fitted: OODFit, x: torch.Tensor, name: str, batch_size: int) -> ScoreStream:
    stream = fitted.stream(name)
    for start in range(0, x.shape[0], batch_size):
        stream.update(x[start:start + batch_size])
    return stream


# ------------------------------------------------------------------ from a model
def _unlabelled(loader: Iterable[Any]) -> Iterator[Any]:
    """OOD batches: bare input tensors are paired with dummy labels, never read (labels
    only pair tokens and drop ignored positions)."""
    for batch in loader:
        if torch.is_tensor(batch):
            yield batch, torch.zeros(batch.shape[0], dtype=torch.int64)
        else:
            yield batch


def evaluate_model(
    model: nn.Module,
    id_loader: Iterable[Any],
    ood_loaders: Mapping[str, Iterable[Any]],
    classifier: str | nn.Linear | None = None,
    *,
    fit_loader: Iterable[Any] | None = None,
    num_classes: int | None = None,
    methods: Sequence[str] | None = None,
    neco_k: int | None = None,
    nci_alpha: float = NCI_ALPHA,
    neco_standardize: bool = True,
    device: torch.device | str | None = None,
    spatial: str = "mean",
    label_key: str = "labels",
    forward: Any = None,
    labels: Any = None,
    ignore_index: int | None = -100,
    shift_labels: bool = False,
    capture: CaptureOptions | None = None,
) -> OODResult:
    """OOD detection with a model: its classifier's input h is the feature, its classifier
    (W, b) gives the logits W h + b (in float64).

    The fit set (``fit_loader``, default ``id_loader``) is streamed once into a
    :class:`~nclab.core.stats.CollapseStats`; then ``id_loader`` and every OOD loader
    are streamed once each, scoring batch by batch (only the per-sample scores are
    kept). Batches of any form :func:`nclab.track` reads; an OOD loader may also yield
    bare input tensors.

    Parameters
    ----------
    model : nn.Module
        Run in eval mode without gradients; its mode is restored after.
    id_loader : iterable of batches
        In-distribution evaluation batches, with labels (iterated twice when it is also
        the fit set: it must then be re-iterable, a DataLoader for example).
    ood_loaders : dict
        Name -> an iterable of OOD batches.
    classifier : str or nn.Linear, optional
        The classifier layer; default: the last ``nn.Linear``.
    fit_loader : iterable of batches, optional
        The in-distribution set the scores are fitted on (usually the training split).
    num_classes, device, spatial, label_key, forward, labels, ignore_index, shift_labels
        As in :func:`nclab.track`.
    capture : CaptureOptions, optional
        The capture keywords in one :class:`~nclab.capture.CaptureOptions`, as in
        :func:`nclab.track`.
    methods, neco_k, nci_alpha, neco_standardize
        As in :func:`evaluate`.

    Returns
    -------
    OODResult
    """
    names = _ood_names(ood_loaders, "ood_loaders")
    if fit_loader is None and iter(id_loader) is id_loader:
        raise NCInputError("id_loader is a one-shot iterator but is also the fit set (read "
                           "twice): pass a re-iterable loader or a fit_loader")
    options = CaptureOptions.resolve(capture, device=device, spatial=spatial,
                                         label_key=label_key, forward=forward, labels=labels,
                                         ignore_index=ignore_index, shift_labels=shift_labels)
    head = find_classifier(model, classifier)
    weight, bias = classifier_parameters(model, head)
    probe = Probe(model, head, "input")
    run = options.collect_kwargs()
    stats = CollapseStats(int(num_classes if num_classes is not None else weight.shape[0]))
    collect(model, id_loader if fit_loader is None else fit_loader, lambda _: stats, [probe],
            **run)
    fitted = OODFit.from_stats(stats, weight, bias, methods=methods, neco_k=neco_k,
                               nci_alpha=nci_alpha, neco_standardize=neco_standardize)
    id_stream = fitted.stream("in-distribution features")
    collect(model, id_loader, lambda _: id_stream, [probe], **run)
    ood_streams = {}
    for name in names:
        ood_streams[name] = fitted.stream(f"OOD set '{name}' features")
        collect(model, _unlabelled(ood_loaders[name]), lambda _, s=ood_streams[name]: s,
                [probe], **run)
    return _result(fitted, stats, neco_standardize, id_stream, ood_streams)
