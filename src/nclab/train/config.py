"""The configuration of a training run: everything that determines its results."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from nclab.core.errors import NCInputError


@dataclass(frozen=True)
class TrainConfig:
    """Every setting that changes what a run computes (Papyan et al.'s recipe by default).

    Runtime choices that do not change the results (device, progress bar, checkpoint
    frequency) are arguments of :class:`Trainer` instead, so that a run can be resumed
    on another machine.

    Attributes
    ----------
    dataset, root, classes, per_class, per_class_test, dataset_options
        Passed to the task's data loader (``nclab.data.load_dataset`` for
        classification): name, folder for file-based sets, class subset, per-class
        sample limits, builder options such as ``{"num_samples": 5000}``.
    model, model_options
        ``nclab.models.build_model(model, input_shape, outputs, **model_options)``.
    task
        A name of ``nclab.train.TASKS``: what the targets are, the loss, the error.
    loss
        ``"ce"`` (cross-entropy) or ``"mse"`` (squared error to one-hot targets).
    epochs, batch_size, lr, momentum, weight_decay
        SGD with momentum; the loss is averaged over each batch.
    lr_milestones, lr_gamma
        The learning rate is multiplied by ``lr_gamma`` after each fraction of
        ``epochs`` listed (default: /10 at 1/3 and 2/3).
    seed
        Seeds the initialization and every epoch's sample order.
    log_points
        Number of epochs, spaced logarithmically, at which the evaluators run.
    eval_batch_size
        Batch size of the evaluation passes.
    evaluators
        Names in ``nclab.train.EVALUATORS`` run at every logged epoch; None: the task's
        defaults (``"collapse"``, every SPEC metric, for classification).
    options
        Settings of extensions (tasks, evaluators, model transforms) that have no field
        of their own, such as ``{"tau": 10.0}``; saved and compared like the rest.
    """

    dataset: str = "mnist1d"
    root: str | None = None
    classes: tuple[int, ...] | None = None
    per_class: int | None = None
    per_class_test: int | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    model: str = "mlp"
    model_options: dict[str, Any] = field(default_factory=dict)
    task: str = "classification"
    loss: str = "ce"
    epochs: int = 350
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_milestones: tuple[float, ...] = (1 / 3, 2 / 3)
    lr_gamma: float = 0.1
    seed: int = 0
    log_points: int = 50
    eval_batch_size: int = 1024
    evaluators: tuple[str, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1; got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1; got {self.batch_size}"),
            (self.eval_batch_size >= 1,
             f"eval_batch_size must be >= 1; got {self.eval_batch_size}"),
            (self.lr > 0, f"lr must be > 0; got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must lie in [0, 1); got {self.momentum}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0; got {self.weight_decay}"),
            (all(0 < m < 1 for m in self.lr_milestones),
             f"lr_milestones are fractions of the run in (0, 1); got {list(self.lr_milestones)}"),
            (self.lr_gamma > 0, f"lr_gamma must be > 0; got {self.lr_gamma}"),
            (self.log_points >= 1, f"log_points must be >= 1; got {self.log_points}"),
        ]
        for ok, message in checks:
            if not ok:
                raise NCInputError(message)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise NCInputError(f"unknown config keys: {', '.join(unknown)}")
        values = {key: tuple(value) if isinstance(value, list) else value
                  for key, value in data.items()}
        return cls(**values)

    def updated(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated like a new config)."""
        return replace(self, **changes)


def config_diff(stored: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Human-readable differences ``key: stored -> given`` between two config dicts."""
    keys = sorted(set(stored) | set(given))
    return [f"{key}: {json.dumps(stored.get(key))} -> {json.dumps(given.get(key))}"
            for key in keys if stored.get(key) != given.get(key)]
