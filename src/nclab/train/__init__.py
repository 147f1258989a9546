"""Training into the terminal phase with live collapse tracking.

``Trainer(TrainConfig(...), run_dir).fit()`` trains with Papyan et al.'s recipe and logs
the collapse metrics at log-spaced epochs. Extension points (see docs/training.md):
``TASKS`` (targets, loss, error, per-step hooks), ``EVALUATORS`` (what is measured at
the logged epochs). ``task="normalized"`` trains with normalized features (SPEC
section 4; ``nclab.train.normalized``); ``task="regression"`` trains regression heads
with NRC metrics (SPEC section 5; ``regression_config``); ``task="coarse"`` trains on
coarse labels and the evaluator ``"recovery"`` recovers the fine ones (SPEC section 6;
``nclab.train.finegrained``).
"""

from nclab.runs import RunDir
from nclab.train import finegrained  # noqa: F401  (registers "coarse", "recovery")
from nclab.train.batches import EvalBatches, TrainBatches, epoch_order
from nclab.train.config import TrainConfig, config_diff
from nclab.train.evaluators import EVALUATORS, CollapseEvaluator, EvalContext, Evaluator
from nclab.train.normalized import NORMALIZED_TASK, NormalizedTask, normalized_config
from nclab.train.regression import NRCEvaluator, RegressionTask, regression_config
from nclab.train.schedule import learning_rate, log_spaced_epochs
from nclab.train.task import TASKS, ClassificationTask, Task, make_task
from nclab.train.trainer import Trainer, TrainingDiverged, resolve_device, train

__all__ = [
    "EVALUATORS", "NORMALIZED_TASK", "TASKS", "ClassificationTask", "CollapseEvaluator",
    "EvalBatches", "EvalContext", "Evaluator", "NRCEvaluator", "NormalizedTask",
    "RegressionTask", "RunDir", "Task", "TrainBatches", "TrainConfig", "Trainer",
    "TrainingDiverged", "config_diff", "epoch_order", "learning_rate", "log_spaced_epochs",
    "make_task", "normalized_config", "regression_config", "resolve_device", "train",
]
