"""``nclab finegrained``: train on superclasses, recover the fine labels (definitions §6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from nclab.cli.app import app, console, value_table
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
from nclab.studies.finegrained import (
    PROJECTION_PNG,
    RECOVERY_PNG,
    RESULT_JSON,
    comparison_configs,
    run_comparison,
)
from nclab.train.config import TrainConfig
from nclab.train.finegrained import TERMINAL_DROP, TERMINAL_NC1, TerminalPhase


def print_result(summary: dict[str, Any], out: Path) -> None:
    lines = [
        ("recovered fine accuracy", summary["recovered_test_accuracy"]),
        ("fine-trained baseline accuracy", summary["baseline_test_accuracy"]),
        ("ratio recovered / baseline", summary["ratio"]),
        ("superclass accuracy (upper bound)", summary["coarse_test_accuracy"]),
        ("superclass training error", summary["coarse_train_error"]),
        ("first epoch with zero superclass training error", summary["coarse_tpt_onset"]),
        ("chance (1 / fine classes per superclass)", summary["chance_accuracy"]),
        ("recovered fine accuracy, train", summary["recovered_train_accuracy"]),
        ("NC1, coarse labels (coarse model, train)", summary["coarse_nc1"]),
        ("NC1, fine labels (coarse model, train)", summary["fine_nc1"]),
        ("NC1, fine labels (fine model, train)", summary["baseline_nc1"]),
    ]
    console.print(value_table("fine-label recovery (test set unless noted)", lines,
                              fmt=".4g", missing="never", header=False))
    console.print(terminal_line(summary), highlight=False)
    for note in summary["recovery"]["warnings"]:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    console.print(f"wrote {out / RESULT_JSON}, {out / RECOVERY_PNG}, {out / PROJECTION_PNG}",
                  highlight=False)


def terminal_line(summary: dict[str, Any]) -> str:
    """Whether the final coarse model is in the terminal phase (the one demanded with
    --until-collapse, else the default definition), in one line."""
    until = summary.get("until_collapse")
    phase = until or summary["terminal_phase"]
    epoch, nc1, onset = phase["final_epoch"], phase["nc1_final"], phase["nc1_at_onset"]
    state = (f"coarse train nc1 {nc1:.4g} at epoch {epoch}" if nc1 is not None
             else f"no coarse train nc1 at epoch {epoch}")
    if onset is not None:
        state += f", {onset:.4g} at the TPT onset (epoch {phase['tpt_onset']})"
    else:
        state += ", no TPT onset (the superclass training error never reached zero)"
    demand = (f"zero training error, nc1 <= {phase['nc1_threshold']:g}, "
              f">= {phase['drop_required']:g}x below the onset")
    if phase["reached"]:
        how = (f"stopped at epoch {epoch} of {summary['epochs']}" if until
               and until["stopped_early"] else f"at epoch {epoch}")
        return f"[green]terminal phase reached[/] ({demand}) {how}: {state}"
    budget = f" within the {summary['epochs']}-epoch budget" if until else ""
    return (f"[bold yellow]terminal phase NOT reached{budget}[/] ({demand}): {state}; "
            "the recovery above is not measured in the terminal phase")


#: The preset of ``nclab finegrained``: the 1-D CNN, 30 epochs, 12 logged epochs.
PRESET = TrainConfig(model="cnn1d", epochs=30, log_points=12)
FINE = "Fine-grained"


@app.command("finegrained")
@training_options(PRESET, exclude=("task", "evaluators", "options"))
@model_shortcuts(("widths",))
@runtime_options()
def finegrained_command(
    *,
    changes: ConfigChanges,
    runtime: Runtime,
    pairing: str = typer.Option("mod", rich_help_panel=FINE,
                                help="How fine classes form superclasses: mod (y -> y mod "
                                     "K'), random, explicit."),
    num_coarse: int = typer.Option(None, rich_help_panel=FINE, show_default="5",
                                   **integer("--num-coarse"),
                                   help="K', the number of superclasses (read from the map "
                                        "with --pairing explicit)."),
    coarse_map: str = typer.Option(None, rich_help_panel=FINE,
                                   help="Explicit map, e.g. '0:0,1:0,2:1,3:1' or '0,0,1,1'."),
    pairing_seed: int = typer.Option(0, rich_help_panel=FINE, help="Seed of --pairing random.",
                                     **integer("--pairing-seed", 0)),
    n_init: int = typer.Option(10, rich_help_panel=FINE, help="k-means restarts per superclass.",
                               **integer("--n-init")),
    superclass: int = typer.Option(0, rich_help_panel=FINE,
                                   help="Superclass shown in the projection figure.",
                                   **integer("--superclass", 0)),
    out: Path = typer.Option(None, "--out", show_default="runs/finegrained-DATASET-MODEL-seedN",
                             help="Output folder: coarse/ and fine/ runs, JSON, figures."),
    resume: bool = typer.Option(False, "--resume", help="Continue interrupted runs in --out."),
    until_collapse: float = typer.Option(
        None, "--until-collapse", rich_help_panel=FINE, **real("--until-collapse", low=0,
                                                               low_open=True),
        help=f"Stop the coarse run at the first logged epoch in the terminal phase: zero "
             f"training error and coarse train nc1 <= this (the terminal phase: "
             f"{TERMINAL_NC1:g}) and --collapse-drop times below its TPT-onset value; "
             "--epochs is the budget. Log more epochs (--log-points) to stop sooner."),
    collapse_drop: float = typer.Option(
        TERMINAL_DROP, "--collapse-drop", rich_help_panel=FINE,
        **real("--collapse-drop", low=1),
        help="With --until-collapse: how many times below its TPT-onset value the coarse "
             "train nc1 must be (1: no such condition)."),
) -> None:
    """Train on superclass labels and on the fine labels; recover the fine labels from the
    coarse model's features by k-means inside each superclass; compare the two."""
    runtime.apply_threads(console)
    base = changes.apply(PRESET)
    options: dict[str, Any] = {"coarse_pairing": pairing, "coarse_seed": pairing_seed,
                               "recovery_n_init": n_init, "recovery_threads": runtime.threads}
    if coarse_map is not None:
        options["coarse_map"] = coarse_map
    if num_coarse is not None or pairing != "explicit":
        options["num_coarse"] = 5 if num_coarse is None else num_coarse
    if superclass < 0 or superclass >= options.get("num_coarse", superclass + 1):
        raise NCInputError(f"--superclass must be a superclass, in 0..K'-1 (K' = "
                           f"{options.get('num_coarse', 'the number of superclasses')}); "
                           f"got {superclass}")
    until = TerminalPhase(until_collapse, collapse_drop) if until_collapse is not None else None
    coarse_config, fine_config = comparison_configs(base, options)
    out = out or Path("runs") / f"finegrained-{base.dataset}-{base.model}-seed{base.seed}"
    summary = run_comparison(coarse_config, fine_config, out, superclass=superclass,
                             resume=resume, device=runtime.device, threads=runtime.threads,
                             progress=console if runtime.progress else False,
                             announce=lambda text: console.print(text, highlight=False),
                             until_collapse=until)
    print_result(summary, out)
