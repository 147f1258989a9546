"""``nclab train``: train a network into the terminal phase and log its collapse."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import typer

from nclab.cli import options
from nclab.cli.app import app, console
from nclab.core.errors import NCInputError
from nclab.report import write_report
from nclab.runs import RunDir
from nclab.train import TrainConfig, Trainer
from nclab.train.normalized import DEFAULT_TAU, check_normalization_flags, normalization_changes


def parse_pairs(pairs: list[str] | None, option: str) -> dict[str, Any]:
    """``["k=v", ...]`` -> dict; values are read as JSON when they parse, else strings."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise NCInputError(f"{option} expects KEY=VALUE; got '{pair}'")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def parse_list(text: str | None, kind: type, option: str) -> tuple[Any, ...] | None:
    """``"1,2,3"`` -> (1, 2, 3) of ``kind``."""
    if text is None:
        return None
    try:
        return tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise NCInputError(f"{option} expects a comma-separated list of {kind.__name__}; "
                           f"got '{text}'") from None


def build_config(run_dir: Path | None, resume: bool, given: dict[str, Any]) -> TrainConfig:
    """The config of this invocation: the stored one when resuming, else the defaults,
    updated by the options given on the command line (dict options are merged)."""
    stored = RunDir(run_dir).read_config() if run_dir is not None and resume else None
    base = TrainConfig.from_dict(stored) if stored is not None else TrainConfig()
    changes = {key: value for key, value in given.items() if value is not None}
    for key in ("dataset_options", "model_options", "options"):
        if key in changes:
            changes[key] = {**getattr(base, key), **changes[key]}
    return base.updated(**changes)


def default_run_dir(config: TrainConfig) -> Path:
    task = "" if config.task == "classification" else f"-{config.task}"
    return Path("runs") / f"{config.dataset}-{config.model}-{config.loss}{task}-seed{config.seed}"


def run_training(config: TrainConfig, run_dir: Path, *, resume: bool, device: str,
                 checkpoint_every: int | None, progress: bool, threads: int | None,
                 report: bool) -> dict[str, Any]:
    """Train, then (on rank 0) print the outcome and write the report."""
    if threads is not None:
        if threads < 1:
            raise NCInputError(f"--threads must be >= 1; got {threads}")
        torch.set_num_threads(threads)
    trainer = Trainer(config, run_dir, device=device, checkpoint_every=checkpoint_every,
                      progress=console if progress else False)
    summary = trainer.fit(resume=resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print_summary(summary)
        if report:
            path = write_report(run_dir)
            console.print(f"report: {path}", highlight=False, soft_wrap=True)
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
                      f"{summary['nc1_final']:.4g} ({summary['nc1_drop']:.0f}x smaller)",
                      highlight=False)


@app.command("train")
def train_command(
    dataset: str = typer.Option(None, help="Data set name (default mnist1d)."),
    root: Path = typer.Option(None, help="Folder of a data set read from files."),
    classes: str = typer.Option(None, help="Keep these classes, e.g. 0,1,2."),
    per_class: int = options.PER_CLASS,
    per_class_test: int = options.PER_CLASS_TEST,
    data_opt: list[str] = options.DATA_OPT,
    model: str = typer.Option(None, help="Network name (default mlp)."),
    widths: str = options.WIDTHS,
    width: float = typer.Option(None, help="Width multiplier of vgg*/resnet*."),
    model_opt: list[str] = options.MODEL_OPT,
    loss: str = typer.Option(None, help="ce or mse (default ce)."),
    epochs: int = typer.Option(None, help="Epochs (default 350)."),
    batch_size: int = typer.Option(None, help="Batch size (default 128)."),
    lr: float = typer.Option(None, help="Learning rate (default 0.05)."),
    momentum: float = typer.Option(None, help="SGD momentum (default 0.9)."),
    weight_decay: float = typer.Option(None, help="Weight decay (default 5e-4)."),
    milestones: str = typer.Option(None, help="Fractions of the run after which the lr is "
                                              "multiplied by --lr-gamma (default 0.333,0.667)."),
    lr_gamma: float = typer.Option(None, help="LR factor at each milestone (default 0.1)."),
    seed: int = typer.Option(None, help="Seed of initialization and sample order (default 0)."),
    log_points: int = typer.Option(None, help="Number of log-spaced logged epochs (default 50)."),
    eval_batch_size: int = typer.Option(None, help="Batch size of evaluation passes."),
    evaluators: str = typer.Option(None, help="Evaluators run at logged epochs (default "
                                              "collapse)."),
    opt: list[str] = typer.Option(None, help="Extension option KEY=VALUE (repeatable)."),
    normalize_features: bool = typer.Option(
        False, "--normalize-features", help="L2-normalize the features and scale them by "
        "--tau before a bias-free classifier whose rows are renormalized to unit norm after "
        "each step (SPEC section 4); the tracked features are h/||h||."),
    tau: float = typer.Option(None, help="Inverse temperature of --normalize-features "
                                         f"(default {DEFAULT_TAU:g})."),
    run_dir: Path = typer.Option(None, help="Output folder (default runs/DATASET-MODEL-LOSS-"
                                            "seedSEED)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir "
                                                        "from its last checkpoint."),
    device: str = typer.Option("auto", help="auto (CUDA if available), cpu, cuda, cuda:1..."),
    checkpoint_every: int = typer.Option(None, help="Checkpoint every this many epochs "
                                                    "(default: every 30 s, and at the end)."),
    threads: int = typer.Option(None, help="CPU threads of torch (default: torch's choice)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write the report at the "
                                                                   "end."),
) -> None:
    """Train a network past zero training error, logging every collapse metric."""
    model_options = parse_pairs(model_opt, "--model-opt")
    if widths is not None:
        model_options["widths"] = list(parse_list(widths, int, "--widths"))
    if width is not None:
        model_options["width"] = width
    given = {
        "dataset": dataset, "root": None if root is None else str(root),
        "classes": parse_list(classes, int, "--classes"), "per_class": per_class,
        "per_class_test": per_class_test, "dataset_options": parse_pairs(data_opt, "--data-opt")
        or None, "model": model, "model_options": model_options or None, "loss": loss,
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "momentum": momentum,
        "weight_decay": weight_decay,
        "lr_milestones": parse_list(milestones, float, "--milestones"), "lr_gamma": lr_gamma,
        "seed": seed, "log_points": log_points, "eval_batch_size": eval_batch_size,
        "evaluators": parse_list(evaluators, str, "--evaluators"),
        "options": parse_pairs(opt, "--opt") or None,
    }
    given.update(normalization_changes(normalize_features, tau, given["options"], resume))
    if resume and run_dir is None:
        raise NCInputError("--resume needs the --run-dir of the run to continue")
    config = build_config(run_dir, resume, given)
    check_normalization_flags(config, tau)
    run_training(config, run_dir or default_run_dir(config), resume=resume, device=device,
                 checkpoint_every=checkpoint_every, progress=progress, threads=threads,
                 report=report)
