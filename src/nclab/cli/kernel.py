"""``nclab kernel``: the kernel-NC1 sweep of Kothapalli & Tirer on Gaussian data."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TypedDict, cast

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nclab.cli.app import app, console
from nclab.cli.options import integer, list_parser, most_parallel, real
from nclab.core.errors import NCInputError
from nclab.core.io import write_atomic
from nclab.kernels.adaptive import DEFAULT_SIGMA_A
from nclab.studies.kernel_sweep import (
    DEFAULT_SERIES,
    SweepConfig,
    check_sweep_memory,
    report_markdown,
    run_sweep,
)
from nclab.train.config import Setting


class _Preset(TypedDict):
    """The sizes of a sweep preset."""

    sizes: tuple[int, ...]
    dims: tuple[int, ...]
    draws: int
    steps: int


#: The light sweep of ``--quick``; options given explicitly still win.
QUICK: _Preset = {"sizes": (128, 256), "dims": (1, 8, 32), "draws": 3, "steps": 200}
FULL: _Preset = {"sizes": (128, 256, 512, 1024), "dims": (1, 2, 8, 32, 128), "draws": 10,
                 "steps": 500}
JSON_NAME = "kernel_sweep.json"
REPORT_NAME = "kernel_summary.md"


def _sizes(option: str, low: int) -> dict:
    """Keywords of ``typer.Option`` for a non-empty list of integers >= ``low``."""
    return {"parser": list_parser(int, Setting(help="", low=low), option, allow_empty=False),
            "metavar": "LIST"}


def _listed(values: tuple[int, ...]) -> str:
    return ",".join(map(str, values))


@app.command("kernel")
def kernel_command(
    out: Path = typer.Option(Path("kernel_sweep"), "--out", help="Folder for the JSON and the "
                                                                 "figures."),
    sizes: str | None = typer.Option(None, "--sizes", show_default=_listed(FULL["sizes"]),
                                     help="Sample sizes N (>= 4), comma-separated.",
                                     **_sizes("--sizes", low=4)),
    dims: str | None = typer.Option(None, "--dims", show_default=_listed(FULL["dims"]),
                                    help="Input dimensions d0, comma-separated.",
                                    **_sizes("--dims", low=1)),
    draws: int | None = typer.Option(None, "--draws", show_default=str(FULL["draws"]),
                                     help="Data draws per (N, d0).", **integer("--draws")),
    series: str = typer.Option(", ".join(DEFAULT_SERIES), "--series",
                               help="What to measure: <method>-<activation>, method in nngp, "
                                    "ntk, adaptive, network; activation erf or relu."),
    quick: bool = typer.Option(False, "--quick", help="Light sweep: N 128,256; d0 1,8,32; "
                                                      "3 draws; 200 training steps."),
    mean: float = typer.Option(2.0, help="D1 class means are +-mean in every coordinate.",
                               **real("--mean", low=0, low_open=True)),
    std: float = typer.Option(0.5, help="Within-class standard deviation.",
                              **real("--std", low=0, low_open=True)),
    imbalance: float = typer.Option(1.0, help="Class-size ratio n0/n1 (1 = balanced).",
                                    **real("--imbalance", low=0, low_open=True)),
    sigma_w: float = typer.Option(1.0, help="Weight scale of the kernels and the network.",
                                  **real("--sigma-w", low=0, low_open=True)),
    sigma_b: float = typer.Option(0.0, help="Bias scale of the kernels and the network.",
                                  **real("--sigma-b", low=0)),
    adaptive_width: float = typer.Option(500.0, help="Width h of the adaptive kernel.",
                                         **real("--adaptive-width", low=0, low_open=True)),
    sigma_a: float = typer.Option(DEFAULT_SIGMA_A, help="Read-out scale of the adaptive kernel "
                                                        "(sigma_a^2 = 1/128).",
                                  **real("--sigma-a", low=0, low_open=True)),
    noise: float = typer.Option(1e-6, help="sigma^2 of the adaptive kernel.",
                                **real("--noise", low=0, low_open=True)),
    network_width: int = typer.Option(500, help="Hidden width of the trained network.",
                                      **integer("--network-width")),
    lr: float = typer.Option(1.0, help="Learning rate of full-batch gradient descent.",
                             **real("--lr", low=0, low_open=True)),
    steps: int | None = typer.Option(None, show_default=str(FULL["steps"]),
                                     help="Training steps.", **integer("--steps")),
    weight_decay: float = typer.Option(1e-4, help="Weight decay of the network.",
                                       **real("--weight-decay", low=0)),
    seed: int = typer.Option(0, help="Seed of every data draw and initialization.",
                             **integer("--seed", 0)),
    workers: int = typer.Option(min(2, os.cpu_count() or 1), help="Worker processes (one "
                                "torch thread each).",
                                **integer("--workers", high=most_parallel())),
    resume: bool = typer.Option(False, "--resume",
                                help=f"Continue the sweep in --out/{JSON_NAME}."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing sweep."),
) -> None:
    """Sweep N and d0 on D1; write every NC1 value as JSON and plot them."""
    preset = QUICK if quick else FULL
    # typer reads the annotations as text; the list parser gives tuples of integers
    config = SweepConfig(
        sizes=preset["sizes"] if sizes is None else cast(tuple[int, ...], sizes),
        dims=preset["dims"] if dims is None else cast(tuple[int, ...], dims),
        draws=draws if draws is not None else preset["draws"],
        series=tuple(s.strip() for s in series.split(",") if s.strip()),
        mean=mean, std=std, imbalance=imbalance, sigma_w=sigma_w, sigma_b=sigma_b,
        adaptive_width=adaptive_width, sigma_a=sigma_a, noise=noise,
        network_width=network_width, lr=lr,
        steps=steps if steps is not None else preset["steps"], weight_decay=weight_decay,
        seed=seed,
    )
    path = out / JSON_NAME
    if path.exists() and not (resume or overwrite):
        raise NCInputError(f"{path} exists: pass --resume to continue it or --overwrite")
    check_sweep_memory(config, workers)  # before the progress bar starts drawing
    start = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("kernel sweep", total=len(config.tasks()))

        def advance(task: tuple[int, int, int], done: int, total: int) -> None:
            progress.update(bar, completed=done,
                            description=f"N={task[0]} d0={task[1]} draw {task[2]}")

        document = run_sweep(config, checkpoint=path, resume=resume, workers=workers,
                             on_task=advance)
    from nclab.report.kernels import plot_sweep  # matplotlib is slow to import: only here

    figures = plot_sweep(document, out)
    write_atomic(out / REPORT_NAME, report_markdown(document))
    console.print(summary_table(document))
    console.print(f"{len(document['records'])} tasks in {time.perf_counter() - start:.0f} s; "
                  f"wrote {path}, {out / REPORT_NAME}, {', '.join(str(f) for f in figures)}")


def summary_table(document: dict) -> Table:
    """mean log10 NC1 per (N, d0) and series; '!' marks draws that produced no value."""
    summary = document["summary"]
    table = Table(title="mean log10 NC1 over draws  (! = some draws failed, see JSON)",
                  box=box.SIMPLE_HEAD, padding=0, show_edge=False)
    table.add_column("N", justify="right", no_wrap=True)
    table.add_column("d0", justify="right", no_wrap=True)
    for name in summary:  # "nngp-erf" on two lines: ten columns fit 80 characters
        table.add_column(name.replace("-", "\n", 1), justify="right", no_wrap=True)
    first = next(iter(summary.values()))
    for i, row in enumerate(first):
        cells = []
        for rows in summary.values():
            entry = rows[i]
            value = entry["log10_nc1_mean"]
            text = "n/a" if value is None else f"{value:.2f}"  # 8 series fit 80 columns
            cells.append(text + ("!" if entry["failed"] else ""))
        table.add_row(str(row["n"]), str(row["d0"]), *cells)
    return table
