"""Training into the terminal phase with live collapse tracking.

``Trainer(TrainConfig(...), run_dir).fit()`` trains with Papyan et al.'s recipe and logs
the collapse metrics at log-spaced epochs. Extension points (see docs/training.md):
``TASKS`` (targets, loss, error, per-step hooks, typed options, default evaluators) and
``EVALUATORS`` (what is measured at the logged epochs), both listed in
:mod:`nclab.train.tasks`, and ``Trainer(callbacks=[...])``: :class:`Callback` objects
called at the moments of the loop (:mod:`nclab.train.callbacks`; evaluators, loggers and
stop rules are callbacks). ``task="normalized"`` trains with normalized features (definitions §4;
``nclab.train.normalized``); ``task="regression"`` trains regression heads with NRC
metrics (definitions §5; ``regression_config``); ``task="coarse"`` trains on coarse
labels and the evaluator ``"recovery"`` recovers the fine ones (definitions §6;
``nclab.train.finegrained``). The evaluator ``"layers"`` logs the nc1 of every stage of
the network (``nclab.train.layers``; the law of data separation, definitions §16).
"""

from nclab.runs import RunDir
from nclab.train.batches import EvalBatches, TrainBatches, epoch_order
from nclab.train.callbacks import Callback, CallbackList, LoggerCallback, StopWhen
from nclab.train.config import TrainConfig, config_diff
from nclab.train.evaluators import CollapseEvaluator, EvalContext, Evaluator, EvaluatorCallback
from nclab.train.finegrained import CoarseOptions, CoarseTask
from nclab.train.layers import LayerEvaluator, default_layers
from nclab.train.normalized import (
    NORMALIZED_TASK,
    NormalizedOptions,
    NormalizedTask,
    normalized_config,
)
from nclab.train.regression import (
    NRCEvaluator,
    RegressionOptions,
    RegressionTask,
    regression_config,
)
from nclab.train.schedule import learning_rate, log_spaced_epochs
from nclab.train.task import ClassificationTask, NoOptions, Task, TaskOptions
from nclab.train.tasks import EVALUATORS, TASKS, make_evaluators, make_task
from nclab.train.trainer import Trainer, TrainingDiverged, resolve_device, train

__all__ = [
    "EVALUATORS", "NORMALIZED_TASK", "TASKS", "Callback", "CallbackList",
    "ClassificationTask", "CoarseOptions", "CoarseTask", "CollapseEvaluator", "EvalBatches",
    "EvalContext", "Evaluator", "EvaluatorCallback", "LayerEvaluator", "LoggerCallback",
    "NRCEvaluator", "NoOptions", "NormalizedOptions", "NormalizedTask", "RegressionOptions",
    "RegressionTask", "RunDir", "StopWhen", "Task", "TaskOptions", "TrainBatches",
    "TrainConfig", "Trainer", "TrainingDiverged", "config_diff", "epoch_order", "learning_rate",
    "default_layers", "log_spaced_epochs", "make_evaluators", "make_task", "normalized_config",
    "regression_config", "resolve_device", "train",
]
