"""One plotting style for every nclab figure.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot state, no GUI
backend) and saved as PNG through the Agg canvas with an atomic write.

    with figure_style():
        fig, axes = panel_grid(8)
        ...
        save_png(fig, "out.png")
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nclab.core.io import write_atomic

#: Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
           "#F0E442")
DPI = 150

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
    """Apply the nclab rc settings inside the block."""
    with mpl.rc_context(_RC):
        yield


def color(i: int) -> str:
    """The i-th palette colour (cycling)."""
    return PALETTE[i % len(PALETTE)]


def panel_grid(count: int, ncols: int = 4, size: tuple[float, float] = (3.7, 2.9)
               ) -> tuple[Figure, list[Axes]]:
    """A figure with ``count`` axes on a grid of ``ncols`` columns (unused cells hidden).

    ``size`` is the (width, height) of one cell in inches.
    """
    ncols = min(ncols, count)
    nrows = -(-count // ncols)
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def mark_epoch(ax: Axes, epoch: float | None, label: str | None = None,
               colour: str = "0.35") -> None:
    """A dotted vertical line at ``epoch`` (for example the TPT onset)."""
    if epoch is not None:
        ax.axvline(epoch, color=colour, linestyle=":", linewidth=1.3, label=label, zorder=0)


def save_png(fig: Figure, path: str | os.PathLike) -> None:
    """Render ``fig`` with Agg and write it atomically as PNG."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    write_atomic(path, buffer.getvalue())
