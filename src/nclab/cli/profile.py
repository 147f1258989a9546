"""``nclab profile``: collapse layer by layer of a trained run (profile.json, profile.png)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from nclab.cli.app import app, console, short
from nclab.cli.options import Runtime, integer, runtime_options
from nclab.runs import shown_path, shown_text
from nclab.studies.layer_profile import profile_run
from nclab.train.layers import evenly_spaced


@app.command("profile")
@runtime_options(progress=False)
def profile_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by nclab train."),
    out: Path = typer.Option(None, help="Output folder.", show_default="the run directory"),
    split: str = typer.Option("train", help="The split measured: train or test."),
    layer: list[str] = typer.Option(None, help="A module name to measure (repeatable; "
                                               "default: every stage of the network)."),
    point: str = typer.Option("output", help="Measure each layer's output or input."),
    batch_size: int = typer.Option(None, help="Samples per forward pass.",
                                   show_default="the run's eval batch size",
                                   **integer("--batch-size")),
    *,
    runtime: Runtime,
) -> None:
    """NC1 and NC1_trace at every stage of a trained network, in depth order."""
    runtime.apply_threads()
    json_path, png_path, result = profile_run(run_dir, out, split=split, layers=layer or None,
                                              point=point, device=runtime.device,
                                              batch_size=batch_size)
    # names are the user's: printed as they are (no rich markup), one line each
    table = Table(title=escape(f"{shown_path(run_dir)} ({split})"))
    for column in ("layer", "point", "d", "nc1", "nc1_trace"):
        table.add_column(column, justify="left" if column in ("layer", "point") else "right")
    for name, where, metrics in zip(result.names, result.points, result.metrics, strict=True):
        table.add_row(escape(shown_text(name)), escape(where), str(metrics.dim),
                      short(metrics.nc1), short(metrics.nc1_trace))
    console.print(table)
    document = json.loads(json_path.read_text())
    fit = document.get("separation")
    if fit is not None:
        console.print(f"law of data separation: D_l = C nc1_l falls by a ratio of "
                      f"{fit['decay_ratio']:.3g} per layer (Pearson r of l and log D_l "
                      f"{fit['pearson_r']:.4f}); figure "
                      f"{shown_path(json_path.parent / fit['figure'])}",
                      highlight=False, markup=False, soft_wrap=True)
    print_history(document, json_path.parent)
    console.print(f"wrote {shown_path(json_path)} and {shown_path(png_path)}", highlight=False,
                  markup=False, soft_wrap=True)


#: At most this many logged epochs are printed (evenly spaced, the first and last kept).
SHOWN_EPOCHS = 12


def print_history(document: dict[str, Any], folder: Path) -> None:
    """The law of data separation at the logged epochs: a short table and the figure's
    name, or the one line saying why there is none."""
    history = document.get("separation_by_epoch")
    if history is None:
        console.print(f"no fit per logged epoch: {document.get('separation_by_epoch_error')}",
                      highlight=False, markup=False, soft_wrap=True)
        return
    entries = history["epochs"]
    table = Table(title="law of data separation at the logged epochs")
    for column in ("epoch", "decay ratio", "Pearson r", "D_1", "D_L"):
        table.add_column(column, justify="right")
    for entry in evenly_spaced(entries, SHOWN_EPOCHS):
        if "error" in entry:
            table.add_row(str(entry["epoch"]), escape(entry["error"]), "", "", "")
        else:
            table.add_row(str(entry["epoch"]), short(entry["decay_ratio"]),
                          short(entry["pearson_r"], 4), short(entry["D"][0]),
                          short(entry["D"][-1]))
    console.print(table)
    shown = min(len(entries), SHOWN_EPOCHS)
    console.print(f"{shown} of {len(entries)} logged epochs shown; all in profile.json "
                  f"(separation_by_epoch), figure {shown_path(folder / history['figure'])}",
                  highlight=False, markup=False, soft_wrap=True)

