"""The training loop: SGD into the terminal phase, evaluators at log-spaced epochs.

One code path for one process and for ``torchrun --nproc_per_node=K`` (DDP): each rank
trains on its share of every global batch and evaluates its shard of each split; the
statistics are all-reduced, and rank 0 writes the files.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from nclab.core import distributed
from nclab.core.errors import NCInputError
from nclab.runs import RunDir
from nclab.train.batches import EvalBatches, TrainBatches
from nclab.train.config import TrainConfig, config_diff
from nclab.train.evaluators import EvalContext, Evaluator, evaluate_loss, make_evaluators
from nclab.train.schedule import learning_rate, log_spaced_epochs
from nclab.train.task import Task, make_task

CHECKPOINT_FORMAT = 1
#: Without ``checkpoint_every``, a checkpoint is written when this long has passed since
#: the last one: writing and flushing one after every short epoch can cost more than the
#: epoch itself, and a resumed run is the same at any checkpoint.
CHECKPOINT_SECONDS = 30.0


class TrainingDiverged(NCInputError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class _Progress:
    """What the checkpoint restores besides the model and optimizer."""

    epoch: int = 0
    tpt_onset: int | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0
    saved_epoch: int | None = None
    saved_at: float = field(default_factory=time.monotonic)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: this process's GPU when CUDA is available, else the CPU."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


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
    checkpoint_every : int, optional
        Save a checkpoint every this many epochs; by default whenever
        ``CHECKPOINT_SECONDS`` have passed since the last one. Always after the last
        epoch.
    evaluators : sequence of Evaluator, optional
        Run at every logged epoch after those named in ``config.evaluators``.
    task : Task, optional
        Overrides the task named by ``config.task``.

    Examples
    --------
    >>> cfg = TrainConfig(dataset="mnist1d", model="mlp", epochs=60)   # doctest: +SKIP
    >>> summary = Trainer(cfg, "runs/mlp").fit()                       # doctest: +SKIP
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | os.PathLike,
        *,
        device: str | torch.device = "auto",
        progress: bool | Console = True,
        checkpoint_every: int | None = None,
        evaluators: Sequence[Evaluator] = (),
        task: Task | None = None,
    ) -> None:
        if checkpoint_every is not None and checkpoint_every < 1:
            raise NCInputError(f"checkpoint_every must be >= 1; got {checkpoint_every}")
        self.config = config
        self.run = RunDir(run_dir)
        self.device = resolve_device(device)
        self.progress = progress
        self.checkpoint_every = checkpoint_every
        self.task = task if task is not None else make_task(config)
        self.evaluators = [*make_evaluators(config, self.task.default_evaluators), *evaluators]
        self.rank, self.world = 0, 1

    # ------------------------------------------------------------------ public
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to ``config.epochs`` (continuing from the checkpoint with ``resume``).

        Returns
        -------
        dict
            The summary also written to summary.json.
        """
        created_group = self._setup_distributed()
        try:
            checkpoint = self._prepare_run_dir(resume)
            return self._fit(checkpoint)
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

    def _barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def _prepare_run_dir(self, resume: bool) -> dict[str, Any] | None:
        """Check the run dir on every rank, then let rank 0 (re)initialize it."""
        stored = self.run.read_config()
        given = self.config.to_dict()
        checkpoint = None
        if stored is not None:
            if not resume:
                raise NCInputError(f"{self.run.path} already holds a run: pass --resume to "
                                   "continue it, or choose another --run-dir")
            differences = config_diff(stored, given)
            if differences:
                raise NCInputError(f"refusing to resume: {self.run.path} holds a run with a "
                                   f"different config ({'; '.join(differences)})")
            checkpoint = self.run.load_checkpoint(self.device)
            if checkpoint is not None and checkpoint.get("format") != CHECKPOINT_FORMAT:
                raise NCInputError(f"{self.run.file('checkpoint.pt')} has an unknown format")
        self._barrier()
        if self.rank == 0:
            self.run.write_config(given)
            # rows logged after the checkpoint are dropped: the resumed run redoes them
            self.run.reset_rows(json.loads(checkpoint["rows"]) if checkpoint else [])
        self._barrier()
        return checkpoint

    # ------------------------------------------------------------------ the loop
    def _fit(self, checkpoint: dict[str, Any] | None) -> dict[str, Any]:
        cfg = self.config
        data = self.task.load_data()
        self.data = data
        x_train, y_train = data.train.x.to(self.device), data.train.y.to(self.device)
        x_test, y_test = data.test.x.to(self.device), data.test.y.to(self.device)
        torch.manual_seed(cfg.seed)
        self.model = self.task.build_model(data).to(self.device)
        classifier = self.task.classifier(self.model)
        optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
        state = _Progress()
        if checkpoint is not None:
            state = self._restore(checkpoint, optimizer)
        train_model = self._wrap(self.model)
        eval_batches = {
            "train": EvalBatches(x_train, y_train, cfg.eval_batch_size, self.rank, self.world),
            "test": EvalBatches(x_test, y_test, cfg.eval_batch_size, self.rank, self.world),
        }
        log_epochs = set(log_spaced_epochs(cfg.epochs, cfg.log_points))

        with self._progress_bar(state.epoch) as (bar, task_id):
            for epoch in range(state.epoch + 1, cfg.epochs + 1):
                start = time.perf_counter()
                lr = learning_rate(epoch, cfg.lr, cfg.epochs, cfg.lr_milestones, cfg.lr_gamma)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batches = TrainBatches(x_train, y_train, cfg.batch_size, cfg.seed, epoch,
                                       self.rank, self.world)
                running_loss = self._train_epoch(train_model, optimizer, batches)
                if not math.isfinite(running_loss):
                    self._diverged(epoch, running_loss, state)
                row = self._evaluate(epoch, lr, running_loss, log_epochs, state, eval_batches,
                                     classifier)
                state.elapsed += time.perf_counter() - start
                state.epoch = epoch
                if row is not None:
                    row["time_s"] = round(state.elapsed, 3)
                    if self.rank == 0:
                        self.run.append_row(row, state.rows)
                    state.rows.append(row)
                if self.rank == 0 and self._checkpoint_due(epoch, state):
                    self._save(optimizer, state)
                bar.update(task_id, advance=1, status=_status(running_loss, state))
        summary = self._summary(state)
        if self.rank == 0:
            self.run.write_summary(summary)
        return summary

    def _train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                     batches: TrainBatches) -> float:
        """One pass over the training set; returns the mean training loss (all ranks)."""
        model.train()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for x, y, global_size in batches:
            loss_sum = self.task.loss(model(x), y)
            # DDP averages gradients over ranks: scaling by world / global_size turns that
            # average into the mean over the global batch.
            loss = loss_sum * (self.world / global_size)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            self.task.after_step(self.model)
            total += loss_sum.detach()
        return float(self._all_reduce(total)) / len(batches.y)

    def _evaluate(self, epoch: int, lr: float, running_loss: float, log_epochs: set[int],
                  state: _Progress, batches: dict[str, EvalBatches],
                  classifier: str) -> dict[str, Any] | None:
        """The row of this epoch, or None when it is not logged.

        Until the TPT onset is found, the training error is measured after every epoch;
        the onset epoch is always logged.
        """
        seeking_onset = self.task.has_error_rate and state.tpt_onset is None
        if epoch not in log_epochs:
            if not seeking_onset:
                return None
            _, error = evaluate_loss(self.model, batches["train"], self.task, self.world > 1)
            if error != 0:
                return None
        context = EvalContext(self.model, batches, classifier, epoch, self.config,
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
        for evaluator in self.evaluators:
            row.update(evaluator(context))
        return row

    # ------------------------------------------------------------------ helpers
    def _all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        return distributed.all_reduce(tensor) if self.world > 1 else tensor.cpu()

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.world == 1:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def _checkpoint_due(self, epoch: int, state: _Progress) -> bool:
        if epoch == self.config.epochs:
            return True
        if self.checkpoint_every is not None:
            return epoch % self.checkpoint_every == 0
        return time.monotonic() - state.saved_at >= CHECKPOINT_SECONDS

    def _save(self, optimizer: torch.optim.Optimizer, state: _Progress) -> None:
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": state.epoch,
            "tpt_onset": -1 if state.tpt_onset is None else state.tpt_onset,
            "rows": json.dumps(state.rows),
            "elapsed": state.elapsed,
            "rng_cpu": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            checkpoint["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        self.run.save_checkpoint(checkpoint)
        state.saved_epoch, state.saved_at = state.epoch, time.monotonic()

    def _restore(self, checkpoint: dict[str, Any], optimizer: torch.optim.Optimizer) -> _Progress:
        self.model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        torch.set_rng_state(checkpoint["rng_cpu"].cpu())
        if self.device.type == "cuda" and "rng_cuda" in checkpoint:
            torch.cuda.set_rng_state(checkpoint["rng_cuda"].cpu(), self.device)
        onset = int(checkpoint["tpt_onset"])
        epoch = int(checkpoint["epoch"])
        return _Progress(epoch, None if onset < 0 else onset, json.loads(checkpoint["rows"]),
                         float(checkpoint["elapsed"]), saved_epoch=epoch)

    def _diverged(self, epoch: int, loss: float, state: _Progress) -> None:
        kept = (f"the last good checkpoint (epoch {state.saved_epoch}) is kept in "
                f"{self.run.file('checkpoint.pt')}" if state.saved_epoch is not None
                else "no checkpoint had been written yet")
        if self.rank == 0:
            self.run.write_summary({"status": "diverged", "diverged_epoch": epoch,
                                    "epochs_done": state.epoch, "tpt_onset": state.tpt_onset})
        raise TrainingDiverged(f"the training loss became {loss} in epoch {epoch}: stopped; "
                               f"{kept} (start again with a lower lr in a new run directory)")

    def _summary(self, state: _Progress) -> dict[str, Any]:
        rows = state.rows
        summary: dict[str, Any] = {
            "status": "complete", "epochs_done": state.epoch, "tpt_onset": state.tpt_onset,
            "time_s": round(state.elapsed, 3), "run_dir": str(self.run.path),
            "world_size": self.world, "device": str(self.device),
        }
        if rows:
            last = rows[-1]
            summary["final"] = last
            for evaluator in self.evaluators:  # results that need every logged row
                if hasattr(evaluator, "summarize"):
                    summary.update(evaluator.summarize(rows))
            onset = next((r for r in rows if r["epoch"] == state.tpt_onset), None)
            if onset is not None and "train_nc1" in onset:
                summary["nc1_at_onset"] = onset["train_nc1"]
                summary["nc1_final"] = last["train_nc1"]
                if onset["train_nc1"] and last["train_nc1"]:
                    summary["nc1_drop"] = onset["train_nc1"] / last["train_nc1"]
        return summary

    def _progress_bar(self, done: int) -> _ProgressBar:
        show = bool(self.progress) and self.rank == 0
        console = self.progress if isinstance(self.progress, Console) else None
        return _ProgressBar(self.config.epochs, done, show, console)


class _ProgressBar:
    """A rich progress bar over epochs (a no-op when hidden)."""

    def __init__(self, total: int, done: int, show: bool, console: Console | None) -> None:
        self.bar = Progress(
            TextColumn("[bold]epoch"), MofNCompleteColumn(), BarColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
            disable=not show, console=console,
        )
        self.total, self.done = total, done

    def __enter__(self) -> tuple[Progress, Any]:
        self.bar.__enter__()
        return self.bar, self.bar.add_task("train", total=self.total, completed=self.done,
                                           status="")

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)


def _status(loss: float, state: _Progress) -> str:
    parts = [f"loss {loss:.3g}"]
    if state.rows:
        last = state.rows[-1]
        if last.get("train_error") is not None:
            parts.append(f"train err {last['train_error']:.3g}")
        if last.get("train_nc1") is not None:
            parts.append(f"nc1 {last['train_nc1']:.3g}")
    if state.tpt_onset is not None:
        parts.append(f"TPT from {state.tpt_onset}")
    return "  ".join(parts)


def train(config: TrainConfig, run_dir: str | os.PathLike, *, resume: bool = False,
          **options: Any) -> dict[str, Any]:
    """Shortcut for ``Trainer(config, run_dir, **options).fit(resume)``."""
    return Trainer(config, run_dir, **options).fit(resume=resume)
