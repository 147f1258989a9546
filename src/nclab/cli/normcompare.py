"""``nclab normcompare``: normalized vs regularized training on the same data and budget."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from nclab.cli import options
from nclab.cli.app import app, console, short
from nclab.cli.train import parse_list, parse_pairs
from nclab.core.errors import NCInputError
from nclab.studies.normcompare import FIGURE_PNG, RESULT_JSON, compare_normalized
from nclab.train import TrainConfig
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


@app.command("normcompare")
def normcompare_command(
    dataset: str = typer.Option("mnist1d", help="Data set name."),
    per_class: int = options.PER_CLASS,
    per_class_test: int = options.PER_CLASS_TEST,
    data_opt: list[str] = options.DATA_OPT,
    model: str = typer.Option("mlp", help="Network name."),
    widths: str = options.WIDTHS,
    model_opt: list[str] = options.MODEL_OPT,
    epochs: int = typer.Option(100, help="Epochs of each run."),
    batch_size: int = options.BATCH_SIZE,
    lr: float = typer.Option(0.05, help="Learning rate of every run."),
    momentum: float = options.MOMENTUM,
    milestones: str = typer.Option(None, help="Fractions of the run after which the lr is "
                                              "multiplied by --lr-gamma (default 0.333,0.667)."),
    lr_gamma: float = typer.Option(0.1, help="LR factor at each milestone."),
    seed: int = typer.Option(0, help="Seed of initialization and sample order."),
    tau: str = typer.Option(f"{DEFAULT_TAU:g}", help="Inverse temperature of the normalized "
                                                     "run; a list (3,5,10) for one run each."),
    weight_decay: str = typer.Option("5e-4", help="Weight decay of the regularized run; a "
                                                  "list for one run each."),
    normalized_weight_decay: float = typer.Option(0.0, help="Weight decay of the normalized "
                                                            "runs."),
    threshold: float = typer.Option(1e-2, help="Report the first epoch with train nc1 below "
                                               "this."),
    log_points: int = typer.Option(None, help="Logged epochs (default: every epoch)."),
    out: Path = typer.Option(Path("runs/normcompare"), help="Output folder: one folder per run, "
                                                            f"{RESULT_JSON}, {FIGURE_PNG}."),
    json_path: Path = typer.Option(None, "--json",
                                   help=f"Result file (default OUT/{RESULT_JSON})."),
    figure: Path = typer.Option(None, help=f"Figure file (default OUT/{FIGURE_PNG})."),
    device: str = typer.Option("auto", help="auto (CUDA if available), cpu, cuda..."),
    threads: int = typer.Option(None, help="CPU threads of torch (default: torch's choice)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
) -> None:
    """Train with normalized features (CE, tau) and with weight decay (CE + wd) on the same
    data, model and budget; plot nc1, etf_error_means and wh_duality against epoch, and
    report the first epoch with train nc1 below --threshold.

    Run again with the same options to continue interrupted runs.
    """
    if threads is not None:
        if threads < 1:
            raise NCInputError(f"--threads must be >= 1; got {threads}")
        torch.set_num_threads(threads)
    model_options = parse_pairs(model_opt, "--model-opt")
    if widths is not None:
        model_options["widths"] = list(parse_list(widths, int, "--widths"))
    base = TrainConfig(
        dataset=dataset, per_class=per_class, per_class_test=per_class_test,
        dataset_options=parse_pairs(data_opt, "--data-opt"), model=model,
        model_options=model_options, epochs=epochs, batch_size=batch_size, lr=lr,
        momentum=momentum, lr_milestones=parse_list(milestones, float, "--milestones")
        or TrainConfig.lr_milestones, lr_gamma=lr_gamma, seed=seed,
        log_points=epochs if log_points is None else log_points,
    )

    def heading(name: str, config: TrainConfig) -> None:
        console.print(f"[bold]{name}[/]: {config.model} on {config.dataset}, "
                      f"task {config.task}, weight decay {config.weight_decay:g}"
                      + (f", tau {config.options['tau']:g}" if "tau" in config.options else ""),
                      highlight=False)

    result = compare_normalized(base, out, taus=parse_list(tau, float, "--tau"),
                                weight_decays=parse_list(weight_decay, float, "--weight-decay"),
                                normalized_weight_decay=normalized_weight_decay,
                                threshold=threshold, device=device,
                                progress=console if progress else False, on_run=heading,
                                json_path=json_path, figure_path=figure)
    print_result(result)
    console.print(f"results: {json_path or out / RESULT_JSON}\n"
                  f"figure: {figure or out / FIGURE_PNG}", highlight=False)
