"""The one list of training tasks and evaluators, by the names a TrainConfig uses.

``TrainConfig.task`` names a task of ``TASKS``; ``TrainConfig.evaluators`` names
evaluators of ``EVALUATORS`` (None: the task's ``default_evaluators``). Adding a task
or an evaluator is its module plus one line here.
"""

from __future__ import annotations

from collections.abc import Callable

from nclab.core.errors import NCInputError
from nclab.train.config import TrainConfig
from nclab.train.evaluators import CollapseEvaluator, Evaluator
from nclab.train.finegrained import CoarseTask, make_recovery_evaluator
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
}


def make_task(config: TrainConfig) -> Task:
    """The task ``config.task`` names, with its options parsed and its names checked."""
    if config.task not in TASKS:
        raise NCInputError(f"unknown task '{config.task}'; choose from: {', '.join(TASKS)}")
    task = TASKS[config.task](config)
    task.check()
    return task


def make_evaluators(config: TrainConfig, defaults: tuple[str, ...] = ("collapse",)
                    ) -> list[Evaluator]:
    """The evaluators named in ``config.evaluators`` (``defaults`` when it is None)."""
    names = defaults if config.evaluators is None else config.evaluators
    unknown = [name for name in names if name not in EVALUATORS]
    if unknown:
        raise NCInputError(f"unknown evaluator {', '.join(unknown)}; "
                           f"choose from: {', '.join(EVALUATORS)}")
    return [EVALUATORS[name](config) for name in names]
