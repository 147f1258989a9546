"""``nclab train``: train a network into the terminal phase and log its collapse."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import typer

from nclab.cli.app import app, console
from nclab.cli.options import (
    ConfigChanges,
    Runtime,
    integer,
    model_shortcuts,
    real,
    runtime_options,
    training_options,
)
from nclab.core.errors import NCInputError
from nclab.runs import RunDir
from nclab.train import TrainConfig
from nclab.train.normalized import DEFAULT_TAU, NORMALIZED_TASK, normalization_flags

OUT_HELP = "Output folder (the run folder: config, checkpoint, metrics, report)."


def build_config(out: Path | None, resume: bool, changes: ConfigChanges,
                 preset: TrainConfig | None = None) -> TrainConfig:
    """The config of this invocation: the stored one when resuming, else ``preset`` (the
    defaults), updated by the options given on the command line."""
    if resume and out is None:
        raise NCInputError("--resume needs the --out folder of the run to continue")
    stored = RunDir(out).read_config() if out is not None and resume else None
    base = TrainConfig.from_dict(stored) if stored is not None else preset or TrainConfig()
    return changes.apply(base)


def default_run_dir(config: TrainConfig) -> Path:
    task = "" if config.task == "classification" else f"-{config.task}"
    return Path("runs") / f"{config.dataset}-{config.model}-{config.loss}{task}-seed{config.seed}"


def run_training(config: TrainConfig, out: Path, *, resume: bool, runtime: Runtime,
                 checkpoint_every: int | None = None, report: bool = True,
                 loggers: list[str] | None = None) -> dict[str, Any]:
    """Train, then (on rank 0) print the outcome and write the report. ``loggers``
    names experiment loggers that get every logged row too (``--logger``)."""
    from nclab.integrations.loggers import close_loggers, make_loggers
    from nclab.train import LoggerCallback, Trainer

    chosen = make_loggers(loggers or (), out, config=config.to_dict())
    runtime.apply_threads(console)
    trainer = Trainer(config, out, device=runtime.device, threads=runtime.threads,
                      checkpoint_every=checkpoint_every,
                      progress=console if runtime.progress else False,
                      callbacks=[LoggerCallback(logger) for logger in chosen])
    try:
        summary = trainer.fit(resume=resume)
    finally:
        close_loggers(chosen)
    if int(os.environ.get("RANK", "0")) == 0:
        print_summary(summary)
        if report:
            # imported here: matplotlib costs a second of every --no-report start
            from nclab.report import write_report

            console.print(f"report: {write_report(out)}", highlight=False, soft_wrap=True)
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    final = summary.get("final", {})
    onset = summary.get("tpt_onset")
    console.print(f"trained {summary['epochs_done']} epochs in {summary['time_s']:.0f} s; "
                  f"train error {final.get('train_error', float('nan')):.4g}, "
                  f"test error {final.get('test_error', float('nan')):.4g}", highlight=False)
    if onset is None:
        console.print("the training error never reached zero: no terminal phase",
                      highlight=False)
    elif "nc1_drop" in summary:
        console.print(f"TPT onset: epoch {onset}; train NC1 {summary['nc1_at_onset']:.4g} -> "
                      f"{summary['nc1_final']:.4g} ({nc1_change(summary['nc1_drop'])})",
                      highlight=False)


def nc1_change(drop: float) -> str:
    """``drop`` (NC1 at the onset / final NC1) in words: "134x smaller", "1.31x smaller",
    "2.5x larger" (NC1 rose), "unchanged"."""
    if not drop > 0 or not math.isfinite(drop):
        return f"ratio {drop:g}"
    if drop == 1:
        return "unchanged"
    factor, word = (drop, "smaller") if drop > 1 else (1 / drop, "larger")
    return f"{factor:.0f}x {word}" if factor >= 10 else f"{factor:.3g}x {word}"


@app.command("train")
@training_options(TrainConfig(), exclude=("task",))
@model_shortcuts()
@runtime_options()
def train_command(
    *,
    changes: ConfigChanges,
    runtime: Runtime,
    normalize_features: bool = typer.Option(
        False, "--normalize-features", rich_help_panel="Training",
        help="L2-normalize the features and scale them by --tau before a bias-free "
             "classifier with unit-norm rows (docs/normalized_training.md)."),
    tau: float = typer.Option(None, rich_help_panel="Training", show_default=f"{DEFAULT_TAU:g}",
                              help="Inverse temperature of --normalize-features.",
                              **real("--tau", low=0, low_open=True)),
    out: Path = typer.Option(None, "--out", help=OUT_HELP,
                             show_default="runs/DATASET-MODEL-LOSS-seedN"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its "
                                                        "last checkpoint."),
    checkpoint_every: int = typer.Option(None, show_default="every 30 s and at the end",
                                         help="Checkpoint every this many epochs.",
                                         **integer("--checkpoint-every")),
    report: bool = typer.Option(True, "--report/--no-report", help="Write the report at "
                                                                   "the end."),
    logger: list[str] = typer.Option(
        None, "--logger", metavar="NAME",
        help="Also log every row's numbers to TensorBoard (OUT/tensorboard), W&B (offline, "
             "OUT/wandb), MLflow (file store OUT/mlruns) or csv (OUT/scalars.csv); "
             "repeatable. metrics.jsonl stays the record (docs/in_your_training.md)."),
) -> None:
    """Train a network past zero training error, logging every collapse metric."""
    if normalize_features:
        changes.set("task", NORMALIZED_TASK)
    config = normalization_flags(build_config(out, resume, changes), normalize_features, tau,
                                 resume)
    run_training(config, out or default_run_dir(config), resume=resume, runtime=runtime,
                 checkpoint_every=checkpoint_every, report=report, loggers=logger)
