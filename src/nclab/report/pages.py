"""The HTML pieces every report page shares: one style sheet, tables, run status."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from nclab.core.tables import cell as cell  # re-exported: pages wrote cells first
from nclab.core.tables import html_table
from nclab.runs import RunRecord

_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%}code{background:#f3f3f3;padding:1px 4px}"""


def setting_text(value: Any) -> str:
    """A config value as people write it: ``0.3333, 0.6667`` for a list, ``widths 256,
    256, 256; batch_norm true`` for a dict, ``default`` for None (the setting's default
    applies: all classes, every sample...), numbers with at most 4 significant digits."""
    if value is None:
        return "default"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(setting_text(item) for item in value) if value else "none"
    if isinstance(value, dict):
        return "; ".join(f"{key} {setting_text(item)}" for key, item in value.items()) \
            if value else "none"
    return str(value)


def settings_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """:func:`table` with every cell after the first written by :func:`setting_text`."""
    return table(header, [[row[0], *(setting_text(v) for v in row[1:])] for row in rows])


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table (:func:`nclab.core.tables.html_table`)."""
    return html_table(header, rows)


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{body}</body></html>\n")


def html_bytes(text: str) -> bytes:
    """A page as UTF-8; a lone surrogate (from a JSON escape such as ``"\\udcff"``) is
    written as its backslash escape instead of failing."""
    return text.encode("utf-8", "backslashreplace")


def run_title(run: RunRecord, settings: Sequence[tuple[str, str]] = ()) -> str:
    """``label: model on dataset, words value, ...`` with the parts the config holds.

    Parameters
    ----------
    run : RunRecord
    settings : sequence of (config key, words)
        More settings to name, e.g. ``("weight_decay", "weight decay")``; each absent
        one is left out (:func:`lacks_note` says so).
    """
    cfg = run.config
    model, dataset = cfg.get("model"), cfg.get("dataset")
    parts = [f"{model} on {dataset}" if model is not None and dataset is not None
             else str(model) if model is not None
             else f"on {dataset}" if dataset is not None else ""]
    parts += [f"{words} {setting_text(cfg[key])}" for key, words in settings
              if cfg.get(key) is not None]
    shown = ", ".join(part for part in parts if part)
    return f"{run.label}: {shown}" if shown else run.label


def lacks_note(run: RunRecord, columns: Sequence[str],
               settings: Sequence[tuple[str, str]] = (), drawing: Sequence[str] = ()) -> str:
    """Paragraphs naming what a run's files do not hold (a hand-written log, say).

    Parameters
    ----------
    run : RunRecord
    columns : sequence of str
        The columns the page reads; the absent ones are named.
    settings : sequence of (config key, words)
        As for :func:`run_title`; with ``model`` and ``dataset``, the absent ones of an
        existing config.json are named.
    drawing : sequence of str
        What the figures left out (their RunLogWarnings), listed after what the reading
        skipped (``run.notes``).
    """
    present = set(run.columns)
    missing = [name for name in columns if name not in present]
    parts = []
    if missing:
        parts.append(f"not in this log: {', '.join(missing)}")
    if not run.config:
        parts.append("no config.json: the settings of this run are unknown")
    else:
        unset = [key for key in ("model", "dataset", *(key for key, _ in settings))
                 if run.config.get(key) is None]
        if unset:
            parts.append(f"not in config.json: {', '.join(unset)}")
    return ("".join(f"<p>{html.escape(part[0].upper() + part[1:])}.</p>" for part in parts)
            + skipped_note([*run.notes, *drawing]))


#: At most this many notes are listed on a page (a log can have a million bad lines).
MAX_NOTES = 50


def skipped_note(notes: Sequence[str]) -> str:
    """A paragraph listing what was skipped or not drawn (empty when nothing was)."""
    if not notes:
        return ""
    listed = "; ".join(notes[:MAX_NOTES])
    more = f"; and {len(notes) - MAX_NOTES} more" if len(notes) > MAX_NOTES else ""
    return f"<p>Skipped or not drawn ({len(notes)}): {html.escape(listed + more)}.</p>"


def run_status(run: RunRecord) -> str:
    """How the run stands (:attr:`nclab.runs.RunRecord.status`)."""
    return run.status
