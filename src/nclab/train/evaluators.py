"""What is measured at the logged epochs: a list of evaluator objects.

An evaluator is any callable ``evaluator(context) -> dict[str, float | None]`` with a
``name``; the trainer calls each one at every logged epoch and writes the returned
values into that epoch's row of metrics.jsonl / metrics.csv. Register a new one in
``EVALUATORS`` to make it selectable by name (``TrainConfig.evaluators``), or pass
instances to :class:`Trainer` directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from nclab.capture import track
from nclab.errors import NCInputError
from nclab.metrics import METRIC_NAMES
from nclab.train.batches import EvalBatches
from nclab.train.config import TrainConfig

if TYPE_CHECKING:
    from nclab.data import DatasetSplits
    from nclab.train.task import Task


@dataclass
class EvalContext:
    """What an evaluator may use at a logged epoch.

    Attributes
    ----------
    model : nn.Module
        The network, unwrapped from DistributedDataParallel; put it in eval mode and
        restore its mode if you run it.
    loaders : dict
        ``{"train": EvalBatches, "test": EvalBatches}``: this rank's shard of each
        split, re-iterable, yielding (x, y) on ``device``.
    classifier : str
        Name of the classifier layer (its input is the feature h).
    epoch : int
    config : TrainConfig
    device : torch.device
    distributed : bool
        True under torch.distributed: combine per-rank results (all_reduce) so that
        every rank returns the values of the whole data set.
    task : Task, optional
        The run's task.
    data : DatasetSplits, optional
        The whole train and test splits as the task loaded them (on the CPU), with any
        extra labels the task keeps (e.g. the fine labels of a coarse task).
    """

    model: nn.Module
    loaders: dict[str, EvalBatches]
    classifier: str
    epoch: int
    config: TrainConfig
    device: torch.device
    distributed: bool = False
    task: Task | None = None
    data: DatasetSplits | None = None


class Evaluator(Protocol):
    name: str

    def __call__(self, context: EvalContext) -> dict[str, Any]: ...


class CollapseEvaluator:
    """Every SPEC section-1 metric on the train and the test split: ``train_nc1``, ...

    Parameters
    ----------
    splits : tuple of str
        Which splits to measure.
    weighted_mean : bool
        Use the sample-weighted global mean.
    """

    name = "collapse"

    def __init__(self, splits: tuple[str, ...] = ("train", "test"),
                 weighted_mean: bool = False) -> None:
        self.splits, self.weighted_mean = splits, weighted_mean

    def __call__(self, context: EvalContext) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for split in self.splits:
            metrics = track(context.model, context.loaders[split], context.classifier,
                            weighted_mean=self.weighted_mean, sync=context.distributed)
            row.update({f"{split}_{name}": getattr(metrics, name) for name in METRIC_NAMES})
        return row


#: name -> factory(config) of the evaluators selectable in ``TrainConfig.evaluators``.
EVALUATORS: dict[str, Callable[[TrainConfig], Evaluator]] = {
    "collapse": lambda config: CollapseEvaluator(),
}


def make_evaluators(config: TrainConfig) -> list[Evaluator]:
    unknown = [name for name in config.evaluators if name not in EVALUATORS]
    if unknown:
        raise NCInputError(f"unknown evaluator {', '.join(unknown)}; "
                           f"choose from: {', '.join(EVALUATORS)}")
    return [EVALUATORS[name](config) for name in config.evaluators]
