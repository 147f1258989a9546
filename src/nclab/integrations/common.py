"""What the training-framework integrations share: which samples to measure, the
measurement itself, and the flat scalars that go to a framework's log.

Under ``torch.distributed`` a framework's train loader uses a ``DistributedSampler``
(Lightning) or a sharded batch sampler (HF Accelerate) that *pads* every rank to the
same number of samples by repeating samples from the start of the data set (or drops
the tail with ``drop_last``). Measured through such a loader, a few samples would be
counted twice (or never). The integrations therefore measure a loader of their own over
the same data set: rank r takes samples r, r + world, r + 2 world, ... once each, in
order, without padding, and ``nclab.track`` sums the ranks' statistics exactly. The
loaders come from :mod:`nclab.capture.sharding`, which ``nclab.track`` itself uses.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nclab.capture import find_classifier, track
from nclab.capture.sharding import enumerates_dataset, rebuilt_loader, shard_loader
from nclab.core.errors import NCInputError
from nclab.core.metrics import CollapseMetrics

#: With the loaders of :mod:`nclab.capture.sharding`, used by the integrations through here.
__all__ = ["EpochMeasurement", "collapse_scalars", "enumerates_dataset", "finite", "head_name",
           "measure", "rebuilt_loader", "shard_loader"]


def measure(model: nn.Module, loader: Iterable[Any], *, classifier: str | nn.Linear | None,
            layers: Sequence[str] | None, sync: bool,
            options: Mapping[str, Any]) -> CollapseMetrics | dict[str, CollapseMetrics]:
    """``nclab.track`` of ``model`` over ``loader``, leaving torch's CPU random state
    as it was: iterating a DataLoader draws a seed from it, and the measurement must not
    change the rest of the training."""
    with torch.random.fork_rng(devices=[]):
        return track(model, loader, classifier, layers=layers, sync=sync, **options)


def collapse_scalars(result: CollapseMetrics | Mapping[str, CollapseMetrics], prefix: str,
                     head: str | None = None) -> dict[str, float]:
    """The finite metrics of a :func:`measure` result as ``{name: value}``.

    The classifier's metrics are ``prefix + metric`` (``nc/nc1``); those of another
    layer of a profile are ``prefix + layer + "/" + metric`` (``nc/layer3/nc1``).
    Non-finite values (coinciding class means) are left out, as every logger here does.

    Parameters
    ----------
    result : CollapseMetrics or dict of layer name -> CollapseMetrics
    prefix : str
    head : str, optional
        The classifier's name in a profile ``result``; default: its last entry.
    """
    if isinstance(result, CollapseMetrics):
        return finite(result.scalars(prefix))
    head = head if head is not None else list(result)[-1]
    scalars: dict[str, float] = {}
    for layer, metrics in result.items():
        scalars.update(metrics.scalars(prefix if layer == head else f"{prefix}{layer}/"))
    return finite(scalars)


class EpochMeasurement:
    """What the framework callbacks share: their settings, which epochs they measure,
    and the measurement with its scalars (the framework's own logging aside).

    Attributes
    ----------
    loader, every_n_epochs, classifier, layers, prefix, track_options
        As the callbacks take them.
    metrics : CollapseMetrics or dict of layer name -> CollapseMetrics, or None
        The last measurement.
    """

    def configure(self, loader: Iterable[Any] | None, every_n_epochs: int,
                  classifier: str | nn.Linear | None, layers: Sequence[str] | None,
                  prefix: str, track_options: Mapping[str, Any]) -> None:
        """Check and keep the settings (``every_n_epochs`` >= 1)."""
        if int(every_n_epochs) < 1:
            raise NCInputError(f"every_n_epochs must be >= 1; got {every_n_epochs}")
        self.loader = loader
        self.every_n_epochs = int(every_n_epochs)
        self.classifier = classifier
        self.layers = layers
        self.prefix = prefix
        self.track_options = dict(track_options)
        self.metrics: CollapseMetrics | dict[str, CollapseMetrics] | None = None

    def is_due(self, epoch: int) -> bool:
        """Whether the end of epoch ``epoch`` (1-based) is measured."""
        return epoch >= 1 and epoch % self.every_n_epochs == 0

    def measure_scalars(self, model: nn.Module, loader: Iterable[Any],
                        sync: bool) -> dict[str, float]:
        """Measure ``model`` on ``loader`` (kept in ``metrics``); return the finite
        scalars to log (:func:`collapse_scalars`)."""
        self.metrics = measure(model, loader, classifier=self.classifier, layers=self.layers,
                               sync=sync, options=self.track_options)
        return collapse_scalars(self.metrics, self.prefix, head_name(model, self.classifier))


def head_name(model: nn.Module, classifier: str | nn.Linear | None) -> str:
    """The classifier's layer name, as ``nclab.track`` resolves it."""
    return find_classifier(model, classifier)


def finite(values: Mapping[str, float]) -> dict[str, float]:
    """The entries of ``values`` that are finite numbers."""
    return {key: value for key, value in values.items() if math.isfinite(value)}
