"""Neural Collapse as a ``torchmetrics.Metric``: update with features and labels,
compute the metrics, synchronized over processes by torchmetrics.

Needs the ``torchmetrics`` extra (``pip install "nclab[torchmetrics]"``).

>>> import torch
>>> head = torch.nn.Linear(8, 3)                 # the classifier, read at compute()
>>> loader = [(torch.randn(30, 8) + 3 * torch.eye(3, 8)[torch.arange(30) % 3],
...            torch.arange(30) % 3) for _ in range(2)]
>>> metric = NeuralCollapse(num_classes=3, classifier=head)
>>> for h, y in loader:
...     metric.update(h, y)
>>> float(metric.compute()["nc1"]) > 0
True
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import torch
from torch import nn

from nclab.core.errors import NCInputError
from nclab.core.metric_info import METRICS
from nclab.core.metrics import CollapseMetrics, compute_metrics
from nclab.core.stats import CollapseStats

__all__ = ["NeuralCollapse"]

try:
    from torchmetrics import Metric
except ImportError:  # pragma: no cover - depends on what is installed
    raise ImportError("nclab.integrations.torchmetrics needs torchmetrics: "
                      'pip install "nclab[torchmetrics]"') from None


def pack(stats: CollapseStats) -> torch.Tensor:
    """The statistics' whole declared state as one float64 vector
    (:meth:`CollapseStats.to_vector`: counts, means, spreads, scatter and the
    power-of-two exponent of their units)."""
    return stats.to_vector()


def unpack(vector: torch.Tensor, num_classes: int, dim: int) -> CollapseStats:
    """The CollapseStats that :func:`pack` made ``vector`` from (checked as a state dict is)."""
    return CollapseStats(num_classes, dim).load_vector(vector)


def merge_packed(stacked: torch.Tensor, num_classes: int, dim: int) -> torch.Tensor:
    """Merge packed states, one per row of ``stacked`` (k, L), into one (L,) exactly.

    The pairwise merge of Chan, Golub & LeVeque (``CollapseStats.merge``): the result
    is the state of the union of the parts, not an average of their moments. This is
    the ``dist_reduce_fx`` that torchmetrics applies to the states gathered from every
    process, and to a batch state merged into the running one.
    """
    rows = stacked.reshape(-1, stacked.shape[-1])
    total = CollapseStats(num_classes, dim)
    for row in rows:
        total.merge(unpack(row, num_classes, dim))
    return pack(total).to(stacked.device)


def _cpu_float64_head(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The ``weight`` and ``bias`` (or None) of a classifier layer, detached, on the CPU
    in float64."""
    weight, bias = layer.weight, getattr(layer, "bias", None)
    if not isinstance(weight, torch.Tensor) or not isinstance(bias, (torch.Tensor, type(None))):
        raise NCInputError(f"the classifier {type(layer).__name__} has a weight or bias "
                           "that is not a tensor")
    return (weight.detach().to("cpu", torch.float64),
            None if bias is None else bias.detach().to("cpu", torch.float64))


class NeuralCollapse(Metric):
    """Every one-pass collapse metric of (features, labels) batches.

    Parameters
    ----------
    num_classes : int
        C; labels lie in ``0..C-1``.
    dim : int, optional
        Feature dimension d; default: the classifier's number of inputs. The state has a
        fixed size (``CollapseStats.vector_size``, about C (d + 2) + d^2) so that every
        process's state has the same shape.
    classifier : nn.Module, optional
        A layer with a 2-D ``weight`` (C, d) and optional ``bias`` (an ``nn.Linear``):
        read at each :meth:`compute`, for the metrics of the classifier. Not registered
        as a submodule (it belongs to the model).
    weighted_mean : bool
        Use the sample-weighted global mean.
    **kwargs
        torchmetrics' options (``dist_sync_on_step``, ``process_group``, ...).

    Notes
    -----
    The state is one float64 vector, the flat encoding of every field that
    :class:`~nclab.core.stats.CollapseStats` declares (counts, means, squared spreads,
    pooled scatter and the power-of-two exponent of their units), merged with
    :func:`merge_packed` (exact pairwise merge)
    when torchmetrics synchronizes processes. ``ncc_mismatch`` and ``accuracy`` need a
    second pass over the data with the final class means and are not computed here;
    ``nclab.track`` gives them.

    **Directions.** ``higher_is_better`` is None: :meth:`compute` returns many metrics,
    and no single bool is right for all of them (most are gaps, lower is better, but
    ``unc3_duality_cv`` is best at 0 and can be negative). Each metric's own direction is
    in ``directions`` ("lower", "higher" or the ideal value, from
    ``nclab.core.metric_info.METRICS``): for a ``MetricTracker``, track one metric
    (``nc1``, lower is better: ``maximize=False``) or pass ``maximize`` from it.
    """

    #: The flat state (``add_state``): declared for the type checker, which cannot see
    #: the attributes that torchmetrics makes.
    moments: torch.Tensor

    is_differentiable = False
    higher_is_better = None
    full_state_update = False
    #: {metric name: "lower", "higher" or its ideal value} for every metric of compute().
    directions: ClassVar[dict[str, str | float]] = {
        name: info.direction for name, info in METRICS.items() if not info.option}

    def __init__(self, num_classes: int, dim: int | None = None, *,
                 classifier: nn.Module | None = None, weighted_mean: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(num_classes) < 2:
            raise NCInputError(f"num_classes must be >= 2; got {num_classes}")
        if dim is None:
            weight = getattr(classifier, "weight", None)
            if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
                raise NCInputError("NeuralCollapse needs dim= or a classifier= layer "
                                   "with a 2-D weight")
            dim = weight.shape[1]
        self.num_classes, self.dim = int(num_classes), int(dim)
        self.weighted_mean = weighted_mean
        self._classifier = (classifier,)  # a tuple: not registered as a submodule
        self._result: CollapseMetrics | None = None
        size = CollapseStats(self.num_classes, self.dim).vector_size()
        self.add_state("moments", default=torch.zeros(size, dtype=torch.float64),
                       dist_reduce_fx=functools.partial(merge_packed,
                                                        num_classes=self.num_classes,
                                                        dim=self.dim))

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: features (n, d) of any float dtype and device, labels (n,)."""
        stats = unpack(self.moments, self.num_classes, self.dim).update(features, labels)
        self.moments = pack(stats).to(self.moments.device)

    def compute(self) -> dict[str, torch.Tensor]:
        """Every metric that has a value, ``{name: 0-d float64 tensor}``.

        The names are those of ``CollapseMetrics.scalars`` (``nc1``, ``etf_error_means``,
        ...); the classifier's metrics are there when a ``classifier`` was given. The
        full :class:`CollapseMetrics` of the same state is :meth:`result`.
        """
        stats = unpack(self.moments, self.num_classes, self.dim)
        weight: torch.Tensor | None = None
        bias: torch.Tensor | None = None
        classifier = self._classifier[0]
        if classifier is not None:
            weight, bias = _cpu_float64_head(classifier)
        self._result = compute_metrics(stats, weight, bias, weighted_mean=self.weighted_mean)
        return {name: torch.tensor(value, dtype=torch.float64)
                for name, value in self._result.scalars().items()}

    def result(self) -> CollapseMetrics:
        """The :class:`CollapseMetrics` behind :meth:`compute` (counts, empty classes,
        warnings included)."""
        self.compute()
        if self._result is None:
            raise NCInputError("NeuralCollapse: compute() has not run on this state")
        return self._result

    def reset(self) -> None:
        super().reset()
        self._result = None
