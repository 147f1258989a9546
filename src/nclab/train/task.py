"""What is learned: the data, the model's outputs, the loss and the error.

The trainer knows nothing about classes or labels; it asks its :class:`Task`. A new
kind of training (regression targets, a normalized classifier, ...) is a new Task
registered in ``TASKS``, without changes to the trainer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nclab.capture import find_classifier
from nclab.core.errors import NCInputError
from nclab.data import DATASETS, DatasetSplits, load_dataset
from nclab.models import build_model, check_model
from nclab.train.config import TrainConfig

#: Keywords of ``load_dataset`` that the config sets itself (not via dataset_options).
_LOADER_FIELDS = {"root", "classes", "per_class", "per_class_test", "seed"}


class Task:
    """Base class of the training tasks. Subclasses override what differs.

    Parameters
    ----------
    config : TrainConfig
    """

    #: False for tasks without a classification error (regression): no TPT onset then.
    has_error_rate = True
    #: Evaluators run at the logged epochs when the config names none.
    default_evaluators: tuple[str, ...] = ("collapse",)

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def check(self) -> None:
        """Validate the names in the config before any data is loaded."""
        if self.config.dataset not in DATASETS:
            raise NCInputError(f"unknown dataset '{self.config.dataset}'; "
                               f"choose from: {', '.join(sorted(DATASETS))}")
        check_model(self.config.model, self.config.model_options)
        clashes = sorted(set(self.config.dataset_options) & _LOADER_FIELDS)
        if clashes:
            raise NCInputError(f"dataset_options may not set {', '.join(clashes)}: "
                               "it is a field of the config itself")

    def load_data(self) -> DatasetSplits:
        """The train and test splits: objects with ``.x`` and ``.y`` tensors."""
        c = self.config
        return load_dataset(c.dataset, c.root, classes=list(c.classes) if c.classes else None,
                            per_class=c.per_class, per_class_test=c.per_class_test,
                            seed=c.seed, **c.dataset_options)

    def num_outputs(self, data: DatasetSplits) -> int:
        return data.num_classes

    def build_model(self, data: DatasetSplits) -> nn.Module:
        """The network; its last ``nn.Linear`` is the classifier whose input is tracked."""
        return build_model(self.config.model, data.input_shape, self.num_outputs(data),
                           **self.config.model_options)

    def classifier(self, model: nn.Module) -> str:
        """Name of the layer whose input is the tracked feature (the last nn.Linear)."""
        return find_classifier(model)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss SUMMED over the batch (the trainer divides by the batch size)."""
        raise NotImplementedError

    def errors(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Number of wrong predictions in the batch (a 0-d tensor); only called when
        ``has_error_rate``."""
        raise NotImplementedError

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimizer step (e.g. to project weights back onto a set)."""


class ClassificationTask(Task):
    """Labels in 0..C-1; cross-entropy, or squared error to one-hot targets."""

    LOSSES = ("ce", "mse")

    def check(self) -> None:
        super().check()
        if self.config.loss not in self.LOSSES:
            raise NCInputError(f"unknown loss '{self.config.loss}'; "
                               f"choose from: {', '.join(self.LOSSES)}")

    def classifier(self, model: nn.Module) -> str:
        """Name of the layer whose input is the tracked feature (the last nn.Linear)."""
        return find_classifier(model)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.config.loss == "ce":
            return F.cross_entropy(outputs, targets, reduction="sum")
        one_hot = F.one_hot(targets, outputs.shape[1]).to(outputs.dtype)
        return 0.5 * (outputs - one_hot).square().sum()

    def errors(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs.argmax(dim=1) != targets).sum()


#: name -> Task class; ``TrainConfig.task`` picks one.
TASKS: dict[str, Callable[[TrainConfig], Task]] = {"classification": ClassificationTask}


def make_task(config: TrainConfig) -> Task:
    if config.task not in TASKS:
        raise NCInputError(f"unknown task '{config.task}'; choose from: {', '.join(TASKS)}")
    task = TASKS[config.task](config)
    task.check()
    return task
