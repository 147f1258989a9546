"""The one list of training tasks and evaluators, by the names a TrainConfig uses.

``TrainConfig.task`` names a task of ``TASKS``; ``TrainConfig.evaluators`` names
evaluators of ``EVALUATORS`` (None: the task's ``default_evaluators``). Adding a task
or an evaluator is its module plus one line here.

The three dict fields of a config hold options of the data set builder, of the model
builder and of the task: :func:`option_types` names each field's owner and the types it
annotates, so that the command line reads ``KEY=VALUE`` texts (``--data-opt``,
``--model-opt``, ``--opt``) as typed values (``nclab.cli.parsing.options_from_text``).
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from nclab.core.errors import NCInputError
from nclab.core.validation import builder_hints
from nclab.data import DATASETS, resolve_dataset
from nclab.models import MODELS, check_model, model_options
from nclab.train.config import TrainConfig
from nclab.train.evaluators import CollapseEvaluator, Evaluator
from nclab.train.finegrained import CoarseTask, make_recovery_evaluator
from nclab.train.layers import LayerEvaluator
from nclab.train.normalized import NormalizedTask
from nclab.train.regression import NRCEvaluator, RegressionTask
from nclab.train.task import ClassificationTask, Task

#: name -> Task class; ``TrainConfig.task`` picks one.
TASKS: dict[str, type[Task]] = {
    "classification": ClassificationTask,
    "normalized": NormalizedTask,
    "coarse": CoarseTask,
    "regression": RegressionTask,
}

#: name -> factory(config) of the evaluators selectable in ``TrainConfig.evaluators``.
EVALUATORS: dict[str, Callable[[TrainConfig], Evaluator]] = {
    "collapse": lambda config: CollapseEvaluator(),
    "nrc": lambda config: NRCEvaluator(),
    "recovery": make_recovery_evaluator,
    "layers": lambda config: LayerEvaluator(task_type(config.task).has_error_rate),
}


#: The dict fields of TrainConfig whose keys are options of a builder or of the task.
OPTION_FIELDS = ("dataset_options", "model_options", "options")


def task_type(name: str) -> type[Task]:
    """The Task class registered as ``name``, or one NCInputError line."""
    if name not in TASKS:
        raise NCInputError(f"unknown task '{name}'; choose from: {', '.join(TASKS)}")
    return TASKS[name]


def make_task(config: TrainConfig) -> Task:
    """The task ``config.task`` names, with its options parsed and its names checked."""
    task = task_type(config.task)(config)
    task.check()
    return task


def option_types(config: TrainConfig, field: str) -> tuple[str, dict[str, Any]]:
    """What takes the options of the dict field ``field`` of ``config``, in words (for
    messages), and option name -> its annotated type (``typing.Any`` where none)."""
    if field == "dataset_options":
        name = resolve_dataset(config.dataset, task_type(config.task).data_kind)
        entry = DATASETS[name]
        return f"dataset '{name}'", builder_hints(entry.builder, entry.options())
    if field == "model_options":
        check_model(config.model, {})
        return f"model '{config.model}'", builder_hints(MODELS[config.model],
                                                        model_options(config.model))
    if field != "options":
        raise NCInputError(f"{field} is not one of {', '.join(OPTION_FIELDS)}")
    options_type = task_type(config.task).options_type
    hints = typing.get_type_hints(options_type)
    return f"task '{config.task}'", {item.name: hints[item.name] for item in fields(options_type)}


def make_evaluators(config: TrainConfig, defaults: tuple[str, ...] = ("collapse",)
                    ) -> list[Evaluator]:
    """The evaluators named in ``config.evaluators`` (``defaults`` when it is None)."""
    names = defaults if config.evaluators is None else config.evaluators
    unknown = [name for name in names if name not in EVALUATORS]
    if unknown:
        raise NCInputError(f"unknown evaluator {', '.join(unknown)}; "
                           f"choose from: {', '.join(EVALUATORS)}")
    return [EVALUATORS[name](config) for name in names]
