"""``nclab report`` and ``nclab compare``: figures and HTML of training runs."""

from __future__ import annotations

from pathlib import Path

import typer

from nclab.cli.app import app, console
from nclab.report import write_comparison, write_report
from nclab.runs import shown_path


@app.command("report")
def report_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by nclab train."),
    out: Path = typer.Option(None, help="Output folder (default: the run directory)."),
) -> None:
    """Write report.html and the collapse figures of one run."""
    path = write_report(run_dir, out)
    console.print(f"report: {shown_path(path)}", highlight=False, markup=False, soft_wrap=True)


@app.command("compare")
def compare_command(
    run_dirs: list[Path] = typer.Argument(..., help="Run directories to overlay."),
    out: Path = typer.Option(Path("compare"), help="Output folder."),
    label: list[str] = typer.Option(None, help="Legend label of each run, in order "
                                               "(repeatable; default: folder names)."),
) -> None:
    """Overlay the collapse curves of several runs (compare.png, compare.html)."""
    path = write_comparison(run_dirs, out, label or None)
    console.print(f"comparison: {shown_path(path)}", highlight=False, markup=False,
                  soft_wrap=True)
