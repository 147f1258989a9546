"""One plotting style for every nclab figure.

Figures written to files are built on ``matplotlib.figure.Figure`` directly (no pyplot
state, no GUI backend) and saved as PNG through the Agg canvas with an atomic write; the
``.plot()`` of a result (``nclab.report.displays``) makes its figure with pyplot, so that
a notebook shows it with the user's backend.

    with figure_style():
        fig, axes = panel_grid(8)
        ...
        save_png(fig, "out.png")
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import Formatter
from numpy.typing import ArrayLike

from nclab.core.io import write_atomic
from nclab.runs import RunLogWarning, collect_notes, shown_text

#: Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
           "#F0E442")
DPI = 150
#: Values drawn lie in [-LIMIT, LIMIT], and in [1 / LIMIT, LIMIT] on a log axis: beyond,
#: matplotlib's autoscaling overflows (an error, or an axis that silently shows 1 to 10).
LIMIT = 1e100
#: Vertical lines after the epochs where the learning rate drops (dash-dot-dot: the
#: TPT onset is dotted, chance levels dash-dot).
LR_DROP_STYLE = {"color": "0.55", "linestyle": (0, (5, 2, 1, 2, 1, 2)), "linewidth": 1.0}

_RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.6,
    "lines.markersize": 3.5,
    "legend.frameon": False,
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
}


@contextmanager
def figure_style() -> Iterator[None]:
    """Apply the nclab rc settings inside the block.

    On leaving, only the settings of ``_RC`` are put back, not every rc setting as
    ``mpl.rc_context`` would: a pyplot figure made inside the block can be the one that
    loads the backend, and Jupyter's inline backend then turns on interactive mode and
    its own settings, which must survive the block (else no later figure is shown).
    """
    params = cast(dict[str, Any], mpl.rcParams)  # RcParams: a dict of every setting
    saved = {key: params[key] for key in _RC}
    params.update(_RC)
    try:
        yield
    finally:
        params.update(saved)


def plain(text: object, limit: int = 200) -> str:
    """A user's string (a run label, a folder or layer name, a config value) as figure text:
    one printable line (:func:`nclab.runs.shown_text`) of at most ``limit`` characters
    whose ``$`` stay dollar signs, never mathtext (which would mis-render ``$x$`` or fail
    on ``$\\frac{$``)."""
    text = shown_text(str(text))
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return text.replace("$", r"\$")


def drawable(values: ArrayLike, log: bool) -> np.ndarray:
    """Mask of the finite ``values`` (an array, or one number: a 0-d mask) that an axis can
    draw: within ``LIMIT``, and positive on a log axis."""
    array = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"):
        inside = np.abs(array) <= LIMIT
        return inside & (array >= 1 / LIMIT) if log else inside


def note_empty(ax: Axes, text: str) -> None:
    """Write ``text`` in the middle of an axes that has nothing to draw."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center",
            color="0.4", wrap=True)


@contextmanager
def figure_notes(path: str | os.PathLike) -> Iterator[None]:
    """Gather the RunLogWarnings issued while a figure is made (what it could not draw)
    into one, prefixed with the figure's file name."""
    with collect_notes() as notes:
        yield
    if notes:
        warnings.warn(f"{shown_text(Path(path).name)}: {'; '.join(notes)}", RunLogWarning,
                      stacklevel=3)


def color(i: int) -> str:
    """The i-th palette colour (cycling)."""
    return PALETTE[i % len(PALETTE)]


def panel_grid(count: int, ncols: int = 4, size: tuple[float, float] = (3.7, 2.9), *,
               pyplot: bool = False) -> tuple[Figure, list[Axes]]:
    """A figure with ``count`` axes on a grid of ``ncols`` columns (unused cells hidden).

    ``size`` is the (width, height) of one cell in inches. ``pyplot``: make the figure
    with ``matplotlib.pyplot`` (the user's backend: a notebook shows it) instead of a
    bare ``Figure`` that only files are written from.
    """
    ncols = min(ncols, count)
    nrows = -(-count // ncols)
    figsize = (size[0] * ncols, size[1] * nrows)
    if pyplot:
        import matplotlib.pyplot as plt  # picks the backend: only when a figure is shown

        fig = plt.figure(figsize=figsize, layout="constrained")
    else:
        fig = Figure(figsize=figsize, layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def mark_epoch(ax: Axes, epoch: float | None, label: str | None = None,
               colour: str = "0.35") -> None:
    """A dotted vertical line at ``epoch`` (for example the TPT onset), when the log
    epoch axis can draw it."""
    if epoch is not None and drawable(epoch, log=True):
        ax.axvline(epoch, color=colour, linestyle=":", linewidth=1.3, label=label, zorder=0)


class _LogLabels(Formatter):
    """Tick labels of a log axis written plainly (0.01, 1, 200). Minor ticks: all
    labelled while the axis spans at most 0.7 decades (else it could show one label or
    none), those at 2 and 5 times a power of ten up to 1.5 decades, at 5 times up to
    ``decades`` decades, none beyond (they would crowd)."""

    def __init__(self, minor: bool, decades: float = 3.0) -> None:
        self.minor, self.decades = minor, decades

    def __call__(self, value: float, pos: int | None = None) -> str:
        if value <= 0:
            return ""
        if not self.minor:
            return f"{value:g}"
        low, high = sorted(abs(v) for v in self.axis.get_view_interval())
        span = math.log10(high / low) if low > 0 else math.inf
        lead = f"{value:e}"[0]
        if (span <= 0.7 or span <= 1.5 and lead in "25"
                or span <= self.decades and lead == "5"):
            return f"{value:g}"
        return ""


def readable_log_axis(axis: Axis) -> None:
    """Plain-number labels on a log-scaled axis (``ax.xaxis`` or ``ax.yaxis``)."""
    axis.set_major_formatter(_LogLabels(minor=False))
    axis.set_minor_formatter(_LogLabels(minor=True))


def epoch_axis(ax: Axes, lr_drops: Sequence[int] = (), label: str = "epoch") -> None:
    """Log-scaled epochs (as Papyan et al. draw them) with plain labels, and a dash-dot
    vertical line after each epoch in ``lr_drops`` (where the learning rate drops)."""
    ax.set_xscale("log")
    ax.set_xlabel(label)
    readable_log_axis(ax.xaxis)
    mark_lr_drops(ax, lr_drops)


def mark_lr_drops(ax: Axes, epochs: Sequence[int], colour: str | None = None) -> None:
    """The dash-dot-dot vertical lines of learning-rate drops (grey, or ``colour``)."""
    style = LR_DROP_STYLE if colour is None else {**LR_DROP_STYLE, "color": colour}
    for epoch in [e for e in epochs if drawable(e, log=True)]:
        ax.axvline(epoch, zorder=0, **style)


def lr_drop_handle(gamma: object = None) -> Line2D:
    """A legend entry for the lines ``epoch_axis`` draws at learning-rate drops."""
    factor = f" (lr × {gamma:g})" if _is_number(gamma) else ""
    return Line2D([], [], label=f"learning-rate drop{factor}", **LR_DROP_STYLE)


def lr_drop_epochs(config: dict) -> list[int]:
    """The epochs after which the learning rate drops, from a run's config.json
    (``epochs``, ``lr_milestones``: fractions, as ``nclab.train.schedule`` applies them)."""
    epochs, fractions = config.get("epochs"), config.get("lr_milestones")
    if not _is_number(epochs) or not isinstance(fractions, (list, tuple)):
        return []
    drops = {round(f * epochs) for f in fractions if _is_number(f) and 0 < f < 1}
    return sorted(drop for drop in drops if 0 < drop < epochs)


def _is_number(value: object) -> bool:
    """A finite int or float (not a bool), which ``:g`` and arithmetic accept."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and abs(value) <= LIMIT)


def save_png(fig: Figure, path: str | os.PathLike) -> None:
    """Render ``fig`` with Agg and write it atomically as PNG."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    write_atomic(path, buffer.getvalue())
