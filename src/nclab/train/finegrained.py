"""Training on coarse labels and recovering the fine ones (definitions §6) in the trainer.

- ``CoarseTask`` (``TrainConfig.task = "coarse"``): loads the data set named by the
  config, merges its classes into superclasses with a :class:`CoarseLabeling` and trains
  on the superclass labels; the fine labels stay in ``data.fine``.
- ``RecoveryEvaluator`` (``"recovery"`` in ``TrainConfig.evaluators``): at every logged
  epoch, the classifier input of the whole train and test sets, the predicted
  superclass of each test sample, and :func:`recover_fine_labels`.

The settings in ``TrainConfig.options`` are the fields of :class:`CoarseOptions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from nclab import capture
from nclab.capture import CapturedFeatures
from nclab.core.errors import NCInputError
from nclab.data import DatasetSplits
from nclab.finegrained import (
    PAIRINGS,
    CoarseLabeling,
    CoarseSplits,
    FineRecovery,
    coarsen_splits,
    recover_fine_labels,
)
from nclab.train.batches import EvalBatches
from nclab.train.config import TrainConfig
from nclab.train.evaluators import EvalContext
from nclab.train.task import ClassificationTask, TaskOptions

__all__ = [
    "DEFAULT_NUM_COARSE",
    "RECOVERY_COLUMNS",
    "TERMINAL_DROP",
    "TERMINAL_NC1",
    "CoarseOptions",
    "CoarseTask",
    "ModelRecovery",
    "RecoveryEvaluator",
    "TerminalPhase",
    "coarse_data",
    "fine_to_coarse",
    "make_recovery_evaluator",
    "recover_from_model",
    "recovery_row",
]

#: The values each logged row gets from the recovery evaluator.
RECOVERY_COLUMNS = ("recovery_train_accuracy", "recovery_test_accuracy", "coarse_nc1",
                    "fine_nc1")
#: Superclasses of the ``mod`` and ``random`` pairings when ``num_coarse`` is not given
#: (also the default of ``nclab finegrained``).
DEFAULT_NUM_COARSE = 5


@dataclass(frozen=True)
class CoarseOptions(TaskOptions):
    """Options of the coarse task and of its recovery evaluator.

    Attributes
    ----------
    coarse_pairing : str
        ``"mod"`` (fine class y -> y mod K'), ``"random"`` or ``"explicit"``.
    num_coarse : int, optional
        K', the number of superclasses; None: ``DEFAULT_NUM_COARSE`` for ``mod`` and
        ``random``, read from the map for ``explicit``.
    coarse_map : str, list or dict, optional
        The explicit map (exactly with ``coarse_pairing="explicit"``): text
        ``"0:0,1:0,2:1"`` or ``"0,0,1"``, a list (entry y is the superclass of y), or a
        dict ``{fine: superclass}`` (string keys, as JSON stores them, are read as ints).
    coarse_seed : int
        Seed of the ``random`` pairing, separate from the training seed so that runs
        with different seeds share one pairing.
    recovery_n_init : int
        k-means restarts per superclass.
    recovery_threads : int, optional
        Thread cap of k-means (1: on busy cores more threads spin-wait, see
        ``SuperclassClustering``); None: no cap.
    """

    coarse_pairing: str = "mod"
    num_coarse: int | None = None
    coarse_map: str | list[int] | dict[str, int] | None = None
    coarse_seed: int = 0
    recovery_n_init: int = 10
    recovery_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.coarse_pairing not in PAIRINGS:
            raise NCInputError(f"unknown pairing '{self.coarse_pairing}'; choose from: "
                               f"{', '.join(PAIRINGS)}")
        if (self.coarse_pairing == "explicit") != (self.coarse_map is not None):
            raise NCInputError("give a coarse map (option coarse_map) exactly when the "
                               "pairing is 'explicit'")
        for key, low in (("num_coarse", 1), ("coarse_seed", 0), ("recovery_n_init", 1),
                         ("recovery_threads", 1)):
            value = getattr(self, key)
            if value is not None and value < low:
                raise NCInputError(f"option {key} must be an integer >= {low}; got {value!r}")
        fine_to_coarse(self.coarse_map)

    def labeling(self, num_fine: int) -> CoarseLabeling:
        """The :class:`CoarseLabeling` these options describe, for ``num_fine`` classes."""
        num_coarse = self.num_coarse
        if num_coarse is None and self.coarse_pairing != "explicit":
            num_coarse = DEFAULT_NUM_COARSE
        return CoarseLabeling.create(self.coarse_pairing, num_fine, num_coarse,
                                     seed=self.coarse_seed,
                                     mapping=fine_to_coarse(self.coarse_map))


def fine_to_coarse(value: Any) -> str | list[int] | dict[int, int] | None:
    """The ``coarse_map`` option as ``CoarseLabeling.create`` takes it.

    A dict read back from a JSON config has string keys: they are turned into ints.
    """
    if not isinstance(value, dict):
        return value
    try:
        return {int(fine): superclass for fine, superclass in value.items()}
    except ValueError:
        raise NCInputError(f"the coarse map's fine classes must be integers; got "
                           f"{list(value)}") from None


class CoarseTask(ClassificationTask):
    """Classification on superclass labels; ``load_data`` returns :class:`CoarseSplits`.

    Parameters
    ----------
    config : TrainConfig
        The data set is loaded as for classification (classes, per_class... apply to the
        fine classes), then coarsened with the labeling of ``config.options``
        (:class:`CoarseOptions`).
    """

    name = "coarse"
    options_type = CoarseOptions
    #: The recovery evaluator costs k-means per logged epoch: asked for by name.
    default_evaluators = ("collapse",)

    def load_data(self) -> CoarseSplits:
        fine = super().load_data()
        return coarsen_splits(fine, self.options.labeling(fine.num_classes))


@dataclass(frozen=True)
class ModelRecovery:
    """Fine-label recovery from one model, with the features it used.

    Attributes
    ----------
    result : FineRecovery
    train, test : CapturedFeatures
        Classifier inputs, COARSE labels and outputs of the train / test samples, in
        the data set's order (the fine labels are ``data.fine.train.y`` etc.).
    """

    result: FineRecovery
    train: CapturedFeatures
    test: CapturedFeatures


def recover_from_model(
    model: nn.Module, data: CoarseSplits, classifier: str | None = None, *,
    batch_size: int = 1024, n_init: int = 10, seed: int = 0, threads: int | None = 1,
) -> ModelRecovery:
    """Recover the fine labels from the classifier input of a model trained on ``data``.

    The test samples are assigned within the superclass the model predicts (the argmax
    of its outputs), as in definitions §6.

    Parameters
    ----------
    model : nn.Module
        Trained on the coarse labels of ``data``; it stays on its device.
    data : CoarseSplits
    classifier : str, optional
        The classifier layer (default: the model's last ``nn.Linear``).
    batch_size, n_init, seed, threads
        Batch size of the forward passes; k-means restarts, seed and thread cap.
    """
    train, test = (capture.features(model, EvalBatches(split.x, split.y, batch_size),
                                    classifier) for split in (data.train, data.test))
    if test.outputs is None:
        raise NCInputError("the model must return one tensor of superclass scores")
    if test.outputs.ndim != 2 or test.outputs.shape[1] != data.labeling.num_coarse:
        raise NCInputError(f"the model has outputs of shape {tuple(test.outputs.shape[1:])}; "
                           f"expected one score per superclass ({data.labeling.num_coarse})")
    result = recover_fine_labels(
        train.features, data.fine.train.y, data.train.y, test.features,
        test.outputs.argmax(dim=1), data.fine.test.y, labeling=data.labeling,
        n_init=n_init, seed=seed, threads=threads)
    return ModelRecovery(result, train, test)


def recovery_row(result: FineRecovery) -> dict[str, float | None]:
    """The ``RECOVERY_COLUMNS`` of a logged row."""
    return {"recovery_train_accuracy": result.train_accuracy,
            "recovery_test_accuracy": result.test_accuracy,
            "coarse_nc1": result.coarse_nc1, "fine_nc1": result.fine_nc1}


def coarse_data(data: DatasetSplits | None) -> CoarseSplits:
    """``data`` if it carries fine labels (a coarse task's data), else a clear error."""
    if not isinstance(data, CoarseSplits):
        raise NCInputError("the recovery evaluator needs fine labels: train with the coarse "
                           "task (task='coarse')")
    return data


class RecoveryEvaluator:
    """Fine-label recovery at each logged epoch: the ``RECOVERY_COLUMNS``.

    Every rank computes it on the whole data set (k-means does not split over ranks),
    so the values agree across ranks without communication.

    Parameters
    ----------
    n_init : int
        k-means restarts per superclass.
    threads : int, optional
        Thread cap of k-means.
    """

    name = "recovery"

    def __init__(self, n_init: int = 10, threads: int | None = 1) -> None:
        self.n_init, self.threads = n_init, threads

    def __call__(self, context: EvalContext) -> dict[str, float | None]:
        data = coarse_data(context.data)
        recovery = recover_from_model(context.model, data, context.classifier,
                                      batch_size=context.config.eval_batch_size,
                                      n_init=self.n_init, seed=context.config.seed,
                                      threads=self.threads)
        return recovery_row(recovery.result)


def make_recovery_evaluator(config: TrainConfig) -> RecoveryEvaluator:
    """The recovery evaluator with the k-means settings of a coarse config's options
    (the defaults of :class:`CoarseOptions` for other tasks)."""
    options = (CoarseOptions.parse(config.options, CoarseTask.name)
               if config.task == CoarseTask.name else CoarseOptions())
    return RecoveryEvaluator(n_init=options.recovery_n_init, threads=options.recovery_threads)


# --------------------------------------------------------------------------- terminal phase

#: The terminal phase of the coarse model as the fine-grained results require it: zero
#: training error on the superclasses, coarse train nc1 at most this ...
TERMINAL_NC1 = 0.05
#: ... and at least this many times below its value at the TPT onset.
TERMINAL_DROP = 10.0


@dataclass(frozen=True)
class TerminalPhase:
    """Whether a run's logged rows are in the terminal phase; a rule for ``StopWhen``.

    The last logged row is in it when its training error is zero, its ``key`` (the
    coarse train nc1 of the recovery evaluator) is at most ``threshold`` and at most
    ``1 / drop`` of its value at the TPT onset (the first epoch with zero training
    error, always logged by the trainer).

    Parameters
    ----------
    threshold : float
        Largest nc1 accepted (> 0).
    drop : float
        Smallest ratio nc1(onset) / nc1(now) accepted (>= 1; 1: no condition).
    key : str
        The logged column holding the nc1.

    Examples
    --------
    >>> terminal = TerminalPhase(0.05)
    >>> rows = [{"epoch": 1, "train_error": 0.1, "coarse_nc1": 0.9, "tpt_onset": None},
    ...         {"epoch": 2, "train_error": 0.0, "coarse_nc1": 0.5, "tpt_onset": 2},
    ...         {"epoch": 9, "train_error": 0.0, "coarse_nc1": 0.04, "tpt_onset": 2}]
    >>> terminal(rows[:2]), terminal(rows)
    (False, True)

    In a run: ``Trainer(config, out, callbacks=[StopWhen(TerminalPhase(0.05))])``.
    """

    threshold: float = TERMINAL_NC1
    drop: float = TERMINAL_DROP
    key: str = "coarse_nc1"

    def __post_init__(self) -> None:
        if not (self.threshold > 0 and self.threshold < float("inf")):
            raise NCInputError(f"the nc1 threshold must be a finite number > 0; got "
                               f"{self.threshold!r}")
        if not (self.drop >= 1 and self.drop < float("inf")):
            raise NCInputError(f"the nc1 drop factor must be a finite number >= 1; got "
                               f"{self.drop!r}")

    def __call__(self, rows: list[dict[str, Any]]) -> bool:
        return bool(rows) and self.holds(rows[-1], _onset_value(rows, self.key))

    def holds(self, row: dict[str, Any], at_onset: float | None) -> bool:
        """Whether one row is in the terminal phase, given the nc1 at the TPT onset."""
        value = row.get(self.key)
        return (row.get("train_error") == 0 and value is not None and at_onset is not None
                and value <= self.threshold and value * self.drop <= at_onset)

    def report(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """JSON-ready account of ``rows``: the TPT onset, the nc1 there and at the end,
        the drop, the first logged epoch in the terminal phase, and whether the last
        row (the final model) is in it (``reached``)."""
        at_onset = _onset_value(rows, self.key)
        last = rows[-1] if rows else {}
        final = last.get(self.key)
        inside = [row["epoch"] for row in rows if self.holds(row, at_onset)]
        return {
            "nc1_threshold": self.threshold, "drop_required": self.drop,
            "tpt_onset": last.get("tpt_onset"), "nc1_at_onset": at_onset,
            "final_epoch": last.get("epoch"), "nc1_final": final,
            "train_error_final": last.get("train_error"),
            "nc1_drop": at_onset / final if at_onset is not None and final else None,
            "first_epoch": inside[0] if inside else None,
            "reached": bool(rows) and self(rows),
        }


def _onset_value(rows: list[dict[str, Any]], key: str) -> float | None:
    """``key`` in the row of the TPT onset (None before the onset or when not logged)."""
    onset = rows[-1].get("tpt_onset") if rows else None
    return next((row.get(key) for row in rows if row["epoch"] == onset), None)
