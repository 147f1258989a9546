"""``nclab regress train`` and ``nclab regress sweep``: the paper's MLP trained with MSE.

Both train with the shared trainer (task ``regression``, evaluator ``nrc``): Andriopoulos
et al.'s settings by default (``PRESET``), every option changeable. ``sweep`` runs several
weight decays on the same data and plots NRC1-NRC3 against epoch per value.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.table import Table

from nclab.cli.app import console, regress_app, short, warn
from nclab.cli.options import (
    ConfigChanges,
    Decorator,
    Runtime,
    add_parameters,
    integer,
    list_parser,
    model_shortcuts,
    real,
    runtime_options,
    training_options,
)
from nclab.cli.train import OUT_HELP, build_config
from nclab.core.errors import NCInputError
from nclab.core.io import write_json
from nclab.data import REGRESSION, dataset_names
from nclab.train.config import Setting, TrainConfig, parse_list
from nclab.train.regression import PAPER_SETTINGS

#: Andriopoulos et al.'s settings, 350 epochs.
PRESET = TrainConfig(**{**PAPER_SETTINGS, "epochs": 350})
DATA_HELP = "teacher, reacher, swimmer, hopper, or a .npz file with x and y (--x-key, --y-key)."
#: Fields the regression commands do not offer: the DATA argument names the data set,
#: and class subsets do not apply to real targets.
NOT_OPTIONS = ("task", "dataset", "root", "classes", "per_class", "per_class_test",
               "imbalance", "loss", "evaluators", "options")
DATA = "Data"
OUTCOME_JSON = "outcome.json"


def _option(name: str, default: Any = None, **kwargs: Any) -> Any:
    return typer.Option(default, name, rich_help_panel=kwargs.pop("panel", DATA), **kwargs)


#: name -> (data set option or task option it sets, typer option). None: not given.
REGRESSION_OPTIONS: dict[str, tuple[tuple[str, str], Any]] = {
    "samples": (("dataset_options", "num_samples"), _option(
        "--samples", show_default="teacher 1000, Reacher/Swimmer 1k, Hopper 10k",
        help="Train + test samples.", **integer("--samples", 2))),
    "noise": (("dataset_options", "noise"), _option(
        "--noise", help="Teacher: target noise; MuJoCo: exploration noise.",
        **real("--noise", low=0))),
    "target_dim": (("dataset_options", "target_dim"), _option(
        "--target-dim", show_default="3", help="Teacher: target dimension n.",
        **integer("--target-dim"))),
    "input_dim": (("dataset_options", "input_dim"), _option(
        "--input-dim", show_default="16", help="Teacher: input dimension.",
        **integer("--input-dim"))),
    "spectrum": (("dataset_options", "target_cov"), _option(
        "--spectrum", help="Teacher: eigenvalues of the target covariance, comma separated.",
        parser=list_parser(float, Setting(help="", low=0, low_open=True), "--spectrum"),
        metavar="LIST")),
    "policy": (("dataset_options", "policy_file"), _option(
        "--policy", help="Hopper: the expert's policy .npz (read, or written).")),
    "data_seed": (("dataset_options", "seed"), _option(
        "--data-seed", show_default="0", help="Seed of the data.", **integer("--data-seed", 0))),
    "x_key": (("dataset_options", "x_key"), _option(
        "--x-key", show_default="x", help="A .npz DATA: the key of the inputs.")),
    "y_key": (("dataset_options", "y_key"), _option(
        "--y-key", show_default="y", help="A .npz DATA: the key of the targets.")),
    "standardize": (("options", "standardize_targets"), _option(
        "--standardize-targets/--raw-targets", panel="Training", show_default="raw",
        help="Scale each target column to unit variance.")),
    "head_bias": (("options", "head_bias"), _option(
        "--head-bias/--no-head-bias", panel="Training", show_default="head-bias",
        help="Give the last layer a bias b.")),
}


def regression_options() -> Decorator:
    """Decorator: the DATA argument and the options of ``REGRESSION_OPTIONS``; they go
    into the command's ``changes``."""
    names = list(REGRESSION_OPTIONS)
    hints = {"spectrum": str | None, "policy": str | None, "x_key": str | None,
             "y_key": str | None, "standardize": bool | None, "head_bias": bool | None,
             "noise": float | None}
    parameters = [inspect.Parameter("data", inspect.Parameter.KEYWORD_ONLY, annotation=str,
                                    default=typer.Argument(..., help=DATA_HELP))]
    parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                     annotation=hints.get(name, int | None),
                                     default=REGRESSION_OPTIONS[name][1]) for name in names]

    def collect(values: dict[str, Any], kwargs: dict[str, Any]) -> None:
        changes: ConfigChanges = kwargs["changes"]
        kwargs["data"] = values.pop("data")
        dataset, root = data_set(kwargs["data"])
        changes.set("dataset", dataset)
        changes.set("root", root)
        for name, value in values.items():
            (kind, key), _ = REGRESSION_OPTIONS[name]
            if isinstance(value, tuple):
                value = list(value)
            changes.set_option(kind, key, str(value) if isinstance(value, Path) else value)

    return lambda func: add_parameters(func, parameters, collect, provides=("data",))


def data_set(data: str) -> tuple[str, str | None]:
    """(data set name, root) of the DATA argument: a generated set or a .npz file."""
    generated = [name for name in dataset_names(REGRESSION) if name != "npz_targets"]
    if data in generated:
        return data, None
    if not Path(data).is_file():
        raise NCInputError(f"'{data}' is neither a data set ({', '.join(generated)}) "
                           "nor an existing .npz file")
    return "npz_targets", data


def outcome_table(outcomes: list[tuple[str, dict[str, Any]]], title: str) -> Table:
    """Train NRC values at the last logged epoch, ÷ first / last (the drop), and the fit.

    Two rows per run: the features h/||h|| of the definitions, and the centred features.
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
@training_options(PRESET, exclude=NOT_OPTIONS)
@model_shortcuts(("widths", "activation"), PRESET)
@regression_options()
@runtime_options()
def train_command(
    *,
    data: str,
    changes: ConfigChanges,
    runtime: Runtime,
    out: Path = typer.Option(None, "--out", help=OUT_HELP, show_default="runs/regress-DATA-wdWD"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    json_out: Path = typer.Option(None, "--json", hidden=True),
) -> None:
    """Train the paper's MLP with MSE and weight decay, logging NRC1-NRC3 over epochs."""
    from nclab.report import write_report
    from nclab.report.regression import regression_outcome
    from nclab.runs import load_run
    from nclab.train import Trainer

    config = build_config(out, resume, changes, PRESET)
    out = out or Path("runs") / f"regress-{Path(data).stem}-wd{config.weight_decay:g}"
    runtime.apply_threads(console)
    summary = Trainer(config, out, device=runtime.device, threads=runtime.threads,
                      progress=console if runtime.progress else False).fit(resume=resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    outcome = regression_outcome(load_run(out))
    console.print(outcome_table([(f"wd {config.weight_decay:g}", outcome)],
                                f"{data}: NRC (train) at epoch {outcome['last_epoch']}, "
                                f"÷ drop since epoch {outcome['first_epoch']} "
                                f"({summary['time_s']:.0f} s)"))
    console.print(f"report: {write_report(out)}", highlight=False)
    document = {"run_dir": str(out), "config": config.to_dict(), **outcome}
    write_json(out / OUTCOME_JSON, document)
    console.print(f"wrote {out / OUTCOME_JSON}", highlight=False)
    if json_out is not None:
        warn(f"--json is deprecated and will be removed: the outcome is in {out / OUTCOME_JSON}")
        write_json(json_out, document)


@regress_app.command("sweep")
@training_options(PRESET, exclude=(*NOT_OPTIONS, "weight_decay"))
@model_shortcuts(("widths", "activation"), PRESET)
@regression_options()
@runtime_options()
def sweep_command(
    *,
    data: str,
    changes: ConfigChanges,
    runtime: Runtime,
    weight_decays: str = typer.Option("0,1e-3,1e-2", rich_help_panel="Training",
                                      help="Weight decays, comma separated (include 0 for "
                                           "the baseline)."),
    out: Path = typer.Option(None, "--out", "-o", show_default="runs/regress-sweep-DATA",
                             help="Output folder (resumable)."),
) -> None:
    """Train once per weight decay on the same data; plot NRC1-NRC3 against epoch."""
    from nclab.studies.regression_sweep import SWEEP_JSON, sweep_weight_decay

    values = parse_list(weight_decays, float, "--weight-decays") or ()
    config = changes.apply(PRESET)
    out = out or Path("runs") / f"regress-sweep-{Path(data).stem}"
    runtime.apply_threads(console)

    def announce(index: int, weight_decay: float, run_dir: Path) -> None:
        console.print(f"[bold]run {index + 1}/{len(values)}[/]: weight decay {weight_decay:g} "
                      f"-> {run_dir}", highlight=False)

    result = sweep_weight_decay(config, values, out, on_run=announce, device=runtime.device,
                                threads=runtime.threads,
                                progress=console if runtime.progress else False)
    console.print(outcome_table([(f"wd {run['weight_decay']:g}", run) for run in result["runs"]],
                                f"{data}: NRC (train) at the last epoch, ÷ drop since the "
                                "first"))
    console.print(f"wrote {out / SWEEP_JSON}, {out / result['figure']}, "
                  f"{out / result['gamma_figure']}", highlight=False)
