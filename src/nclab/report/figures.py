"""Papyan et al.'s panel of collapse curves for one run, or several runs overlaid."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from nclab.report.style import color, figure_style, mark_epoch, panel_grid, save_png
from nclab.runs import RunRecord


@dataclass(frozen=True)
class Panel:
    """One axes: a title and the (column, legend label) curves it shows."""

    title: str
    curves: tuple[tuple[str, str], ...]
    log: bool = True


PANELS = (
    Panel("error", (("train_error", "train"), ("test_error", "test")), log=False),
    Panel("NC1: Tr(Σ_W Σ_B⁺)/C", (("train_nc1", "train"), ("test_nc1", "test"))),
    Panel("equinorm: std/mean of norms",
          (("train_equinorm_means", "class means"), ("train_equinorm_weights", "classifier"))),
    Panel("equiangularity: std of cosines",
          (("train_equiangularity_means", "class means"),
           ("train_equiangularity_weights", "classifier"))),
    Panel("max-angle: mean |cos + 1/(C−1)|",
          (("train_maxangle_means", "class means"), ("train_maxangle_weights", "classifier"))),
    Panel("self-duality: ‖W/‖W‖ − M/‖M‖‖²", (("train_self_duality", "train"),)),
    Panel("NCC mismatch (NC4)", (("train_ncc_mismatch", "train"), ("test_ncc_mismatch", "test")),
          log=False),
    Panel("loss", (("train_loss", "train"), ("test_loss", "test"))),
)
_STYLES = ("-", "--")
_MARKERS = ("o", "s")


def run_panels(panels: Sequence[Panel], runs: Sequence[RunRecord]) -> Figure:
    """A figure with one panel per entry of ``panels`` drawn for ``runs`` and, for several
    runs, a legend naming them (call inside ``figure_style()``)."""
    fig, axes = panel_grid(len(panels))
    for ax, panel in zip(axes, panels, strict=True):
        _draw(ax, panel, runs)
    if len(runs) > 1:
        handles = [Line2D([], [], color=color(i), label=run.label)
                   for i, run in enumerate(runs)]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(runs), 6),
                   fontsize=10)
    return fig


def collapse_panel(runs: Sequence[RunRecord], path: str | os.PathLike,
                   title: str | None = None) -> None:
    """Save the panel of collapse curves of ``runs`` as a PNG.

    With one run, the two curves of a panel get two colours; with several, each run has
    a colour and the curves of a panel differ by line style (solid: first, dashed:
    second), as the panel legends say. The TPT onset of each run is a dotted line.
    """
    with figure_style():
        fig = run_panels(PANELS, runs)
        onsets = ", ".join(f"{run.label}: {run.tpt_onset}" if len(runs) > 1 else str(run.tpt_onset)
                           for run in runs if run.tpt_onset is not None)
        note = f"dotted line: TPT onset, the first epoch with zero training error ({onsets})" \
            if onsets else "the training error never reached zero (no TPT)"
        fig.suptitle(f"{title}\n{note}" if title else note, fontsize=11)
        save_png(fig, path)


def _draw(ax: Axes, panel: Panel, runs: Sequence[RunRecord]) -> None:
    single = len(runs) == 1
    for r, run in enumerate(runs):
        for k, (key, label) in enumerate(panel.curves):
            epochs, values = run.series(key)
            if panel.log:
                keep = values > 0
                epochs, values = epochs[keep], values[keep]
            if len(values) == 0:
                continue
            ax.plot(epochs, values, color=color(k if single else r),
                    linestyle="-" if single else _STYLES[k % 2], marker=_MARKERS[k % 2],
                    markevery=max(1, len(values) // 25), label=label if single else None)
        mark_epoch(ax, run.tpt_onset, colour="0.35" if single else color(r))
    if not single:  # the runs are told apart by colour (figure legend), the curves by style
        ax.legend(handles=[Line2D([], [], color="0.3", linestyle=_STYLES[k % 2],
                                  marker=_MARKERS[k % 2], label=label)
                           for k, (_, label) in enumerate(panel.curves)], loc="best")
    ax.set_title(panel.title)
    ax.set_xlabel("epoch")
    ax.set_xscale("log")  # the logged epochs are log-spaced
    if panel.log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    if single and ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")


def nc1_figure(runs: Sequence[RunRecord], path: str | os.PathLike) -> None:
    """A single larger plot of training-set NC1 (log scale) with the TPT onsets."""
    with figure_style():
        fig, (ax,) = panel_grid(1, size=(6.0, 4.0))
        for r, run in enumerate(runs):
            epochs, values = run.series("train_nc1")
            keep = values > 0
            label = run.label
            at_onset = run.value_at("train_nc1", run.tpt_onset)
            if at_onset and len(values) and values[-1] > 0:
                label += f" ({at_onset / values[-1]:.0f}x smaller at the end than at the onset)"
            ax.plot(epochs[keep], values[keep], color=color(r), marker="o", label=label)
            mark_epoch(ax, run.tpt_onset, f"TPT onset, {run.label} (epoch {run.tpt_onset})"
                       if run.tpt_onset is not None else None, colour=color(r))
        ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("NC1 (train)")
        ax.set_title("within-class variability collapse: NC1 = Tr(Σ_W Σ_B⁺)/C")
        ax.legend(loc="best")
        save_png(fig, path)
