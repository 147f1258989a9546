"""The training loop: SGD into the terminal phase, callbacks at log-spaced epochs.

One code path for one process and for ``torchrun --nproc_per_node=K`` (DDP): each rank
trains on its share of every global batch and evaluates its shard of each split; the
statistics are all-reduced, and rank 0 writes the files.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from types import FrameType
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn
from rich.table import Column
from rich.text import Text
from torch import nn

from nclab.capture import collect
from nclab.core import distributed
from nclab.core.distributed import resolve_device
from nclab.core.errors import Interrupted, NCInputError
from nclab.core.io import finite_or_none
from nclab.runs import CHECKPOINT, RunDir
from nclab.train.batches import EvalBatches, TrainBatches
from nclab.train.callbacks import Callback, CallbackList, LoggerCallback, RowLogger, StopWhen
from nclab.train.checkpoint import RunProgress, checkpoint_state, restore
from nclab.train.config import TrainConfig, config_diff
from nclab.train.evaluators import EvalContext, Evaluator, EvaluatorCallback, misclassifies
from nclab.train.schedule import learning_rate, log_spaced_epochs
from nclab.train.task import Task
from nclab.train.tasks import make_evaluators, make_task
from nclab.train.threads import DEFAULT_THREADS, check_threads, limited_threads

#: Without ``checkpoint_every``, a checkpoint is written when this long has passed since
#: the last one: writing and flushing one after every short epoch can cost more than the
#: epoch itself, and a resumed run is the same at any checkpoint.
CHECKPOINT_SECONDS = 30.0
#: Signals that stop a run after saving a checkpoint (a second one stops it at once).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingDiverged(NCInputError):
    """The loss, the weights or the network's outputs became NaN or infinite; the last
    good checkpoint is kept."""


class TrainingInterrupted(Interrupted):
    """SIGINT (Ctrl-C) or SIGTERM stopped the run after a checkpoint was saved; the
    message gives the command that resumes it, ``exit_code`` is 130 or 143."""


class Trainer:
    """Train one network and log its collapse.

    Parameters
    ----------
    config : TrainConfig
    run_dir : path
        Where config, checkpoint, metrics and summary go.
    device : str or torch.device
        ``"auto"`` picks CUDA when available.
    progress : bool or rich Console
        Show a progress bar (on rank 0), on the given console if one is passed.
    threads : int or None
        CPU threads of torch and numpy's BLAS while :meth:`fit` runs (restored after):
        by default ``DEFAULT_THREADS`` (1), as ``nclab train --threads``, so a run from
        Python takes the time and gives the digits of the same run from the command
        line. ``None`` keeps the current setting (torch's default: one per core).
    checkpoint_every : int, optional
        Save a checkpoint every this many epochs; by default whenever
        ``CHECKPOINT_SECONDS`` have passed since the last one. Always after the last
        epoch, when a callback stops the run, and when SIGINT or SIGTERM does.
    callbacks : sequence of Callback, optional
        Called at the moments of the loop (``nclab.train.callbacks``): columns of the
        logged rows, experiment loggers (``LoggerCallback``), stop rules
        (``StopWhen``), anything of your own. Their states go into the checkpoint.
    evaluators : sequence of Evaluator, optional
        Run at every logged epoch after those named in ``config.evaluators`` (each
        through an ``EvaluatorCallback``, before ``callbacks``).
    task : Task, optional
        Overrides the task named by ``config.task``.
    loggers : sequence of objects with ``log(row, step)``, optional
        Deprecated: ``callbacks=[LoggerCallback(logger), ...]``.
    stop_when : callable, optional
        Deprecated: ``callbacks=[StopWhen(stop_when)]``.

    Attributes
    ----------
    callbacks : CallbackList
        Every callback of the run in calling order: the evaluators of
        ``config.evaluators``, of ``evaluators``, then ``callbacks``.
    state : RunProgress
        Epochs done, logged rows, TPT onset (what the checkpoint restores).
    eval_context : EvalContext
        The logged epoch's, while the callbacks' ``on_epoch_end`` runs.

    Notes
    -----
    :meth:`fit` checks everything (task, data, model, device, run directory, checkpoint)
    before it writes the first byte, so a start that fails leaves the run directory as
    it was. While it runs it holds an exclusive lock on the run directory.

    Examples
    --------
    >>> cfg = TrainConfig(dataset="gaussian", per_class=40, epochs=6, batch_size=32,
    ...                   dataset_options={"num_classes": 4, "dim": 8, "separation": 8.0},
    ...                   model="mlp", model_options={"widths": [32, 32]})
    >>> summary = Trainer(cfg, "runs/mlp", progress=False).fit()   # one CPU thread
    >>> summary["epochs_done"], summary["final"]["train_error"], summary["tpt_onset"]
    (6, 0.0, 2)
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | os.PathLike,
        *,
        device: str | torch.device = "auto",
        progress: bool | Console = True,
        threads: int | None = DEFAULT_THREADS,
        checkpoint_every: int | None = None,
        callbacks: Sequence[Callback] = (),
        evaluators: Sequence[Evaluator] = (),
        task: Task | None = None,
        loggers: Sequence[RowLogger] = (),
        stop_when: Callable[[list[dict[str, Any]]], bool] | None = None,
    ) -> None:
        if checkpoint_every is not None and checkpoint_every < 1:
            raise NCInputError(f"checkpoint_every must be >= 1; got {checkpoint_every}")
        self.config = config
        self.run = RunDir(run_dir)
        self.device = resolve_device(device)
        self.progress = progress
        self.threads = check_threads(threads)
        self.checkpoint_every = checkpoint_every
        self.task = task if task is not None else make_task(config)
        named = make_evaluators(config, self.task.default_evaluators)
        self.callbacks = CallbackList([
            *(EvaluatorCallback(evaluator) for evaluator in [*named, *evaluators]),
            *callbacks, *_deprecated_callbacks(loggers, stop_when)])
        self.rank, self.world = 0, 1
        self.state = RunProgress()
        self.eval_context: EvalContext | None = None

    # ------------------------------------------------------------------ public
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to ``config.epochs`` (continuing from the checkpoint with ``resume``).

        Returns
        -------
        dict
            The summary also written to summary.json.

        Raises
        ------
        NCInputError
            Bad settings, data, callbacks or run directory (nothing written then).
        TrainingDiverged
            The loss, weights or outputs became NaN or infinite.
        TrainingInterrupted
            SIGINT or SIGTERM: a checkpoint was saved first.
        """
        created_group = self._setup_distributed()
        try:
            with ExitStack() as held:
                held.enter_context(limited_threads(self.threads))
                # a check that fails on one rank stops every rank before anything is written
                with self._agreed():
                    self._build()
                    held.enter_context(self._lock())
                    checkpoint = self._read_run_dir(resume)
                    self._restore(checkpoint)
                self._start_run_dir()
                with _StopSignals() as stop:
                    return self._fit(stop)
        finally:
            if created_group:
                dist.destroy_process_group()

    # ------------------------------------------------------------------ set-up
    def _setup_distributed(self) -> bool:
        created = False
        if not distributed.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            created = True
        if distributed.is_initialized():
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
        return created

    def _build(self) -> None:
        """Data, model and optimizer: everything that can fail on bad settings, before
        the run directory is touched."""
        cfg = self.config
        self.data = self.task.load_data()
        for split in ("train", "test"):
            if len(getattr(self.data, split)) == 0:
                raise NCInputError(f"the {split} split of {cfg.dataset} holds no samples "
                                   "(check --classes, --per-class and the data files)")
        torch.manual_seed(cfg.seed)
        self.model = self.task.build_model(self.data).to(self.device)
        self.classifier = self.task.classifier(self.model)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr,
                                         momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    def _read_run_dir(self, resume: bool) -> dict[str, Any] | None:
        """The checkpoint to continue from (None: start afresh), after every check that
        the run directory may be used as asked."""
        stored = self.run.read_config()
        if stored is None:
            present = self.run.existing_files()
            if present:
                raise NCInputError(
                    f"{self.run.path} holds {', '.join(present)} but no config.json: refusing "
                    "to start over them (restore config.json to --resume the run, or choose "
                    "another --out)")
            return None
        if not resume:
            raise NCInputError(f"{self.run.path} already holds a run: continue it with "
                               "--resume (in Python: fit(resume=True)), or choose another "
                               "run folder (--out)")
        differences = config_diff(self.task.current_values(stored), self.config.to_dict())
        if differences:
            raise NCInputError(f"refusing to resume: {self.run.path} holds a run with a "
                               f"different config ({'; '.join(differences)})")
        return self.run.load_checkpoint(self.device)

    def _restore(self, checkpoint: Any) -> None:
        """The progress, model, optimizer and callback states of ``checkpoint`` (None: a
        fresh start); the callbacks' states are checked either way, before any write."""
        self.state = RunProgress()
        if checkpoint is not None:
            steps_per_epoch = -(-len(self.data.train) // self.config.batch_size)
            self.state = restore(checkpoint, self.run.file(CHECKPOINT), self.model,
                                 self.optimizer, self.device, self.config.epochs,
                                 steps_per_epoch)
            self.callbacks.load_state_dict(self.state.callbacks)
        self.callbacks.state_dict()

    def _start_run_dir(self) -> None:
        """The first write: config.json, and the logs as the checkpoint holds them (rows
        logged after the checkpoint are dropped: the resumed run redoes them)."""
        self._barrier()
        with self._agreed():  # rank 0's writes: a failure stops every rank
            if self.rank == 0:
                self.run.remove_stale_temporaries()
                self.run.write_config(self.config.to_dict())
                self.run.reset_rows(self.state.rows)

    # ------------------------------------------------------------------ the loop
    def _fit(self, stop: _StopSignals) -> dict[str, Any]:
        cfg, data, optimizer, state = self.config, self.data, self.optimizer, self.state
        x_train, y_train = data.train.x.to(self.device), data.train.y.to(self.device)
        x_test, y_test = data.test.x.to(self.device), data.test.y.to(self.device)
        train_model = self._wrap(self.model)
        eval_batches = {
            "train": EvalBatches(x_train, y_train, cfg.eval_batch_size, self.rank, self.world),
            "test": EvalBatches(x_test, y_test, cfg.eval_batch_size, self.rank, self.world),
        }
        log_epochs = set(log_spaced_epochs(cfg.epochs, cfg.log_points))
        self.callbacks.call("on_train_start", self)
        # a resumed run that a callback had already stopped trains no further
        met = self.callbacks.should_stop(self, state.rows)
        first = cfg.epochs + 1 if met else state.epoch + 1

        with _ProgressBar(cfg.epochs, state.epoch, self.progress, self.rank) as (bar, task_id):
            for epoch in range(first, cfg.epochs + 1):
                start = time.perf_counter()
                lr = learning_rate(epoch, cfg.lr, cfg.epochs, cfg.lr_milestones, cfg.lr_gamma)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batches = TrainBatches(x_train, y_train, cfg.batch_size, cfg.seed, epoch,
                                       self.rank, self.world)
                running_loss = self._train_epoch(train_model, batches, stop)
                if running_loss is None:  # a signal, inside the epoch
                    state.elapsed += time.perf_counter() - start
                    self._save()
                    raise stop.interrupted(state, self.run, cfg.epochs)
                self._check_finite(epoch, running_loss)
                row = self._evaluate_checked(epoch, lr, running_loss, log_epochs, eval_batches)
                state.elapsed += time.perf_counter() - start
                state.epoch = epoch
                if row is not None:
                    self._log(row)
                stopping = stop.agreed(self.world) and epoch < cfg.epochs
                met = self.callbacks.should_stop(self, state.rows)
                with self._agreed():
                    if self.rank == 0 and (stopping or met or self._checkpoint_due(epoch)):
                        self._save()
                if stopping:
                    raise stop.interrupted(state, self.run, cfg.epochs)
                bar.update(task_id, advance=1, status=_status(running_loss, state))
                if met:
                    break
        return self._finish(stopped=met)

    def _train_epoch(self, model: nn.Module, batches: TrainBatches,
                     stop: _StopSignals) -> float | None:
        """One pass over the training set; returns the mean training loss (all ranks).

        In one process, a stop signal ends the pass after the current step: then the
        steps done and their loss go into ``state`` and None is returned. A pass that
        ``state`` records as begun starts after its last step.
        """
        state, optimizer = self.state, self.optimizer
        model.train()
        total = torch.full((), state.step_loss, dtype=torch.float64, device=self.device)
        for step, (x, y, global_size) in enumerate(batches):
            if step < state.step:
                continue
            loss_sum = self.task.loss(model(x), y)
            # DDP averages gradients over ranks: scaling by world / global_size turns that
            # average into the mean over the global batch.
            loss = loss_sum * (self.world / global_size)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            self.task.after_step(self.model)
            total += loss_sum.detach()
            if stop.signal_number is not None and self.world == 1 and step + 1 < len(batches):
                state.step, state.step_loss = step + 1, float(total)
                return None
        state.step, state.step_loss = 0, 0.0
        return float(self._all_reduce(total)) / len(batches.y)

    def _evaluate(self, epoch: int, lr: float, running_loss: float, log_epochs: set[int],
                  batches: dict[str, EvalBatches]) -> dict[str, Any] | None:
        """The row of this epoch, or None when it is not logged: the trainer's columns,
        then those the callbacks add (``on_epoch_end``).

        Until the TPT onset is found, the training error is measured after every epoch;
        the onset epoch is always logged.
        """
        state = self.state
        seeking_onset = self.task.has_error_rate and state.tpt_onset is None
        if epoch not in log_epochs:
            if not seeking_onset:
                return None
            if misclassifies(self.model, batches["train"], self.task, self.world > 1):
                return None
        context = EvalContext(self.model, batches, self.classifier, epoch, self.config,
                              self.device, self.world > 1, self.task, self.data)
        train = context.loss_and_error("train")
        test = context.loss_and_error("test")
        if seeking_onset and train[1] == 0:
            state.tpt_onset = epoch
        row: dict[str, Any] = {
            "epoch": epoch, "lr": lr, "train_loss_running": running_loss,
            "train_loss": train[0], "train_error": train[1],
            "test_loss": test[0], "test_error": test[1], "tpt_onset": state.tpt_onset,
        }
        self.eval_context = context
        self.callbacks.call("on_epoch_end", self, epoch, row)
        return finite_or_none(row)  # NaN and inf metrics are logged as null

    def _log(self, row: dict[str, Any]) -> None:
        """Complete ``row`` with the training time, write it (rank 0) and hand it to the
        callbacks."""
        row["time_s"] = round(self.state.elapsed, 3)
        with self._agreed():  # rank 0's write and loggers: a failure stops every rank
            if self.rank == 0:
                self.run.append_row(row, self.state.rows)
            self.state.rows.append(row)
            self.callbacks.call("on_row_logged", self, row)

    def _finish(self, stopped: bool) -> dict[str, Any]:
        """The summary of a completed run (``stopped``: a callback stopped it), with the
        callbacks' keys; written to summary.json."""
        state = self.state
        summary: dict[str, Any] = {
            "status": "complete", "epochs_done": state.epoch, "tpt_onset": state.tpt_onset,
            "time_s": round(state.elapsed, 3), "run_dir": str(self.run.path),
            "world_size": self.world, "device": str(self.device),
        }
        if state.rows:
            summary["final"] = state.rows[-1]
        self.callbacks.call("on_train_end", self, summary)
        summary = finite_or_none(summary)  # as summary.json holds it
        if self.callbacks.can_stop:
            summary["stopped_early"] = stopped and state.epoch < self.config.epochs
        if self.rank == 0:
            self.run.write_summary(summary)
        return summary

    # ------------------------------------------------------------------ divergence
    def _check_finite(self, epoch: int, running_loss: float) -> None:
        """Stop as diverged when the loss or a weight is NaN or infinite."""
        if not math.isfinite(running_loss):
            self._diverged(epoch, f"the training loss became {running_loss}")
        if not _weights_finite(list(self.model.parameters())):
            self._diverged(epoch, "the weights became NaN or infinite")

    def _evaluate_checked(self, epoch: int, lr: float, running_loss: float,
                          log_epochs: set[int],
                          batches: dict[str, EvalBatches]) -> dict[str, Any] | None:
        """:meth:`_evaluate`, with an evaluation that fails on NaN or infinite outputs
        (finite weights whose features overflow) reported as a divergence."""
        try:
            with self._agreed():
                row = self._evaluate(epoch, lr, running_loss, log_epochs, batches)
        except Exception:
            if self._outputs_finite(batches["train"]):
                raise
            self._diverged(epoch, "the network's outputs became NaN or infinite")
        if row is not None and row["train_loss"] is None:
            self._diverged(epoch, "the loss on the training set became NaN or infinite")
        return row

    def _outputs_finite(self, batches: EvalBatches) -> bool:
        """Whether the network's outputs on ``batches`` are finite on every rank."""
        finite: list[bool] = []
        with self._agreed():
            collect(self.model, batches, allow_empty=self.world > 1,
                    on_batch=lambda outputs, _: finite.append(bool(outputs.isfinite().all())))
        return float(self._all_reduce(torch.tensor(float(finite.count(False))))) == 0

    def _diverged(self, epoch: int, what: str) -> NoReturn:
        state = self.state
        kept = (f"the last good checkpoint (epoch {state.saved_epoch}) is kept in "
                f"{self.run.file(CHECKPOINT)}" if state.saved_epoch is not None
                else "no checkpoint had been written yet")
        if self.rank == 0:
            self.run.write_summary({"status": "diverged", "diverged_epoch": epoch,
                                    "epochs_done": state.epoch, "tpt_onset": state.tpt_onset,
                                    "reason": what})
        raise TrainingDiverged(f"{what} in epoch {epoch}: stopped; {kept} (start again with "
                               "a lower lr in a new run directory)")

    # ------------------------------------------------------------------ helpers
    def _lock(self) -> AbstractContextManager[None]:
        """Rank 0, the one process that writes, holds the run directory's lock."""
        return self.run.lock() if self.rank == 0 else nullcontext()

    def _barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def _agreed(self) -> AbstractContextManager[None]:
        """Around local work before a collective: an error on one rank is raised on
        every rank (``distributed.agreed``), never left to pair with other collectives."""
        return distributed.agreed(self.world > 1)

    def _all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        return distributed.all_reduce(tensor) if self.world > 1 else tensor.cpu()

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.world == 1:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def _checkpoint_due(self, epoch: int) -> bool:
        if epoch == self.config.epochs:
            return True
        if self.checkpoint_every is not None:
            return epoch % self.checkpoint_every == 0
        return time.monotonic() - self.state.saved_at >= CHECKPOINT_SECONDS

    def _save(self) -> None:
        """Checkpoint the model, optimizer, progress and callback states (rank 0)."""
        if self.rank != 0:
            return
        state = self.state
        state.callbacks = self.callbacks.state_dict()
        self.run.save_checkpoint(checkpoint_state(self.model, self.optimizer, state,
                                                  self.device))
        state.saved_epoch, state.saved_at = state.epoch, time.monotonic()


def _deprecated_callbacks(loggers: Sequence[RowLogger],
                          stop_when: Callable[[list[dict[str, Any]]], bool] | None
                          ) -> list[Callback]:
    """The callbacks that the old keywords ``loggers=`` and ``stop_when=`` stand for."""
    made: list[Callback] = []
    if loggers:
        _warn_deprecated("loggers", "callbacks=[LoggerCallback(logger), ...]")
        made += [LoggerCallback(logger) for logger in loggers]
    if stop_when is not None:
        _warn_deprecated("stop_when", "callbacks=[StopWhen(rule)]")
        made.append(StopWhen(stop_when))
    return made


def _warn_deprecated(keyword: str, spelling: str) -> None:
    # stacklevel: this function, _deprecated_callbacks, Trainer.__init__, the caller
    warnings.warn(f"Trainer({keyword}=...) is deprecated and will be removed in the next "
                  f"release: pass {spelling}", DeprecationWarning, stacklevel=4)


def _weights_finite(parameters: list[torch.Tensor]) -> bool:
    """Whether every weight is finite. A NaN or an infinity makes its tensor's sum
    non-finite, so finite sums settle it in one reduction per tensor (a tenth of the
    entrywise test); a non-finite sum (also from an overflow of finite weights) is
    settled entry by entry."""
    if not parameters:
        return True
    sums = torch.stack([p.detach().sum(dtype=torch.float32) for p in parameters])
    if bool(sums.isfinite().all()):
        return True
    return bool(torch.stack([p.isfinite().all() for p in parameters]).all())


class _ProgressBar:
    """A rich progress bar over epochs (a no-op when hidden).

    It fits 80 columns (piped output, CI logs): a short bar, elapsed<remaining in one
    compact column, and a status that wraps onto a second line rather than cutting the
    other columns short.
    """

    def __init__(self, total: int, done: int, progress: bool | Console, rank: int) -> None:
        show = bool(progress) and rank == 0
        console = progress if isinstance(progress, Console) else None
        self.bar = Progress(
            TextColumn("[bold]epoch", table_column=Column(no_wrap=True)),
            MofNCompleteColumn(table_column=Column(no_wrap=True)), BarColumn(bar_width=10),
            _Clock(table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[status]}", table_column=Column()),
            disable=not show, console=console,
        )
        self.total, self.done = total, done

    def __enter__(self) -> tuple[Progress, Any]:
        self.bar.__enter__()
        return self.bar, self.bar.add_task("train", total=self.total, completed=self.done,
                                           status="")

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)


class _Clock(ProgressColumn):
    """``elapsed<remaining`` as m:ss (h:mm:ss from an hour on)."""

    def render(self, task: Any) -> Text:
        left = task.time_remaining if not task.finished else 0.0
        return Text(f"{_clock(task.elapsed)}<{_clock(left)}", style="progress.remaining")


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _StopSignals:
    """While active, SIGINT and SIGTERM ask the training loop to stop at the next safe
    point (it saves a checkpoint first); a second signal stops at once, keeping the
    last checkpoint. Handlers can only be set in the main thread: elsewhere this does
    nothing."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.signal_number is not None:
            raise KeyboardInterrupt
        self.signal_number = number

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def agreed(self, world: int) -> bool:
        """Whether a stop signal reached any rank (all ranks stop at the same epoch)."""
        if world == 1:
            return self.signal_number is not None
        flag = torch.tensor(float(self.signal_number or 0))
        number = int(distributed.all_reduce(flag, op="max"))
        self.signal_number = self.signal_number or (number or None)
        return number != 0

    def interrupted(self, state: RunProgress, run: RunDir, epochs: int) -> TrainingInterrupted:
        """The error that ends the run after its checkpoint was saved."""
        number = self.signal_number or signal.SIGINT
        where = (f"in epoch {state.epoch + 1} (after step {state.step})" if state.step
                 else f"after epoch {state.epoch} of {epochs}")
        return TrainingInterrupted(
            f"stopped by {signal.Signals(number).name} {where}; checkpoint saved in "
            f"{run.file(CHECKPOINT)}; continue with: nclab train --out "
            f"{run.path} --resume", number)


def _status(loss: float, state: RunProgress) -> str:
    parts = [f"loss {_short(loss)}"]
    if state.rows:
        last = state.rows[-1]
        if last.get("train_error") is not None:
            parts.append(f"err {_short(last['train_error'])}")
        if last.get("train_nc1") is not None:
            parts.append(f"nc1 {_short(last['train_nc1'])}")
    if state.tpt_onset is not None:
        parts.append(f"TPT from {state.tpt_onset}")
    return "  ".join(parts)


def _short(value: float) -> str:
    """Three significant digits with a short exponent (1.23e-5)."""
    return f"{value:.3g}".replace("e-0", "e-").replace("e+0", "e+")


def train(config: TrainConfig, run_dir: str | os.PathLike, *, resume: bool = False,
          **options: Any) -> dict[str, Any]:
    """Shortcut for ``Trainer(config, run_dir, **options).fit(resume)``."""
    return Trainer(config, run_dir, **options).fit(resume=resume)
