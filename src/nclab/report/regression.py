"""Figures and the HTML report of regression runs (definitions §5), in the report style.

- :func:`nrc_figure`: NRC1, NRC2 and NRC3 against epoch (log scales), one run or several
  overlaid (a weight-decay sweep: one colour per run, train solid, test dashed).
- :func:`gamma_figure`: NRC3 of the final W as a function of gamma, the chosen gamma marked.
- :func:`write_regression_report`: report.html, nrc.png and gamma.png of one run.

NRC3 is not a column of the logged rows: it is computed here from the logged W W^T and
Sigma at the gamma of the last logged W (:func:`nclab.histories.nrc3_history`).
"""

from __future__ import annotations

import html
import os
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from nclab.core.errors import NCInputError
from nclab.core.io import make_dirs, write_atomic
from nclab.histories import nrc3_history, nrc_drops
from nclab.report import REPORT_HTML, tell_skipped
from nclab.report.figures import Panel, run_panels
from nclab.report.pages import html_bytes, lacks_note, page, run_status, run_title, table
from nclab.report.style import (
    color,
    drawable,
    figure_notes,
    figure_style,
    note_empty,
    panel_grid,
    plain,
    save_png,
)
from nclab.runs import RunLogWarning, RunRecord, collect_notes, is_number, load_run, shown_path

NRC_PNG, GAMMA_PNG = "nrc.png", "gamma.png"

NRC_PANELS = (
    Panel("NRC1 (train): off the top-n PCA subspace",
          (("train_nrc1", "h/‖h‖ (definitions)"), ("train_nrc1_centred", "centred h"))),
    Panel("NRC2 (train): off the row space of W",
          (("train_nrc2", "h/‖h‖ (definitions)"), ("train_nrc2_centred", "centred h"))),
    Panel(r"NRC3: $WW^\top$ vs $\Sigma^{1/2} - \gamma^{1/2} I$",
          (("nrc3", "γ of the final W"),)),
)
LOSS_PANEL = Panel("MSE", (("train_mse", "train"), ("test_mse", "test")))
#: Values reported at the first and last logged epochs.
OUTCOME_KEYS = ("train_nrc1", "train_nrc2", "nrc3", "train_nrc1_centred", "train_nrc2_centred",
                "test_nrc1", "test_nrc2", "train_mse", "test_mse", "train_r2", "test_r2")
#: Columns the page is read by; a log without them is told so.
HEADLINE_COLUMNS = ("train_nrc1", "train_nrc2", "head_gram", "target_cov", "train_mse",
                    "test_mse")
#: Settings the title names besides the model and the data set.
TITLE_SETTINGS = (("weight_decay", "weight decay"),)
#: The logged n x n matrices NRC3 is computed from.
MATRIX_KEYS = ("head_gram", "target_cov")


def computable(run: RunRecord) -> RunRecord:
    """A copy of ``run`` whose rows hold a number (or None) in each of ``OUTCOME_KEYS`` and
    square matrices of numbers in ``MATRIX_KEYS``; other values (a hand-written or damaged
    log) are left out, told in one RunLogWarning."""
    rows, left_out = [], 0
    for row in run.rows:
        wrong = [key for key in OUTCOME_KEYS if row.get(key) is not None
                 and not is_number(row[key])]
        wrong += [key for key in MATRIX_KEYS if row.get(key) is not None
                  and not _is_square(row[key])]
        left_out += len(wrong)
        rows.append({key: value for key, value in row.items() if key not in wrong})
    if left_out:
        warnings.warn(f"{shown_path(run.path)}: {left_out} value(s) of {', '.join(OUTCOME_KEYS)} "
                      f"or {', '.join(MATRIX_KEYS)} that are not numbers (or square matrices "
                      "of numbers) left out", RunLogWarning, stacklevel=2)
    return replace(run, rows=rows)


def _is_square(value: Any) -> bool:
    return (isinstance(value, list) and all(isinstance(line, list) and len(line) == len(value)
                                            and all(is_number(x) for x in line)
                                            for line in value))


def _nrc3_history(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """:func:`nclab.core.regression.nrc3_history`, with a warning instead of the values
    when the logged matrices are of different sizes or too large for float64."""
    try:
        with np.errstate(all="ignore"):
            return nrc3_history(rows)
    except (NCInputError, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        return {"warning": f"nrc3 not computed from the logged matrices ({exc})"}


def with_nrc3(run: RunRecord) -> tuple[RunRecord, dict[str, Any]]:
    """A copy of ``run`` whose rows have ``nrc3`` (the definitions' gamma), and that history."""
    run = computable(run)
    history = _nrc3_history(run.rows)
    values = dict(zip(history.get("epoch", []), history.get("nrc3", []), strict=True))
    rows = [{**row, "nrc3": values.get(row["epoch"])} for row in run.rows]
    return replace(run, rows=rows), history


def nrc_figure(runs: Sequence[RunRecord], path: str | os.PathLike, title: str | None = None,
               loss: bool = False) -> None:
    """Save NRC1-NRC3 (and the MSE with ``loss``) against epoch as a PNG, log scales."""
    panels = (*NRC_PANELS, LOSS_PANEL) if loss else NRC_PANELS
    with figure_style(), figure_notes(path):
        runs = [with_nrc3(run)[0] for run in runs]
        fig = run_panels(panels, runs)
        if title:
            fig.suptitle(plain(title), fontsize=11)
        save_png(fig, path)


def gamma_figure(runs: Sequence[RunRecord], path: str | os.PathLike) -> None:
    """Save NRC3 of each run's final W against gamma in (0, lambda_min), log scales."""
    with figure_style(), figure_notes(path):
        fig, (ax,) = panel_grid(1, size=(6.0, 4.0))
        for r, run in enumerate(runs):
            history = _nrc3_history(computable(run).rows)
            if "curve" not in history:
                continue
            gamma, nrc3 = (np.asarray(history["curve"][key], dtype=float)
                           for key in ("gamma", "nrc3"))
            keep = drawable(gamma, log=True) & drawable(nrc3, log=True)
            ax.plot(gamma[keep], nrc3[keep], color=color(r), label=plain(run.label))
            chosen = np.asarray([history["gamma"], history["nrc3"][-1]], dtype=float)
            if drawable(chosen, log=True).all():
                ax.plot(*chosen[:, None], color=color(r), marker="o", markersize=6,
                        linestyle="none")
        if ax.get_lines() and any(np.size(line.get_xdata()) for line in ax.get_lines()):
            ax.set_xscale("log")
            ax.set_yscale("log")
        else:
            note_empty(ax, "no NRC3 curve to draw")
        ax.set_xlabel(r"$\gamma$ (up to $\lambda_{\min}$ of $\Sigma$)")
        ax.set_ylabel("NRC3 of the final W")
        ax.set_title("NRC3 against γ at the last epoch (dot: the γ used)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best")
        save_png(fig, path)


def regression_outcome(run: RunRecord) -> dict[str, Any]:
    """The numbers a regression run is judged by: first and last NRC values, drops, fit."""
    run, history = with_nrc3(run)
    first, last = run.rows[0], run.rows[-1]
    keys = OUTCOME_KEYS
    return {
        "first_epoch": first["epoch"], "last_epoch": last["epoch"],
        "first": {key: first.get(key) for key in keys},
        "last": {key: last.get(key) for key in keys},
        "drop": nrc_drops(run.rows, history),
        "gamma": history.get("gamma"), "lambda_min": history.get("lambda_min"),
        "nrc3_warning": history.get("warning"),
    }


def write_regression_report(run_dir: str | os.PathLike,
                            out: str | os.PathLike | None = None) -> Path:
    """Write report.html, nrc.png and gamma.png for one regression run; return the HTML."""
    run = load_run(run_dir, warn=False)
    out = Path(out) if out is not None else run.path
    make_dirs(out)
    cfg = run.config
    title = run_title(run, TITLE_SETTINGS)
    with collect_notes() as drawing:
        run = computable(run)  # once: the figures and the table find nothing more to say
        nrc_figure([run], out / NRC_PNG, title=title, loss=True)
        gamma_figure([run], out / GAMMA_PNG)
        outcome = regression_outcome(run)
    tell_skipped([*run.notes, *drawing])
    rows = [(name, outcome["first"][name], outcome["last"][name],
             outcome["drop"].get(name.removeprefix("train_"))) for name in OUTCOME_KEYS
            if outcome["first"][name] is not None or outcome["last"][name] is not None]
    headline = [("status", run_status(run)),
                ("γ of NRC3 (searched on the final W)", outcome["gamma"]),
                ("λ_min of Σ", outcome["lambda_min"])]
    if outcome["nrc3_warning"]:
        headline.append(("NRC3", outcome["nrc3_warning"]))
    headline = [(name, value) for name, value in headline if value is not None]
    body = (
        f"<p>Run directory: <code>{html.escape(shown_path(run.path))}</code></p>"
        + table(("", ""), headline)
        + lacks_note(run, HEADLINE_COLUMNS, TITLE_SETTINGS, drawing)
        + f"<img src='{NRC_PNG}' alt='NRC curves'>"
        + table(("metric", f"epoch {outcome['first_epoch']}",
                  f"epoch {outcome['last_epoch']}", "first / last"), rows)
        + f"<img src='{GAMMA_PNG}' alt='NRC3 against gamma' style='max-width:600px'>"
        + "<h2>Configuration</h2>"
        + table(("key", "value"), sorted(cfg.items()))
        + "<p>Every logged epoch: <code>metrics.csv</code>, <code>metrics.jsonl</code>; "
          "NRC3 per epoch: <code>summary.json</code>.</p>"
    )
    path = out / REPORT_HTML
    write_atomic(path, html_bytes(page(f"nclab regression report: {title}", body)))
    return path
