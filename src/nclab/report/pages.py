"""The HTML pieces every report page shares: one style sheet, tables, run status."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from nclab.runs import RunRecord

_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%}code{background:#f3f3f3;padding:1px 4px}"""


def cell(value: Any) -> str:
    """A value as table-cell text: 4 significant digits, "n/a" for None."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{body}</body></html>\n")


def run_status(run: RunRecord) -> str:
    epochs = run.config.get("epochs")
    done = run.rows[-1]["epoch"]
    if run.summary is None:
        return f"in progress or interrupted: last logged epoch {done} of {epochs}"
    if run.summary.get("status") == "diverged":
        return f"diverged in epoch {run.summary.get('diverged_epoch')}"
    return f"complete: {run.summary.get('epochs_done')} epochs"
