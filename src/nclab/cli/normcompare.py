"""``nclab normcompare``: normalized vs regularized training on the same data and budget."""

from __future__ import annotations

from pathlib import Path

import typer

from nclab.cli.app import app, console, short, warn
from nclab.cli.options import (
    ConfigChanges,
    Runtime,
    model_shortcuts,
    number_parser,
    runtime_options,
    training_options,
)
from nclab.studies.normcompare import FIGURE_PNG, RESULT_JSON, compare_normalized
from nclab.train.config import Setting, TrainConfig, parse_list
from nclab.train.normalized import DEFAULT_TAU


def print_result(result: dict) -> None:
    """One line per run: when train nc1 fell below the threshold, then the last epoch."""
    threshold = result["threshold"]
    width = max(map(len, result["runs"]))
    for name, run in result["runs"].items():
        if run["final"] is None:
            console.print(f"{name + ':':<{width + 1}} {run['message']}", highlight=False,
                          soft_wrap=True)
            continue
        final, reached = run["final"], run["epochs_to_threshold"]
        when = "not reached" if reached is None else f"epoch {reached}"
        console.print(
            f"{name + ':':<{width + 1}} train nc1 < {threshold:g}: {when}; "
            f"TPT onset: {run['tpt_onset']}; "
            f"epoch {final['epoch']}: train nc1 {short(final['train_nc1'])}, "
            f"etf_error_means {short(final['train_etf_error_means'])}, "
            f"wh_duality {short(final['train_wh_duality'])}, "
            f"test error {short(final['test_error'])} ({short(run['time_s'])} s)"
            + ("; DIVERGED" if run["status"] == "diverged" else ""),
            highlight=False, soft_wrap=True)


#: The preset of ``nclab normcompare``: 100 epochs (every one logged unless
#: --log-points is given).
PRESET = TrainConfig(epochs=100)
STUDY = "Comparison"


@app.command("normcompare")
@training_options(PRESET, exclude=("task", "evaluators", "options", "weight_decay",
                                   "log_points"))
@model_shortcuts(("widths",))
@runtime_options()
def normcompare_command(
    *,
    changes: ConfigChanges,
    runtime: Runtime,
    taus: str = typer.Option(f"{DEFAULT_TAU:g}", rich_help_panel=STUDY,
                             help="Inverse temperatures of the normalized runs, comma "
                                  "separated (one run each)."),
    weight_decays: str = typer.Option("5e-4", rich_help_panel=STUDY,
                                      help="Weight decays of the regularized runs, comma "
                                           "separated (one run each)."),
    normalized_weight_decay: float = typer.Option(
        0.0, rich_help_panel=STUDY, parser=number_parser(float, Setting(help="", low=0),
                                                         "--normalized-weight-decay"),
        metavar="NUMBER", help="Weight decay of the normalized runs."),
    threshold: float = typer.Option(1e-2, rich_help_panel=STUDY, parser=number_parser(
        float, Setting(help="", low=0, low_open=True), "--threshold"), metavar="NUMBER",
        help="Report the first epoch with train nc1 below this."),
    log_points: int = typer.Option(None, show_default="every epoch", parser=number_parser(
        int, Setting(help="", low=1), "--log-points"), metavar="INTEGER",
        rich_help_panel="Training", help="Number of log-spaced logged epochs."),
    out: Path = typer.Option(Path("runs/normcompare"), "--out",
                             help=f"Output folder: one folder per run, {RESULT_JSON}, "
                                  f"{FIGURE_PNG}."),
    json_path: Path = typer.Option(None, "--json", hidden=True),
    figure: Path = typer.Option(None, "--figure", hidden=True),
) -> None:
    """Train with normalized features (CE, tau) and with weight decay (CE + wd) on the same
    data, model and budget; plot nc1, etf_error_means and wh_duality against epoch, and
    report the first epoch with train nc1 below --threshold.

    Run again with the same options to continue interrupted runs.
    """
    for name, value in (("--json", json_path), ("--figure", figure)):
        if value is not None:
            warn(f"{name} is deprecated and will be removed: the results are in --out")
    runtime.apply_threads(console)
    changes.set("log_points", log_points)
    base = changes.apply(PRESET)
    if log_points is None:
        base = base.updated(log_points=base.epochs)

    def heading(name: str, config: TrainConfig) -> None:
        console.print(f"[bold]{name}[/]: {config.model} on {config.dataset}, "
                      f"task {config.task}, weight decay {config.weight_decay:g}"
                      + (f", tau {config.options['tau']:g}" if "tau" in config.options else ""),
                      highlight=False)

    result = compare_normalized(
        base, out, taus=parse_list(taus, float, "--taus"),
        weight_decays=parse_list(weight_decays, float, "--weight-decays"),
        normalized_weight_decay=normalized_weight_decay, threshold=threshold,
        device=runtime.device, threads=runtime.threads,
        progress=console if runtime.progress else False,
        on_run=heading, json_path=json_path, figure_path=figure)
    print_result(result)
    console.print(f"results: {json_path or out / RESULT_JSON}\n"
                  f"figure: {figure or out / FIGURE_PNG}", highlight=False)
