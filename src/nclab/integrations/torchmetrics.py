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
from typing import Any

import torch
from torch import nn

from nclab.core.errors import NCInputError
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
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

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
        weight = bias = None
        classifier = self._classifier[0]
        if classifier is not None:
            weight = classifier.weight.detach().to("cpu", torch.float64)
            if getattr(classifier, "bias", None) is not None:
                bias = classifier.bias.detach().to("cpu", torch.float64)
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
