"""Collapse on classes the model never trained on: few-shot transfer (definitions §11).

Galanti et al. (ICLR 2022, "On the role of neural collapse in transfer learning") bound
the error of the nearest-class-centre (NCC) rule on new classes by the class-distance
normalized variance (CDNV) of the features on those classes. This module measures both:

- :func:`few_shot`: seeded n-way k-shot episodes on given features (arrays): sample n
  of the classes, k support and q query samples of each; every query goes to the class
  whose support mean is nearest (Euclidean). Mean error over the episodes with a 95%
  interval, the episodes' CDNV, and the bound of definitions §11 from it.
- :func:`few_shot_model`: the same on the features a model gives its classifier (and,
  with ``layers``, on the output or input of more layers, as :func:`nclab.track`).

The CDNV of the novel classes comes from one :class:`~nclab.core.stats.CollapseStats`
of all their samples (:func:`~nclab.core.metrics.per_class_metrics` with
``cdnv_matrix=True``): the population CDNV the bound is stated for, estimated by the
plug-in means and variances.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nclab.capture import CaptureOptions, Probe, collect, find_classifier
from nclab.core.errors import NCInputError
from nclab.core.io import finite_or_none
from nclab.core.metrics import per_class_metrics
from nclab.core.stats import CollapseStats
from nclab.core.validation import as_features, as_labels, positive_int

#: z-value of the two-sided 95% normal interval of the mean error over episodes.
Z95 = 1.959963984540054


def ncc_bound(ways: int, shots: int, mean_cdnv: float) -> float:
    """12 (n - 1) (1 + 2/k) Avg_{i != j} V_ij: the bound of definitions §11 on the
    expected n-way k-shot NCC error, given the mean pairwise CDNV of the n classes."""
    return 12.0 * (ways - 1) * (1.0 + 2.0 / shots) * mean_cdnv


@dataclass(frozen=True)
class FewShotResult:
    """n-way k-shot NCC episodes on one set of features.

    Attributes
    ----------
    ways, shots, queries, episodes, seed : int
        n, k, q per class, the number of episodes and the seed they were drawn with.
    error : float
        Mean over the episodes of the fraction of misclassified queries.
    interval : tuple of float
        95% interval of ``error``: mean -+ 1.96 s / sqrt(episodes), s the standard
        deviation of the episode errors (ddof=1; 0 for one episode), clipped to [0, 1].
    cdnv : float
        Mean over the episodes of Avg_{i != j} V_ij over the episode's classes.
    bound : float
        Mean over the episodes of :func:`ncc_bound` (a bound on ``error``'s expectation;
        above 1 it says nothing).
    cdnv_all : float
        Avg_{i != j} V_ij over every pair of eligible classes.
    num_classes : int
        Classes with at least k + q samples (the ones episodes draw from).
    dim : int
    """

    ways: int
    shots: int
    queries: int
    episodes: int
    seed: int
    error: float
    interval: tuple[float, float]
    cdnv: float
    bound: float
    cdnv_all: float
    num_classes: int
    dim: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite values become None)."""
        return finite_or_none({key: list(value) if isinstance(value, tuple) else value
                               for key, value in self.__dict__.items()})


def _eligible(labels: np.ndarray, need: int) -> dict[int, np.ndarray]:
    """Class -> the indices of its samples, for the classes with at least ``need``."""
    order = np.argsort(labels, kind="stable")
    classes, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    return {int(c): order[s:s + n] for c, s, n in zip(classes, starts, counts, strict=True)
            if n >= need}


def _pairwise_cdnv(features: torch.Tensor, labels: torch.Tensor, classes: list[int]
                   ) -> np.ndarray:
    """The CDNV matrix (len(classes) x len(classes)) of the given classes."""
    known = np.asarray(classes)
    y = labels.cpu().numpy()
    keep = np.isin(y, known)
    stats = CollapseStats(len(classes))
    stats.update(features.cpu()[torch.from_numpy(keep)],
                 torch.from_numpy(np.searchsorted(known, y[keep])))
    cdnv = per_class_metrics(stats, cdnv_matrix=True).cdnv
    assert cdnv is not None  # asked for with cdnv_matrix=True
    return cdnv


def _episode_error(x: np.ndarray, groups: list[np.ndarray], shots: int) -> float:
    """Fraction of the queries (the samples after the first ``shots`` of each group)
    whose nearest support mean is another class's."""
    centres = np.stack([x[g[:shots]].mean(axis=0) for g in groups])
    queries = np.concatenate([x[g[shots:]] for g in groups])
    truth = np.repeat(np.arange(len(groups)), [len(g) - shots for g in groups])
    # ||q - c||^2 up to the ||q||^2 every centre shares
    scores = (centres * centres).sum(axis=1)[None, :] - 2.0 * queries @ centres.T
    return float(np.mean(scores.argmin(axis=1) != truth))


def _check_counts(ways: int, shots: int, queries: int, available: int) -> None:
    need = shots + queries
    if available < ways:
        raise NCInputError(f"{ways}-way {shots}-shot episodes with {queries} queries need "
                           f"{ways} classes with at least {need} samples each; "
                           f"{available} have that many")


def _shots_list(shots: int | Sequence[int]) -> list[int]:
    values = [shots] if isinstance(shots, (int, np.integer)) else list(shots)
    if not values:
        raise NCInputError("shots is empty: give at least one")
    return [positive_int(value, "shots") for value in values]


def few_shot(
    features: Any,
    labels: Any,
    *,
    ways: int = 5,
    shots: int | Sequence[int] = (1, 5),
    queries: int = 15,
    episodes: int = 1000,
    seed: int = 0,
) -> list[FewShotResult]:
    """n-way k-shot nearest-class-centre episodes on features of (novel) classes.

    Parameters
    ----------
    features : array or tensor of shape (N, d)
    labels : array of shape (N,)
        Integer class labels (any non-negative values).
    ways : int
        n >= 2 classes per episode.
    shots : int or sequence of int
        k support samples per class; one result per value.
    queries : int
        q query samples per class.
    episodes : int
    seed : int
        The episodes of (seed, k) are the same on every call and machine (numpy's
        PCG64 seeded with [seed, k]).

    Returns
    -------
    list of FewShotResult
        One per value of ``shots``, in order.
    """
    ways = positive_int(ways, "ways")
    if ways < 2:
        raise NCInputError(f"ways must be >= 2 (one class is no classification); got {ways}")
    queries, episodes = positive_int(queries, "queries"), positive_int(episodes, "episodes")
    shot_values = _shots_list(shots)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise NCInputError(f"seed must be an integer >= 0; got {seed!r}")
    x = as_features(features)
    y = as_labels(labels, x.shape[0], None)
    y_np, x_np = y.cpu().numpy(), x.to(torch.float64).cpu().numpy()
    results = []
    for k in shot_values:
        groups = _eligible(y_np, k + queries)
        _check_counts(ways, k, queries, len(groups))
        classes = sorted(groups)
        matrix = _pairwise_cdnv(x, y, classes)
        results.append(_run_episodes(x_np, groups, classes, matrix, ways, k, queries,
                                     episodes, int(seed)))
    return results


def _run_episodes(x: np.ndarray, groups: dict[int, np.ndarray], classes: list[int],
                  matrix: np.ndarray, ways: int, shots: int, queries: int, episodes: int,
                  seed: int) -> FewShotResult:
    rng = np.random.default_rng([seed, shots])
    errors, cdnvs = np.empty(episodes), np.empty(episodes)
    off_diagonal = ~np.eye(ways, dtype=bool)
    for e in range(episodes):
        chosen = rng.choice(len(classes), size=ways, replace=False)
        drawn = [rng.choice(groups[classes[c]], size=shots + queries, replace=False)
                 for c in chosen]
        errors[e] = _episode_error(x, drawn, shots)
        cdnvs[e] = matrix[np.ix_(chosen, chosen)][off_diagonal].mean()
    spread = errors.std(ddof=1) if episodes > 1 else 0.0
    half = Z95 * spread / np.sqrt(episodes)
    count = len(classes)
    mean_all = matrix[~np.eye(count, dtype=bool)].mean()
    bounds = ncc_bound(ways, shots, 1.0) * cdnvs
    return FewShotResult(ways, shots, queries, episodes, seed, float(errors.mean()),
                         (float(max(errors.mean() - half, 0.0)),
                          float(min(errors.mean() + half, 1.0))),
                         float(cdnvs.mean()), float(bounds.mean()), float(mean_all), count,
                         x.shape[1])


# ------------------------------------------------------------------ from a model
class _Rows:
    """Collects batches of (features, labels) on the CPU."""

    def __init__(self) -> None:
        self.features: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.features.append(features.detach().cpu())
        self.labels.append(labels.detach().cpu())


def _points(layers: Sequence[str] | Mapping[str, str] | str | None, point: str
            ) -> dict[str, str]:
    if layers is None:
        return {}
    if isinstance(layers, str):
        return {layers: point}
    return dict(layers) if isinstance(layers, Mapping) else {name: point for name in layers}


def few_shot_model(
    model: nn.Module,
    loader: Iterable[Any],
    classifier: str | nn.Linear | None = None,
    *,
    layers: Sequence[str] | Mapping[str, str] | None = None,
    layer_point: str = "output",
    device: torch.device | str | None = None,
    spatial: str = "mean",
    label_key: str = "labels",
    forward: Any = None,
    labels: Any = None,
    ignore_index: int | None = -100,
    shift_labels: bool = False,
    capture: CaptureOptions | None = None,
    **episode_options: Any,
) -> list[FewShotResult] | dict[str, list[FewShotResult]]:
    """:func:`few_shot` on the features a model computes for novel-class data.

    The model runs once over ``loader`` (eval mode, no gradients, as :func:`nclab.track`;
    batches of any form it reads); the input of the classifier, and the output (or
    input) of every layer of ``layers``, are kept in CPU memory and each measured.

    Parameters
    ----------
    model : nn.Module
    loader : iterable of batches
        Samples of the novel classes with their labels.
    classifier : str or nn.Linear, optional
        The layer whose input is the feature; default: the last ``nn.Linear``.
    layers, layer_point
        More layers, as in :func:`nclab.track` (a list at ``layer_point``, or a dict
        from layer name to "input" / "output").
    device, spatial, label_key, forward, labels, ignore_index, shift_labels
        As in :func:`nclab.track`.
    capture : CaptureOptions, optional
        Those keywords in one :class:`~nclab.capture.CaptureOptions`, as in
        :func:`nclab.track`.
    **episode_options
        ``ways``, ``shots``, ``queries``, ``episodes``, ``seed`` of :func:`few_shot`.

    Returns
    -------
    list of FewShotResult
        Without ``layers``; otherwise a dict from layer name to its list, in the order
        the forward pass reaches the layers (the classifier's input last).
    """
    options = CaptureOptions.resolve(capture, device=device, spatial=spatial,
                                         label_key=label_key, forward=forward, labels=labels,
                                         ignore_index=ignore_index, shift_labels=shift_labels)
    head = find_classifier(model, classifier)
    probes = [Probe(model, find_classifier(model, name), point)
              for name, point in _points(layers, layer_point).items() if name != head]
    probes.append(Probe(model, head, "input"))
    sinks = collect(model, loader, lambda _: _Rows(), probes, **options.collect_kwargs())
    results = {name: few_shot(torch.cat(rows.features), torch.cat(rows.labels),
                              **episode_options)
               for name, rows in sinks.items() if isinstance(rows, _Rows)}
    return results[head] if layers is None else results
