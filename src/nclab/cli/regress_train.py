"""``nclab regress train`` and ``nclab regress sweep``: the paper's MLP trained with MSE.

Both train with the shared trainer (task ``regression``, evaluator ``nrc``): Andriopoulos
et al.'s settings by default, every option changeable. ``sweep`` runs several weight
decays on the same data and plots NRC1-NRC3 against epoch per value.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import torch
import typer
from rich import box
from rich.table import Table
from threadpoolctl import threadpool_limits

from nclab.cli.app import console, short
from nclab.cli.regress import regress_app
from nclab.cli.train import build_config, parse_list, parse_pairs
from nclab.core.errors import NCInputError
from nclab.core.io import write_json
from nclab.data import REGRESSION, dataset_names
from nclab.report import write_report
from nclab.report.regression import regression_outcome
from nclab.runs import load_run
from nclab.train import TrainConfig, Trainer
from nclab.train.regression import PAPER_SETTINGS

DATA_HELP = "teacher, reacher, swimmer, hopper, or a .npz file with x and y."
# Options shared by both commands. None means "the paper's setting" (or, on --resume,
# the stored one).
SAMPLES = typer.Option(None, "--samples", help="Train + test samples (default: teacher 1000, "
                                               "Reacher/Swimmer 1k, Hopper 10k).")
NOISE = typer.Option(None, help="Teacher: target noise; MuJoCo: exploration noise.")
TARGET_DIM = typer.Option(None, "--n", help="Teacher: target dimension n (default 3).")
INPUT_DIM = typer.Option(None, help="Teacher: input dimension (default 16).")
SPECTRUM = typer.Option(None, help="Teacher: eigenvalues of the target covariance, comma "
                                   "separated.")
POLICY = typer.Option(None, help="Hopper: the expert's policy .npz (read, or written).")
DATA_SEED = typer.Option(None, help="Seed of the data (default 0).")
DATA_OPT = typer.Option(None, help="Other data option KEY=VALUE (repeatable).")
EPOCHS = typer.Option(None, help="Epochs (default 350).")
LR = typer.Option(None, help="Learning rate (default 1e-2, constant).")
MOMENTUM = typer.Option(None, help="SGD momentum (default 0).")
BATCH_SIZE = typer.Option(None, help="Batch size (default 256).")
WIDTHS = typer.Option(None, help="Hidden widths of the MLP (default 256,256,256).")
ACTIVATION = typer.Option(None, help="Hidden activation of the MLP: relu (default), "
                                     "leaky_relu, tanh, gelu.")
LOG_POINTS = typer.Option(None, help="Log-spaced epochs at which NRC is measured (default 50).")
SEED = typer.Option(None, help="Seed of initialization and sample order (default 0).")
STANDARDIZE = typer.Option(None, "--standardize-targets/--raw-targets",
                           help="Scale each target column to unit variance (default: raw).")
HEAD_BIAS = typer.Option(None, "--head-bias/--no-head-bias",
                         help="Give the last layer a bias b (default: yes).")
MILESTONES = typer.Option(None, "--milestones", help="Fractions of the run after which the "
                                                     "lr is multiplied by --lr-gamma, comma "
                                                     "separated (default: none, constant lr).")
LR_GAMMA = typer.Option(None, help="LR factor at each milestone (default 0.1).")
DEVICE = typer.Option("auto", help="auto (CUDA if available), cpu, cuda, ...")
THREADS = typer.Option(None, help="CPU threads of torch (default: torch's choice).")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Progress bar.")


def regression_given(data: str, *, samples, noise, target_dim, input_dim, spectrum, policy,
                     data_seed, data_opt, epochs, lr, momentum, batch_size, widths, log_points,
                     seed, standardize, activation=None, head_bias=None, milestones=None,
                     lr_gamma=None, weight_decay=None) -> dict[str, Any]:
    """The TrainConfig fields set on the command line (None: not given)."""
    generated = [name for name in dataset_names(REGRESSION) if name != "npz_targets"]
    dataset, root = (data, None) if data in generated else ("npz_targets", data)
    if root is not None and not Path(data).is_file():
        raise NCInputError(f"'{data}' is neither a data set ({', '.join(generated)}) "
                           "nor an existing .npz file")
    options = {"num_samples": samples, "noise": noise, "target_dim": target_dim,
               "input_dim": input_dim, "seed": data_seed,
               "policy_file": None if policy is None else str(policy),
               "target_cov": None if spectrum is None else
               list(parse_list(spectrum, float, "--spectrum"))}
    options = {key: value for key, value in options.items() if value is not None}
    options.update(parse_pairs(data_opt, "--data-opt"))
    task_options = {key: value for key, value in (("standardize_targets", standardize),
                                                  ("head_bias", head_bias))
                    if value is not None}
    return {
        "task": "regression", "dataset": dataset, "root": root,
        "dataset_options": options or None, "epochs": epochs, "lr": lr, "momentum": momentum,
        "batch_size": batch_size, "weight_decay": weight_decay, "seed": seed,
        "log_points": log_points,
        "model_options": {key: value for key, value in (
            ("widths", None if widths is None else list(parse_list(widths, int, "--widths"))),
            ("activation", activation)) if value is not None} or None,
        "options": task_options or None,
        "lr_milestones": parse_list(milestones, float, "--milestones"), "lr_gamma": lr_gamma,
    }


def given_on_command_line(arguments: dict[str, Any]) -> dict[str, Any]:
    """``regression_given`` of the arguments of a command (its ``locals()``).

    Only the names ``regression_given`` takes are passed on; it has no defaults for the
    options both commands share, so an option a command lacks is an error, not a None.
    """
    names = inspect.signature(regression_given).parameters
    return regression_given(**{key: value for key, value in arguments.items() if key in names})


def regression_run_config(run_dir: Path | None, resume: bool,
                          given: dict[str, Any]) -> TrainConfig:
    """The paper's settings updated by ``given`` (on --resume: the stored config)."""
    defaults = {} if resume else {**PAPER_SETTINGS, "epochs": 350}
    changes = {k: v for k, v in given.items() if v is not None}
    # dict options add to the paper's (--activation keeps the 3 x 256 widths)
    for key in ("model_options", "options"):
        if key in changes and key in defaults:
            changes[key] = {**defaults[key], **changes[key]}
    return build_config(run_dir, resume, {**defaults, **changes})


def set_threads(threads: int | None) -> None:
    """Limit torch and the BLAS of numpy (the NRC eigendecompositions) to ``threads``.

    On a few busy cores a multi-threaded 256 x 256 eigendecomposition spin-waits for its
    other threads and runs about ten times slower than on one.
    """
    if threads is not None:
        if threads < 1:
            raise NCInputError(f"--threads must be >= 1; got {threads}")
        torch.set_num_threads(threads)
        threadpool_limits(threads)


def outcome_table(outcomes: list[tuple[str, dict[str, Any]]], title: str) -> Table:
    """Train NRC values at the last logged epoch, ÷ first / last (the drop), and the fit.

    Two rows per run: the features h/||h|| of SPEC, and the centred features.
    """
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True,
                  pad_edge=False)
    for column in ("run", "features", "nrc1", "nrc2", "nrc3", "R^2"):
        table.add_column(column, justify="right", no_wrap=True)
    for label, out in outcomes:
        table.add_row(label, "h/|h|", _change(out, "nrc1"), _change(out, "nrc2"),
                      _change(out, "nrc3"), short(out["last"]["train_r2"], 2))
        table.add_row("", "centred", _change(out, "nrc1_centred"),
                      _change(out, "nrc2_centred"), f"γ = {short(out['gamma'], 2)}", "",
                      end_section=True)
    return table


def _change(outcome: dict[str, Any], name: str) -> str:
    """``last ÷ratio``: the last logged value of a training-set metric, and first / last."""
    key = name if name == "nrc3" else f"train_{name}"
    first, last, drop = outcome["first"][key], outcome["last"][key], outcome["drop"][name]
    # a metric that fell to exactly 0 (features of rank <= n) has no finite ratio
    ratio = "∞" if drop is None and first and last == 0 else short(drop, 2)
    return f"{short(last, 2)} ÷{ratio}"


@regress_app.command("train")
def train_command(
    data: str = typer.Argument(..., help=DATA_HELP),
    weight_decay: float = typer.Option(None, help="Weight decay on all parameters "
                                                  "(default 1e-2)."),
    samples: int = SAMPLES, noise: float = NOISE, target_dim: int = TARGET_DIM,
    input_dim: int = INPUT_DIM, spectrum: str = SPECTRUM, policy: Path = POLICY,
    data_seed: int = DATA_SEED, data_opt: list[str] = DATA_OPT, epochs: int = EPOCHS,
    lr: float = LR, momentum: float = MOMENTUM, batch_size: int = BATCH_SIZE,
    widths: str = WIDTHS, log_points: int = LOG_POINTS, seed: int = SEED,
    standardize: bool = STANDARDIZE, activation: str = ACTIVATION, head_bias: bool = HEAD_BIAS,
    milestones: str = MILESTONES, lr_gamma: float = LR_GAMMA,
    run_dir: Path = typer.Option(None, help="Output folder (default runs/regress-DATA-wdWD)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir."),
    json_out: Path = typer.Option(None, "--json", help="Also write the outcome as JSON."),
    device: str = DEVICE, threads: int = THREADS, progress: bool = PROGRESS,
) -> None:
    """Train the paper's MLP with MSE and weight decay, logging NRC1-NRC3 over epochs."""
    if resume and run_dir is None:
        raise NCInputError("--resume needs the --run-dir of the run to continue")
    given = given_on_command_line(locals())
    config = regression_run_config(run_dir, resume, given)
    run_dir = run_dir or Path("runs") / (f"regress-{Path(data).stem}-wd{config.weight_decay:g}")
    set_threads(threads)
    summary = Trainer(config, run_dir, device=device,
                      progress=console if progress else False).fit(resume=resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    outcome = regression_outcome(load_run(run_dir))
    console.print(outcome_table([(f"wd {config.weight_decay:g}", outcome)],
                                f"{data}: NRC (train) at epoch {outcome['last_epoch']}, "
                                f"÷ drop since epoch {outcome['first_epoch']} "
                                f"({summary['time_s']:.0f} s)"))
    console.print(f"report: {write_report(run_dir)}", highlight=False)
    if json_out is not None:
        write_json(json_out, {"run_dir": str(run_dir), "config": config.to_dict(), **outcome})
        console.print(f"wrote {json_out}", highlight=False)


@regress_app.command("sweep")
def sweep_command(
    data: str = typer.Argument(..., help=DATA_HELP),
    weight_decays: str = typer.Option("0,1e-3,1e-2", help="Weight decays, comma separated "
                                                           "(include 0 for the baseline)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (resumable)."),
    samples: int = SAMPLES, noise: float = NOISE, target_dim: int = TARGET_DIM,
    input_dim: int = INPUT_DIM, spectrum: str = SPECTRUM, policy: Path = POLICY,
    data_seed: int = DATA_SEED, data_opt: list[str] = DATA_OPT, epochs: int = EPOCHS,
    lr: float = LR, momentum: float = MOMENTUM, batch_size: int = BATCH_SIZE,
    widths: str = WIDTHS, log_points: int = LOG_POINTS, seed: int = SEED,
    standardize: bool = STANDARDIZE, activation: str = ACTIVATION, head_bias: bool = HEAD_BIAS,
    milestones: str = MILESTONES, lr_gamma: float = LR_GAMMA,
    device: str = DEVICE, threads: int = THREADS, progress: bool = PROGRESS,
) -> None:
    """Train once per weight decay on the same data; plot NRC1-NRC3 against epoch."""
    from nclab.studies.regression_sweep import SWEEP_JSON, sweep_weight_decay

    values = parse_list(weight_decays, float, "--weight-decays") or ()
    given = given_on_command_line(locals())
    config = regression_run_config(None, False, given)
    set_threads(threads)

    def announce(index: int, weight_decay: float, run_dir: Path) -> None:
        console.print(f"[bold]run {index + 1}/{len(values)}[/]: weight decay {weight_decay:g} "
                      f"-> {run_dir}", highlight=False)

    result = sweep_weight_decay(config, values, out, on_run=announce, device=device,
                                progress=console if progress else False)
    console.print(outcome_table([(f"wd {run['weight_decay']:g}", run) for run in result["runs"]],
                                f"{data}: NRC (train) at the last epoch, ÷ drop since the "
                                "first"))
    console.print(f"wrote {out / SWEEP_JSON}, {out / result['figure']}, "
                  f"{out / result['gamma_figure']}", highlight=False)
