"""What is measured at the logged epochs: a list of evaluator objects.

An evaluator is any callable ``evaluator(context) -> dict[str, float | None]`` with a
``name``; at every logged epoch its returned values go into that epoch's row of
metrics.jsonl / metrics.csv. An evaluator may also have ``summarize(rows) -> dict``:
called at the end with every logged row, its result goes into summary.json (for values
that depend on the final epoch). The trainer runs each one through an
:class:`EvaluatorCallback` (``nclab.train.callbacks``). List a new one in
``nclab.train.tasks.EVALUATORS`` to make it selectable by name
(``TrainConfig.evaluators``), or pass instances as ``Trainer(evaluators=[...])``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import nn

from nclab.capture import Arrangement, Probe, classifier_parameters, collect, track
from nclab.capture.batches import model_device
from nclab.core import distributed
from nclab.core.errors import NCInputError
from nclab.core.imbalance import imbalance_metrics
from nclab.core.metrics import METRIC_NAMES, CollapseMetrics
from nclab.train.batches import EvalBatches
from nclab.train.callbacks import Callback
from nclab.train.config import TrainConfig

if TYPE_CHECKING:
    from nclab.train.trainer import Trainer


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
    task : Task
        The training task (targets, loss; a task may carry extra labels).
    data : DatasetSplits
        The whole data set as loaded by the task (not sharded).

    Use :meth:`track` rather than calling ``nclab.track`` yourself: the pass over a
    split is shared by every evaluator and by the trainer's loss and error columns.
    """

    model: nn.Module
    loaders: dict[str, EvalBatches]
    classifier: str
    epoch: int
    config: TrainConfig
    device: torch.device
    distributed: bool = False
    task: Any = None
    data: Any = None
    _passes: dict[str, tuple[CollapseMetrics, float, float]] = field(default_factory=dict,
                                                                      repr=False)

    def track(self, split: str) -> CollapseMetrics:
        """``nclab.track`` of the model on ``split`` (computed once per logged epoch)."""
        return self._pass(split)[0]

    def loss_and_error(self, split: str) -> tuple[float, float | None]:
        """Mean loss and error rate of the model (eval mode) on ``split``; the error is
        None for tasks without one. Classification takes both from the :meth:`track`
        pass."""
        if not self.task.has_error_rate:
            return evaluate_loss(self.model, self.loaders[split], self.task, self.distributed)
        return self._pass(split)[1:]

    def _pass(self, split: str) -> tuple[CollapseMetrics, float, float]:
        if split not in self._passes:
            totals = LossTotals(self.task, self.device)
            metrics = track(self.model, self.loaders[split], self.classifier,
                            sync=self.distributed, on_batch=totals.add)
            loss, error = totals.result(self.distributed)
            self._passes[split] = (metrics, loss, error)
        return self._passes[split]


class LossTotals:
    """Sums of the task's loss and errors over batches of model outputs."""

    def __init__(self, task: Any, device: torch.device) -> None:
        self.task = task
        self.totals = torch.zeros(3, dtype=torch.float64, device=device)

    def add(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.totals[0] += self.task.loss(outputs, targets)
        if self.task.has_error_rate:
            self.totals[1] += self.task.errors(outputs, targets)
        self.totals[2] += len(targets)

    def result(self, sync: bool = False) -> tuple[float, float | None]:
        """(mean loss, error rate or None) over every batch added (and every rank)."""
        totals = distributed.all_reduce(self.totals) if sync else self.totals.cpu()
        loss, errors, count = totals.tolist()
        if count == 0:  # the same on every rank: the totals are summed
            raise NCInputError("the loader yielded no samples on any rank")
        return loss / count, errors / count if self.task.has_error_rate else None


def evaluate_loss(model: nn.Module, batches: EvalBatches, task: Any,
                  sync: bool = False) -> tuple[float, float | None]:
    """(mean loss, error rate or None) of ``model`` in eval mode over ``batches``."""
    totals = LossTotals(task, model_device(model))
    with distributed.agreed(sync):  # a rank's shard may be empty; its error stops all
        collect(model, batches, on_batch=totals.add, allow_empty=sync)
    return totals.result(sync)


def misclassifies(model: nn.Module, batches: EvalBatches, task: Any, sync: bool = False) -> bool:
    """Whether ``model`` (eval mode) gets any sample of ``batches`` wrong, on any rank.

    The training error is 0 exactly when this is False; each rank stops at its first
    batch with an error, where :func:`evaluate_loss` would run the whole split. The
    batches grow from 64 samples (:meth:`EvalBatches.growing`), so that before the TPT
    onset, when errors are common, the check costs a small fraction of a pass.
    """
    wrong = torch.zeros((), dtype=torch.float64, device=model_device(model))

    def found(outputs: torch.Tensor, targets: torch.Tensor) -> bool:
        wrong.add_(task.errors(outputs, targets))
        return bool(wrong > 0)

    with distributed.agreed(sync):  # a rank's shard may be empty; its error stops all
        collect(model, batches.growing(), allow_empty=sync, until=found)
    return float(distributed.all_reduce(wrong) if sync else wrong) > 0


class Evaluator(Protocol):
    """What is measured at a logged epoch (``summarize(rows) -> dict`` is optional)."""

    name: str

    def __call__(self, context: EvalContext) -> dict[str, Any]: ...


class EvaluatorCallback(Callback):
    """An evaluator in the trainer's loop: its values join each logged row, and its
    ``summarize(rows)``, if it has one, the summary.

    Parameters
    ----------
    evaluator : Evaluator
        Called with ``trainer.eval_context`` at every logged epoch.
    """

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, Any]) -> None:
        row.update(self.evaluator(trainer.eval_context))

    def on_train_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        summarize = getattr(self.evaluator, "summarize", None)
        if summarize is not None and trainer.state.rows:
            summary.update(summarize(trainer.state.rows))


class ClassSums:
    """Per-class feature sums and counts, and per-class correct predictions, in float64.

    A sink of :func:`nclab.capture.collect` (``update``) whose ``count_correct`` takes the
    model's outputs of each batch.
    """

    def __init__(self, num_classes: int, dim: int, device: torch.device) -> None:
        self.sums = torch.zeros(num_classes, dim, dtype=torch.float64, device=device)
        # counts and correct predictions of each class, side by side for one all_reduce
        self.tallies = torch.zeros(2, num_classes, dtype=torch.float64, device=device)

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.sums.index_add_(0, labels, features.to(torch.float64))
        self.tallies[0].index_add_(0, labels, torch.ones_like(labels, dtype=torch.float64))

    def count_correct(self, outputs: torch.Tensor, labels: torch.Tensor) -> None:
        right = (outputs.argmax(dim=1) == labels).to(torch.float64)
        self.tallies[1].index_add_(0, labels, right)

    def result(self, sync: bool) -> tuple[np.ndarray, np.ndarray]:
        """Class means (C, d) and per-class accuracies (C,), summed over ranks with ``sync``.

        Classes without a sample get NaN.
        """
        sums = distributed.all_reduce(self.sums) if sync else self.sums.cpu()
        tallies = distributed.all_reduce(self.tallies) if sync else self.tallies.cpu()
        counts = tallies[0].numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums.numpy() / counts[:, None], tallies[1].numpy() / counts


def imbalance_row(context: EvalContext, splits: tuple[str, ...]) -> dict[str, Any]:
    """The metrics of definitions §12 of each split, for a run on a long-tailed training
    split (``data.info["imbalance"]``); empty otherwise.

    The minority classes and the class counts of the SELI geometry are the training
    split's on every split. One extra pass over each split: the class means and the
    per-class accuracies.
    """
    info = getattr(context.data, "info", {}).get("imbalance")
    if info is None or context.data.num_classes != len(info["counts"]) \
            or context.data.train.class_counts().tolist() != info["counts"]:
        return {}  # the labels are not the subsampled classes (a coarse task's superclasses)
    weight = classifier_parameters(context.model, context.classifier)[0]
    row: dict[str, Any] = {}
    for split in splits:
        sums = _class_sums(context, split, len(info["counts"]), weight.shape[1])
        means, accuracy = sums.result(context.distributed)
        values = imbalance_metrics(weight.cpu().double().numpy(), means, info["counts"],
                                   info["minority"], accuracy)
        row.update({f"{split}_{key}": value for key, value in values.items()})
    return row


def _class_sums(context: EvalContext, split: str, num_classes: int, dim: int) -> ClassSums:
    """One pass over ``split``: the sums of the classifier's inputs (dim,) per class and
    the per-class correct counts."""
    model = context.model
    sums = ClassSums(num_classes, dim, model_device(model))
    with distributed.agreed(context.distributed):
        collect(model, context.loaders[split], lambda _: sums,
                [Probe(model, context.classifier, "input")], prepare=Arrangement(),
                on_batch=sums.count_correct, allow_empty=context.distributed)
    return sums


class CollapseEvaluator:
    """Every metric of definitions §1 on the train and the test split: ``train_nc1``, ...

    On a long-tailed training split (``TrainConfig.imbalance``) also those of §12:
    ``train_minority_collapse_weights``, ``test_minority_accuracy``, ...
    (:func:`imbalance_row`).

    Its :meth:`summarize` gives the train NC1 at the TPT onset and at the end, and their
    ratio (``nc1_at_onset``, ``nc1_final``, ``nc1_drop``).

    Parameters
    ----------
    splits : tuple of str
        Which splits to measure.
    """

    name = "collapse"

    def __init__(self, splits: tuple[str, ...] = ("train", "test")) -> None:
        self.splits = splits

    def __call__(self, context: EvalContext) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for split in self.splits:
            metrics = context.track(split)
            row.update({f"{split}_{name}": getattr(metrics, name) for name in METRIC_NAMES})
        row.update(imbalance_row(context, self.splits))
        return row

    def summarize(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The train NC1 at the TPT onset (always a logged epoch), at the last logged
        epoch, and how many times smaller it became; nothing before the onset or when
        the train split is not measured."""
        last = rows[-1]
        onset = next((row for row in rows if row["epoch"] == last["tpt_onset"]), None)
        if onset is None or "train_nc1" not in onset:
            return {}
        summary = {"nc1_at_onset": onset["train_nc1"], "nc1_final": last["train_nc1"]}
        if onset["train_nc1"] and last["train_nc1"]:
            summary["nc1_drop"] = onset["train_nc1"] / last["train_nc1"]
        return summary
