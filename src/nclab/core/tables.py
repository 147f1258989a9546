"""Results as tables: the HTML that Jupyter shows (``_repr_html_``) and pandas data frames.

Plain text and the standard library only: no matplotlib, and pandas only when a data
frame is asked for (the optional ``pandas`` extra).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from nclab.core.metric_info import METRICS

PANDAS_HINT = 'pip install "nclab[pandas]"'


def cell(value: Any) -> str:
    """A value as table-cell text: 4 significant digits, "n/a" for None."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table; every cell written by :func:`cell`."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def metrics_html(title: str, columns: Mapping[str, Mapping[str, Any]],
                 notes: Sequence[str] = ()) -> str:
    """A compact HTML block: a title, one row per metric with a value, its direction.

    Parameters
    ----------
    title : str
        Plain text (escaped here).
    columns : dict of column name to {metric name: value}
        For example ``{"value": {"nc1": 0.1, ...}}`` or ``{"train": ..., "test": ...}``;
        metrics without a value in any column are left out, the others follow ``METRICS``.
    notes : sequence of str
        Lines shown under the table (escaped here).
    """
    shown = [name for name in METRICS
             if any(values.get(name) is not None for values in columns.values())]
    rows = [[name, *(values.get(name) for values in columns.values()),
             METRICS[name].better(), METRICS[name].section] for name in shown]
    table = html_table(["metric", *columns, "better", "§"], rows)
    lines = "".join(f"<br><small>{html.escape(note)}</small>" for note in notes)
    return f"<div><p><b>{html.escape(title)}</b></p>{table}{lines}</div>"


def missing_notes(values: Mapping[str, Any]) -> list[str]:
    """Why the metrics of ``values`` that are None have no value, one line per reason
    ("no classifier given: self_duality, ..."), from their declaration in ``METRICS``."""
    reasons: dict[str, list[str]] = {}
    for name, value in values.items():
        if value is None:
            info = METRICS[name]
            reason = ("no second pass (nclab.track or DecisionStats gives it)"
                      if info.needs_second_pass else "no classifier given"
                      if info.needs_classifier else f"needs {info.needs}" if info.needs
                      else "not finite or not computed")
            reasons.setdefault(reason, []).append(name)
    return [f"{reason}: {', '.join(names)}" for reason, names in reasons.items()]


def data_frame(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Any:
    """``pandas.DataFrame`` of ``rows`` (one per record), columns in the given order.

    Raises ImportError with the install line when pandas is missing.
    """
    try:
        import pandas
    except ImportError:
        raise ImportError(f"to_pandas() needs pandas: {PANDAS_HINT}") from None
    return pandas.DataFrame.from_records(list(rows), columns=columns)
