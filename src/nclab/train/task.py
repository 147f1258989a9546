"""What is learned: the data, the model's outputs, the loss and the error.

The trainer knows nothing about classes or labels; it asks its :class:`Task`. A new
kind of training (regression targets, a normalized classifier, ...) is a new Task
listed in ``nclab.train.tasks.TASKS``, without changes to the trainer. Each task
declares its default evaluators and the dataclass of its options: ``task.options`` is
``TrainConfig.options`` typed, with explicit defaults, unknown keys and wrong types
refused in one line.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from nclab.capture import find_classifier
from nclab.core.errors import NCInputError
from nclab.core.validation import describe_type, matches_type
from nclab.data import CLASSIFICATION, DatasetSplits, load_dataset, resolve_dataset
from nclab.data.registry import current_name
from nclab.models import build_model, check_model
from nclab.train.config import TrainConfig
from nclab.train.losses import ClassificationLoss

#: Keywords of ``load_dataset`` that the config sets itself (not via dataset_options).
_LOADER_FIELDS = {"root", "classes", "per_class", "per_class_test", "seed", "kind",
                  "imbalance"}

Options = TypeVar("Options", bound="TaskOptions")


@dataclass(frozen=True)
class TaskOptions:
    """Base of the options dataclasses: the typed form of ``TrainConfig.options``.

    A subclass lists its options as dataclass fields with type hints and defaults;
    range and cross-field checks go in ``__post_init__`` (raising NCInputError).
    """

    @classmethod
    def parse(cls: type[Options], values: Mapping[str, Any], task: str) -> Options:
        """The options of ``values`` (a JSON-ready dict), checked against the fields.

        Unknown keys and values of the wrong type raise one NCInputError line naming
        ``task``; ints are accepted for float fields (JSON writes 5.0 as 5).
        """
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise NCInputError(f"{task} has no option {', '.join(unknown)}; it accepts: "
                               f"{', '.join(names) or 'none'}")
        hints = typing.get_type_hints(cls)
        typed = {}
        for key, value in values.items():
            if not matches_type(value, hints[key]):
                raise NCInputError(f"{task} option {key} must be {describe_type(hints[key])}; "
                                   f"got {value!r}")
            typed[key] = float(value) if hints[key] is float else value
        return cls(**typed)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class NoOptions(TaskOptions):
    """A task without options: ``TrainConfig.options`` must be empty."""


class Task:
    """Base class of the training tasks. Subclasses override what differs.

    Parameters
    ----------
    config : TrainConfig
        ``config.options`` is parsed into ``self.options`` (an ``options_type``).
    """

    #: The task's name in ``TASKS`` (for messages).
    name: ClassVar[str] = "task"
    #: The dataclass of ``TrainConfig.options`` for this task.
    options_type: ClassVar[type[TaskOptions]] = NoOptions
    #: Evaluators run at the logged epochs when the config names none.
    default_evaluators: ClassVar[tuple[str, ...]] = ()
    #: What the data's ``y`` are: class labels or real targets (``nclab.data`` kinds).
    data_kind: ClassVar[str] = CLASSIFICATION
    #: False for tasks without a classification error (regression): no TPT onset then.
    has_error_rate: ClassVar[bool] = True

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.options = self.options_type.parse(config.options, self.name)

    @property
    def evaluator_names(self) -> tuple[str, ...]:
        """The evaluators the run uses: the config's, else the task's defaults."""
        given = self.config.evaluators
        return self.default_evaluators if given is None else tuple(given)

    @property
    def dataset(self) -> str:
        """The registered name of the config's data set (a renamed name translated)."""
        return resolve_dataset(self.config.dataset, self.data_kind)

    def current_values(self, stored: dict[str, Any]) -> dict[str, Any]:
        """A config dict read back from a run folder, with the names renamed since it was
        written translated (each with a FutureWarning): on ``--resume`` a run saved under
        an old name compares equal to the same run under the new one."""
        if isinstance(stored.get("dataset"), str):
            return {**stored, "dataset": current_name(stored["dataset"], self.data_kind)}
        return stored

    def check(self) -> None:
        """Validate the names in the config before any data is loaded."""
        resolve_dataset(self.config.dataset, self.data_kind)  # an unknown name: one line
        check_model(self.config.model, self.config.model_options)
        clashes = sorted(set(self.config.dataset_options) & _LOADER_FIELDS)
        if clashes:
            raise NCInputError(f"dataset_options may not set {', '.join(clashes)}: "
                               "it is a field of the config itself")

    def load_data(self) -> DatasetSplits:
        """The train and test splits: objects with ``.x`` and ``.y`` tensors."""
        c = self.config
        return load_dataset(self.dataset, c.root, classes=list(c.classes) if c.classes else None,
                            per_class=c.per_class, per_class_test=c.per_class_test,
                            seed=c.seed, kind=self.data_kind, imbalance=c.imbalance,
                            **c.dataset_options)

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
    """Labels in 0..C-1; cross-entropy, squared error to one-hot targets, label smoothing
    (``ls:EPS``) or focal loss (``focal:GAMMA``): :mod:`nclab.train.losses`. No options."""

    name = "classification"
    default_evaluators = ("collapse",)
    LOSSES: ClassVar[tuple[str, ...]] = ("ce", "mse", "ls:EPS", "focal:GAMMA")

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        self._loss: ClassificationLoss | None = None

    def check(self) -> None:
        super().check()
        self._loss = ClassificationLoss.parse(self.config.loss)
        if "nrc" in self.evaluator_names:
            raise NCInputError("the 'nrc' evaluator needs real targets; classification runs "
                               "use the 'collapse' evaluator")

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self._loss is None:
            self._loss = ClassificationLoss.parse(self.config.loss)
        return self._loss(outputs, targets)

    def errors(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs.argmax(dim=1) != targets).sum()
