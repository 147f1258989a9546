"""Callbacks: the one way to plug into the trainer's loop.

A :class:`Callback` has a no-op method for each moment of the loop; a subclass overrides
the ones it needs and is passed as ``Trainer(config, run_dir, callbacks=[...])``. The
trainer's own extensions are callbacks too: the evaluators of ``TrainConfig.evaluators``
(:class:`nclab.train.evaluators.EvaluatorCallback`), experiment loggers
(:class:`LoggerCallback`) and stop rules (:class:`StopWhen`).

One epoch of :meth:`nclab.train.Trainer.fit`, and where each hook is called::

    on_train_start(trainer)                 once, after a resumed run is restored
    should_stop(trainer, rows)              once, before the first epoch: a resumed
                                            run that is done trains no further
    for each epoch:
        one pass of SGD over the training set
        at a logged epoch: the row's loss and error columns, then
            on_epoch_end(trainer, epoch, row)   callbacks add their columns to row
            row["time_s"]; row written to metrics.jsonl (rank 0)
            on_row_logged(trainer, row)         the finished row
        should_stop(trainer, rows)          True from any callback stops the run
        checkpoint (callback states included) when due or stopping
    on_train_end(trainer, summary)          callbacks add keys to summary.json

Callbacks are called in the order of the trainer's list: the config's evaluators, then
``evaluators=``, then ``callbacks=``. Under ``torchrun`` every rank calls them: a
callback that writes files or talks to a service does so on ``trainer.rank == 0``, and
``should_stop`` must give the same answer on every rank.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from nclab.core.errors import NCInputError, first_line

if TYPE_CHECKING:
    from nclab.train.trainer import Trainer

class Callback:
    """Base class of the trainer's callbacks: every hook does nothing.

    What a hook may read on ``trainer``: ``config``, ``model`` (unwrapped from DDP),
    ``data``, ``task``, ``run`` (the run directory), ``rank`` and ``world``, ``device``,
    and ``state`` (``epoch``: epochs completed, ``rows``: every row logged so far,
    ``tpt_onset``). During :meth:`on_epoch_end`, ``trainer.eval_context`` is the
    :class:`nclab.train.EvalContext` of the epoch: ``eval_context.track(split)`` shares the
    trainer's pass over a split.

    A callback with state that must survive ``fit(resume=True)`` returns it from
    :meth:`state_dict` (JSON values: numbers, strings, lists, dicts) and takes it back in
    :meth:`load_state_dict`; the checkpoint stores it under :attr:`state_key`.

    Examples
    --------
    >>> class Seen(Callback):
    ...     def __init__(self):
    ...         self.epochs = []
    ...     def on_epoch_end(self, trainer, epoch, row):
    ...         self.epochs.append(epoch)
    ...         row["seen"] = len(self.epochs)
    ...     def state_dict(self):
    ...         return {"epochs": self.epochs}
    ...     def load_state_dict(self, state):
    ...         self.epochs = list(state["epochs"])
    >>> from nclab.train import TrainConfig, Trainer
    >>> config = TrainConfig(dataset="gaussian", per_class=40, epochs=6, log_points=6,
    ...                      dataset_options={"num_classes": 4, "dim": 8, "separation": 8.0},
    ...                      model="mlp", model_options={"widths": [32, 32]}, batch_size=32)
    >>> seen = Seen()
    >>> _ = Trainer(config, "runs/seen", progress=False, callbacks=[seen]).fit()
    >>> seen.epochs
    [1, 2, 3, 4, 5, 6]
    """

    @property
    def state_key(self) -> str:
        """The name of this callback's state in the checkpoint (default: the class
        name); two callbacks with state in one run need different keys."""
        return type(self).__qualname__

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first epoch of :meth:`Trainer.fit` (after a resume is restored)."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, Any]) -> None:
        """At a logged epoch: add columns to ``row``, the dict written to metrics.jsonl.

        ``row`` holds the trainer's columns (``epoch``, ``lr``, ``train_loss``, ...,
        ``tpt_onset``) and those of the callbacks before this one; NaN and infinite
        values are written as null. Epochs that are not logged have no row and no call.
        """

    def on_row_logged(self, trainer: Trainer, row: dict[str, Any]) -> None:
        """After ``row`` is complete (``time_s`` included) and written to metrics.jsonl;
        ``row`` must not be changed here."""

    def should_stop(self, trainer: Trainer, rows: list[dict[str, Any]]) -> bool:
        """Whether training should stop now; asked after every epoch, and once before
        the first, with every row logged so far (oldest first). The run stops after a
        checkpoint and its summary says ``stopped_early``."""
        return False

    def on_train_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        """When training completed (not when it diverged or was interrupted): add keys
        to ``summary``, which becomes summary.json."""

    def state_dict(self) -> dict[str, Any]:
        """This callback's state for the checkpoint (JSON values); ``{}``: none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` returned when the checkpoint was saved."""


class RowLogger(Protocol):
    """An experiment logger (``nclab.integrations.loggers.make_loggers``)."""

    def log(self, row: dict[str, Any], step: int) -> None: ...


class LoggerCallback(Callback):
    """Gives every logged row to ``logger.log(row, step=epoch)``, on rank 0.

    Parameters
    ----------
    logger : object with ``log(row, step)``
        Its creator closes it after :meth:`Trainer.fit`.

    Examples
    --------
    >>> from nclab.train import TrainConfig, Trainer
    >>> config = TrainConfig(dataset="gaussian", per_class=40, epochs=6, log_points=6,
    ...                      dataset_options={"num_classes": 4, "dim": 8, "separation": 8.0},
    ...                      model="mlp", model_options={"widths": [32, 32]}, batch_size=32)
    >>> from nclab.integrations.loggers import close_loggers, make_loggers
    >>> chosen = make_loggers(["csv"], "runs/logged")  # or tensorboard, wandb, mlflow
    >>> trainer = Trainer(config, "runs/logged", progress=False,
    ...                   callbacks=[LoggerCallback(logger) for logger in chosen])
    >>> _ = trainer.fit()
    >>> close_loggers(chosen)
    >>> open("runs/logged/scalars.csv").readline().strip()
    'step,name,value'
    """

    def __init__(self, logger: RowLogger) -> None:
        self.logger = logger

    def on_row_logged(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if trainer.rank == 0:
            self.logger.log(row, step=row["epoch"])


class StopWhen(Callback):
    """Stops training when ``rule(rows)`` holds for the rows logged so far.

    Parameters
    ----------
    rule : callable
        ``rule(rows) -> bool`` with the logged rows (a list of dicts, oldest first,
        never empty); it must give the same answer on every rank (the rows do), e.g.
        ``nclab.train.finegrained.TerminalPhase``.

    Examples
    --------
    >>> from nclab.train import TrainConfig, Trainer
    >>> config = TrainConfig(dataset="gaussian", per_class=40, epochs=6, log_points=6,
    ...                      dataset_options={"num_classes": 4, "dim": 8, "separation": 8.0},
    ...                      model="mlp", model_options={"widths": [32, 32]}, batch_size=32)
    >>> stop = StopWhen(lambda rows: rows[-1]["train_error"] == 0)
    >>> summary = Trainer(config, "runs/stopped", progress=False, callbacks=[stop]).fit()
    >>> summary["stopped_early"], summary["epochs_done"] < config.epochs
    (True, True)
    """

    def __init__(self, rule: Callable[[list[dict[str, Any]]], bool]) -> None:
        if not callable(rule):
            raise NCInputError(f"StopWhen needs a function of the logged rows; got {rule!r}")
        self.rule = rule

    def should_stop(self, trainer: Trainer, rows: list[dict[str, Any]]) -> bool:
        return bool(rows) and bool(self.rule(rows))


class CallbackList:
    """The callbacks of one run, in the order they are called.

    Raises NCInputError when an item is not a :class:`Callback`, or when two callbacks
    with state share a ``state_key``.
    """

    def __init__(self, callbacks: Iterable[Callback]) -> None:
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise NCInputError(f"callbacks must be nclab.train.Callback objects; got "
                                   f"{type(callback).__name__} (an evaluator goes in "
                                   "evaluators=, a stop rule in StopWhen(rule))")
        keys = [callback.state_key for callback in self.stateful]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise NCInputError(f"two callbacks with state share the state_key "
                               f"{', '.join(repeated)}: give each its own state_key")

    def __iter__(self) -> Iterator[Callback]:
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    @property
    def stateful(self) -> list[Callback]:
        """The callbacks that override :meth:`Callback.state_dict`."""
        return [callback for callback in self.callbacks
                if _overrides(callback, "state_dict")]

    @property
    def can_stop(self) -> bool:
        """Whether a callback has a stop rule (then the summary says ``stopped_early``)."""
        return any(_overrides(callback, "should_stop") for callback in self.callbacks)

    def call(self, hook: str, trainer: Trainer, *args: Any) -> None:
        """Call the hook named ``hook`` (one that returns nothing) of every callback, in order."""
        for callback in self.callbacks:
            getattr(callback, hook)(trainer, *args)

    def should_stop(self, trainer: Trainer, rows: list[dict[str, Any]]) -> bool:
        """Whether any callback asks to stop (every one is asked)."""
        answers = [bool(callback.should_stop(trainer, rows)) for callback in self.callbacks]
        return any(answers)

    def state_dict(self) -> dict[str, dict[str, Any]]:
        """state_key -> state of each callback with state; NCInputError naming the
        callback when a state is not a dict of JSON values."""
        return {callback.state_key: _checked_state(callback) for callback in self.stateful}

    def load_state_dict(self, states: dict[str, dict[str, Any]]) -> None:
        """Give each callback with state its saved state; one without a saved state
        (added since the checkpoint) keeps its own."""
        for callback in self.stateful:
            if callback.state_key in states:
                callback.load_state_dict(states[callback.state_key])


def _overrides(callback: Callback, method: str) -> bool:
    return getattr(type(callback), method) is not getattr(Callback, method)


def _checked_state(callback: Callback) -> dict[str, Any]:
    """``callback.state_dict()``, or one NCInputError line when JSON cannot hold it."""
    state = callback.state_dict()
    why = None if isinstance(state, dict) else f"got {type(state).__name__}"
    if why is None:
        try:
            json.dumps(state, allow_nan=True)
        except (TypeError, ValueError) as exc:
            why = first_line(exc)
    if why is not None:
        raise NCInputError(f"the state_dict() of callback {callback.state_key} must be a "
                           f"dict of JSON values (numbers, strings, lists, dicts); {why}")
    return state
