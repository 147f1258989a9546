"""HTML reports with figures of training runs: ``write_report`` and ``write_comparison``.

``nclab.report.style`` holds the plotting style every nclab figure shares.
"""

from __future__ import annotations

import html
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nclab.core.errors import NCInputError
from nclab.core.io import make_dirs, write_atomic
from nclab.core.metric_info import METRICS
from nclab.report.figures import PANELS, collapse_panel, nc1_figure
from nclab.report.pages import (
    html_bytes,
    lacks_note,
    page,
    run_status,
    run_title,
    settings_table,
    skipped_note,
    table,
)
from nclab.report.profile import profile_section
from nclab.runs import RunLogWarning, RunRecord, collect_notes, load_run, shown_path, skipped_line

PANEL_PNG, NC1_PNG, REPORT_HTML = "collapse.png", "nc1.png", "report.html"
COMPARE_PNG, COMPARE_HTML = "compare.png", "compare.html"

#: Columns of ``nclab train``'s rows besides the ``train_<metric>``/``test_<metric>`` ones.
TRAINER_COLUMNS = ("epoch", "lr", "train_loss_running", "train_loss", "train_error",
                   "test_loss", "test_error", "tpt_onset", "time_s")
#: Columns the headline reads; a log without them is told so.
HEADLINE_COLUMNS = ("tpt_onset", "train_nc1", "train_error", "test_error")


def _headline(run: RunRecord) -> list[tuple[str, Any]]:
    """(name, value) pairs of the headline table; None where the log lacks the value."""
    onset = run.tpt_onset
    last = run.rows[-1]
    nc1_onset = run.value_at("train_nc1", onset) if onset is not None else None
    nc1_last = run.value_at("train_nc1", last["epoch"])
    drop = nc1_onset / nc1_last if nc1_onset and nc1_last else None
    reached = onset if onset is not None else ("not reached" if "tpt_onset" in last else None)
    return [
        ("status", run_status(run)),
        ("TPT onset (first epoch with zero training error)", reached),
        ("train NC1 at the TPT onset", nc1_onset),
        (f"train NC1 at epoch {last['epoch']}", nc1_last),
        ("NC1 drop since the onset (x)", drop),
        ("final train error", last.get("train_error")),
        ("final test error", last.get("test_error")),
        ("training time (s)", last.get("time_s")),
    ]


#: Metrics of the classifier's weights alone: the same on every split, shown once.
WEIGHT_METRICS = tuple(name for name, info in METRICS.items() if info.weights_only)
#: The metrics of the report's tables, in the order of the definitions.
REPORTED_METRICS = tuple(METRICS)


def _metric_tables(run: RunRecord) -> str:
    """The collapse metrics (definitions §1) of the last row (train and test; the classifier's
    own geometry once), then any other columns. Metrics absent from both splits are left out."""
    last = run.rows[-1]
    final = [(name, last.get(f"train_{name}"), last.get(f"test_{name}"), METRICS[name].better())
             for name in REPORTED_METRICS if name not in WEIGHT_METRICS
             and (last.get(f"train_{name}") is not None or last.get(f"test_{name}") is not None)]
    weights = [(name, next((last[f"{split}_{name}"] for split in ("train", "test")
                            if last.get(f"{split}_{name}") is not None), None),
                METRICS[name].better())
               for name in WEIGHT_METRICS]
    weights = [row for row in weights if row[1] is not None]
    known = {*TRAINER_COLUMNS, *(f"{split}_{name}" for name in REPORTED_METRICS
                                 for split in ("train", "test"))}
    other = [(key, value) for key, value in last.items() if key not in known]
    text = ""
    if final:
        text += (f"<h2>Metrics at epoch {last['epoch']}</h2>"
                 + table(("metric", "train", "test", "better"), final))
    if weights:
        text += ("<h2>Geometry of the classifier's weights</h2><p>These depend on W "
                 "alone, not on the samples: one value for every split.</p>"
                 + table(("metric", "value", "better"), weights))
    if other:
        text += (f"<h2>Other columns at epoch {last['epoch']}</h2>"
                 + table(("column", "value"), other))
    return text


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write report.html, collapse.png and nc1.png for one run; return the HTML path.

    A regression run gets :func:`nclab.report.regression.write_regression_report`. Any
    folder with a metrics log can be reported (``nclab.runs`` gives the format: an
    ``epoch`` column plus any metric columns; config.json and summary.json optional):
    the report shows what the log holds and says what it lacks.

    Parameters
    ----------
    run_dir : path
        A run directory written by the trainer.
    out : path, optional
        Output folder; default ``run_dir``.
    """
    run = load_run(run_dir, warn=False)
    out = Path(out) if out is not None else run.path
    make_dirs(out)
    if run.config.get("task") == "regression":
        from nclab.report.regression import write_regression_report

        return write_regression_report(run_dir, out)
    title = run_title(run)
    with collect_notes() as drawing:
        collapse_panel([run], out / PANEL_PNG, title=title)
        nc1_figure([run], out / NC1_PNG)
        profile = profile_section(run.path, out)
    tell_skipped([*run.notes, *drawing])
    headline = [(name, value) for name, value in _headline(run) if value is not None]
    settings = (("<h2>Configuration</h2>" + settings_table(("setting", "value"),
                                                           sorted(run.config.items())))
                if run.config else "")
    body = (
        f"<p>Run directory: <code>{html.escape(shown_path(run.path))}</code></p>"
        + "<h2>Summary</h2>" + table(("quantity", "value"), headline)
        + lacks_note(run, HEADLINE_COLUMNS, drawing=drawing)
        + f"<img src='{PANEL_PNG}' alt='collapse curves'>"
        + _metric_tables(run)
        + f"<img src='{NC1_PNG}' alt='NC1' style='max-width:600px'>"
        + profile
        + settings
        + "<p>Every logged epoch: <code>metrics.csv</code>, <code>metrics.jsonl</code>.</p>"
    )
    path = out / REPORT_HTML
    write_atomic(path, html_bytes(page(f"nclab report: {title}", body)))
    return path


def tell_skipped(notes: Sequence[str]) -> None:
    """Say in ONE RunLogWarning what a report skipped (the page lists it all)."""
    if notes:
        warnings.warn(skipped_line(notes), RunLogWarning, stacklevel=3)


def write_comparison(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike,
                     labels: Sequence[str] | None = None) -> Path:
    """Overlay several runs: compare.png (the panel) and compare.html in ``out``."""
    if labels is not None and len(labels) != len(run_dirs):
        raise NCInputError(f"{len(labels)} labels for {len(run_dirs)} runs")
    runs = [load_run(path, labels[i] if labels else None, warn=False)
            for i, path in enumerate(run_dirs)]
    out = Path(out)
    make_dirs(out)
    with collect_notes() as drawing:
        collapse_panel(runs, out / COMPARE_PNG, title="comparison")
    notes = [*(note for run in runs for note in run.notes), *drawing]
    tell_skipped(notes)
    keys = sorted({key for run in runs for key in run.config
                   if len({repr(r.config.get(key)) for r in runs}) > 1})
    header = ["run", *[name for name, _ in _headline(runs[0])]]
    rows = [[run.label, *[value for _, value in _headline(run)]] for run in runs]
    body = (
        table(header, rows)
        + skipped_note(notes)
        + f"<img src='{COMPARE_PNG}' alt='collapse curves of every run'>"
        + "<h2>Settings that differ</h2>"
        + settings_table(["setting", *[r.label for r in runs]],
                         [[key, *[r.config.get(key) for r in runs]] for key in keys])
    )
    path = out / COMPARE_HTML
    write_atomic(path, html_bytes(page("nclab comparison", body)))
    return path


__all__ = ["PANELS", "RunRecord", "load_run", "write_comparison", "write_report"]
