"""Training into the terminal phase with live collapse tracking.

``Trainer(TrainConfig(...), run_dir).fit()`` trains with Papyan et al.'s recipe and logs
the collapse metrics at log-spaced epochs. Extension points (see docs/training.md):
``TASKS`` (targets, loss, error, per-step hooks), ``EVALUATORS`` (what is measured at
the logged epochs). ``nclab.train.finegrained`` registers the task ``"coarse"`` and the
evaluator ``"recovery"`` (SPEC section 6).
"""

from nclab.train import finegrained  # noqa: F401  (registers "coarse", "recovery")
from nclab.train.batches import EvalBatches, TrainBatches, epoch_order
from nclab.train.config import TrainConfig, config_diff
from nclab.train.evaluators import EVALUATORS, CollapseEvaluator, EvalContext, Evaluator
from nclab.train.rundir import RunDir
from nclab.train.schedule import learning_rate, log_spaced_epochs
from nclab.train.task import TASKS, ClassificationTask, Task, make_task
from nclab.train.trainer import Trainer, TrainingDiverged, resolve_device, train

__all__ = [
    "EVALUATORS", "TASKS", "ClassificationTask", "CollapseEvaluator", "EvalBatches",
    "EvalContext", "Evaluator", "RunDir", "Task", "TrainBatches", "TrainConfig", "Trainer",
    "TrainingDiverged", "config_diff", "epoch_order", "learning_rate", "log_spaced_epochs",
    "make_task", "resolve_device", "train",
]
