"""Experiment loggers for ``nclab train --logger tensorboard|wandb|mlflow|csv``.

Every logged row of a run (one per logged epoch, the row written to metrics.jsonl) goes
to each logger as its scalars: the numeric, finite values of the row, named as in
metrics.jsonl (``train_nc1``, ``test_error``, ...), at step = the row's epoch. Entries
that are not numbers (None, flags, lists) are left out, and so are non-finite values
(metrics.jsonl writes those as null): no logger ever receives a NaN. metrics.jsonl
stays the source of truth; the loggers are views of it.

==============  ==========================================  ============================
name            writes                                      default destination
==============  ==========================================  ============================
tensorboard     event files (``torch.utils.tensorboard``),  ``RUN_DIR/tensorboard``
                values in float64
wandb           a W&B run; its summary keeps each metric's  offline, ``RUN_DIR/wandb``
                best value (min or max by its direction)    (``WANDB_MODE`` overrides)
                beside the last
mlflow          an MLflow run (experiment ``nclab``)        ``file:RUN_DIR/mlruns``
                                                            (``MLFLOW_TRACKING_URI``
                                                            overrides)
csv             one line per value: step,name,value         ``RUN_DIR/scalars.csv``
==============  ==========================================  ============================

A resumed run starts a new W&B / MLflow run and a new TensorBoard event file, and logs
the epochs it redoes again.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from nclab.core.errors import NCInputError, first_line
from nclab.core.io import make_dirs
from nclab.core.metric_info import info_for_column

#: logger name -> (module it needs, extra that installs it)
REQUIREMENTS = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
    "csv": (None, None),
}
#: logger name -> what it writes in the run directory, and whether that is a folder
DESTINATIONS = {
    "tensorboard": ("tensorboard", True),
    "wandb": ("wandb", True),
    "mlflow": ("mlruns", True),
    "csv": ("scalars.csv", False),
}
#: Names the W&B project and the MLflow experiment when the environment does not.
PROJECT = "nclab"


class Logger(Protocol):
    """What the trainer calls: ``log`` for every logged row, ``close`` at the end."""

    def log(self, row: Mapping[str, Any], step: int) -> None: ...

    def close(self) -> None: ...


def row_scalars(row: Mapping[str, Any], skip: Iterable[str] = ("epoch",)) -> dict[str, float]:
    """The finite numbers of a row, ``{name: float}``; a nested dict's entries are named
    ``outer/inner``. Booleans, None, strings, lists and NaN / inf are left out."""
    skipped = set(skip)
    out: dict[str, float] = {}
    for key, value in row.items():
        if key in skipped:
            continue
        if isinstance(value, Mapping):
            out.update({f"{key}/{k}": v for k, v in row_scalars(value, ()).items()})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value):
                out[str(key)] = float(value)
    return out


class TensorBoardLogger:
    """TensorBoard event files in ``directory``, each value a float64 scalar summary."""

    def __init__(self, directory: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(directory))

    def log(self, row: Mapping[str, Any], step: int) -> None:
        for name, value in row_scalars(row).items():
            # new-style summaries keep float64; the classic ones round to float32
            self.writer.add_scalar(name, value, global_step=step, new_style=True,
                                   double_precision=True)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """A W&B run under ``directory``; offline unless ``WANDB_MODE`` says otherwise
    (``wandb sync DIR`` uploads an offline run later)."""

    def __init__(self, directory: Path, name: str, config: Mapping[str, Any] | None) -> None:
        import wandb

        settings = wandb_settings()
        make_dirs(directory)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", PROJECT), dir=str(directory), name=name,
            config=dict(config or {}), mode=settings.mode, reinit="create_new",
            settings=settings)

        self.summarized: set[str] = set()

    def log(self, row: Mapping[str, Any], step: int) -> None:
        scalars = row_scalars(row)
        self.summarize(scalars)
        self.run.log(scalars, step=step)

    def summarize(self, names: Iterable[str]) -> None:
        """For each collapse metric not seen before, keep its best value in the run's
        summary beside the last (``define_metric(summary="min,last")``; "max,last" where
        higher is better), its direction read from ``nclab.core.metric_info``. Metrics
        with an ideal value in between, and other columns, keep W&B's last value."""
        for name in names:
            if name in self.summarized:
                continue
            self.summarized.add(name)
            info = info_for_column(name)
            if info is not None and info.higher_is_better is not None:
                best = "max" if info.higher_is_better else "min"
                self.run.define_metric(name, summary=f"{best},last")

    def close(self) -> None:
        self.run.finish()


def wandb_settings() -> Any:
    """W&B's settings of an nclab run (offline unless ``WANDB_MODE`` says otherwise),
    checked without writing anything.

    Raises NCInputError when ``WANDB_MODE`` is not a mode W&B knows.
    """
    import wandb

    # W&B's settings check the mode themselves (their Literal of modes changes between
    # versions), so any string is passed on as it is
    mode: Any = os.environ.get("WANDB_MODE", "offline")
    try:
        return wandb.Settings(mode=mode, silent=True, console="off", x_disable_stats=True)
    except ValueError:  # pydantic's ValidationError
        raise NCInputError(f"--logger wandb: WANDB_MODE={mode!r} is not a W&B mode; use "
                           "offline, online or disabled") from None


class MlflowLogger:
    """An MLflow run, through ``MlflowClient`` (no global active run).

    The tracking URI is ``MLFLOW_TRACKING_URI`` when set, else a local file store in
    ``directory`` (MLflow keeps that backend in maintenance mode, behind
    ``MLFLOW_ALLOW_FILE_STORE``, which is set for it unless the environment sets it).
    """

    def __init__(self, directory: Path, name: str, config: Mapping[str, Any] | None) -> None:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or directory.resolve().as_uri()
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Metric, Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self._metric = Metric
        try:
            self.client = MlflowClient(tracking_uri=uri)
            experiment_name = os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT)
            experiment = self.client.get_experiment_by_name(experiment_name)
            experiment_id = (experiment.experiment_id if experiment is not None
                             else self.client.create_experiment(experiment_name))
            self.run_id = self.client.create_run(experiment_id, run_name=name).info.run_id
            params = [Param(key, str(value)[:6000]) for key, value in
                      _flat_items(config or {})]
            if params:
                self.client.log_batch(self.run_id, params=params)
        except MlflowException as exc:
            raise NCInputError(f"--logger mlflow: {first_line(exc)}") from None

    def log(self, row: Mapping[str, Any], step: int) -> None:
        now = int(time.time() * 1000)
        metrics = [self._metric(name, value, now, step)
                   for name, value in row_scalars(row).items()]
        for start in range(0, len(metrics), 1000):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class CsvLogger:
    """``step,name,value`` lines, one per value: exactly what the other loggers get
    (metrics.csv, always written, is the wide table)."""

    def __init__(self, path: Path) -> None:
        make_dirs(path.parent)
        new = not path.is_file()
        self.handle = open(path, "a", newline="")  # closed by close()
        self.writer = csv.writer(self.handle, lineterminator="\n")
        if new:
            self.writer.writerow(["step", "name", "value"])

    def log(self, row: Mapping[str, Any], step: int) -> None:
        for name, value in row_scalars(row).items():
            self.writer.writerow([step, name, repr(value)])
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def _flat_items(config: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in config.items():
        if isinstance(value, Mapping):
            items += _flat_items(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


def check_destinations(names: Iterable[str], run_dir: Path) -> None:
    """Refuse, before anything is written, a logger whose folder or file in ``run_dir``
    is taken by the other kind (a file where its folder goes, or the reverse), and
    W&B settings it would refuse."""
    for name in names:
        if name == "mlflow" and os.environ.get("MLFLOW_TRACKING_URI"):
            continue  # MLflow writes where the URI says, not in the run directory
        if name == "wandb":
            wandb_settings()
        relative, folder = DESTINATIONS[name]
        path = run_dir / relative
        if path.exists() and path.is_dir() != folder:
            found, needed = ("file", "folder") if folder else ("folder", "file")
            raise NCInputError(f"--logger {name}: {path} is a {found}; it needs a {needed} "
                               "there")


def check_logger_names(names: Iterable[str]) -> list[str]:
    """The names, each once in the order given, after checking that each is known and
    that its library is installed (before anything is written)."""
    chosen = list(dict.fromkeys(names))
    for name in chosen:
        if name not in REQUIREMENTS:
            raise NCInputError(f"unknown logger '{name}'; choose from: "
                               f"{', '.join(REQUIREMENTS)}")
        module, extra = REQUIREMENTS[name]
        if module is not None and importlib.util.find_spec(module) is None:
            raise NCInputError(f"--logger {name} needs {module}: "
                               f'pip install "nclab[{extra}]"')
    return chosen


class LazyLogger:
    """A logger that is made at its first row, so that nothing is written (no event
    file, no W&B or MLflow run) unless a row is logged: a run that stops at its checks,
    or a rank other than 0, leaves no trace."""

    def __init__(self, make: Callable[[], Logger]) -> None:
        self.make = make
        self.logger: Logger | None = None

    def log(self, row: Mapping[str, Any], step: int) -> None:
        if self.logger is None:
            self.logger = self.make()
        self.logger.log(row, step)

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()


def make_loggers(names: Iterable[str], run_dir: str | os.PathLike,
                 config: Mapping[str, Any] | None = None) -> list[Logger]:
    """The loggers named, writing next to ``run_dir``'s metrics.jsonl.

    The names, the libraries, the W&B settings and the place of each logger's files
    are checked now, before anything is written; each logger starts at its first row
    (:class:`LazyLogger`).

    Parameters
    ----------
    names : iterable of {"tensorboard", "wandb", "mlflow", "csv"}
        Repeats are dropped.
    run_dir : path
        The run directory.
    config : dict, optional
        The run's config, stored as the W&B config and as MLflow parameters.

    Returns
    -------
    list of Logger
        Objects with ``log(row, step)`` and ``close()``; the caller closes them
        (:func:`close_loggers`).
    """
    chosen = check_logger_names(names)
    run_dir = Path(run_dir)
    check_destinations(chosen, run_dir)
    makers: dict[str, Callable[[], Logger]] = {
        "tensorboard": lambda: TensorBoardLogger(run_dir / "tensorboard"),
        "wandb": lambda: WandbLogger(run_dir, run_dir.name, config),
        "mlflow": lambda: MlflowLogger(run_dir / "mlruns", run_dir.name, config),
        "csv": lambda: CsvLogger(run_dir / "scalars.csv"),
    }
    return [LazyLogger(makers[name]) for name in chosen]


def close_loggers(loggers: Iterable[Logger]) -> None:
    """Close every logger, even when one of them fails (the first error is raised)."""
    error: BaseException | None = None
    for logger in loggers:
        try:
            logger.close()
        except Exception as exc:  # keep closing the others
            error = error or exc
    if error is not None:
        raise error
