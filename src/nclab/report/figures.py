"""Papyan et al.'s panel of collapse curves for one run, or several runs overlaid.

Every axis is labelled; epochs are on a log axis (the logged epochs are log-spaced, as
in Papyan et al.'s figures) with plain tick labels; the learning-rate drops and the TPT
onset are marked. With several runs each run has a colour and a marker, and the markers
of the runs sit on different logged epochs, so that runs with identical curves stay
visible (their legend entries say which are identical). Runs trained with different
losses get one loss panel per loss.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from nclab.report.style import (
    LIMIT,
    color,
    drawable,
    epoch_axis,
    figure_notes,
    figure_style,
    lr_drop_epochs,
    lr_drop_handle,
    mark_epoch,
    mark_lr_drops,
    note_empty,
    panel_grid,
    plain,
    readable_log_axis,
    save_png,
)
from nclab.runs import RunLogWarning, RunRecord


@dataclass(frozen=True)
class Panel:
    """One axes: a title, the (column, legend label) curves it shows, its y label.

    ``loss``: when set, only runs whose config has this ``loss`` are drawn in it.
    """

    title: str
    curves: tuple[tuple[str, str], ...]
    log: bool = True
    ylabel: str | None = None
    loss: str | None = None

    @property
    def axis_label(self) -> str:
        """The y label (by default the title up to its first colon)."""
        return self.ylabel or self.name

    @property
    def name(self) -> str:
        """The title up to its first colon: how notes name the panel."""
        return self.title.split(":")[0]


PANELS = (
    Panel("error", (("train_error", "train"), ("test_error", "test")), log=False,
          ylabel="classification error"),
    Panel("NC1: Tr(Σ_W Σ_B⁺)/C", (("train_nc1", "train"), ("test_nc1", "test")),
          ylabel="NC1 (within-class variability)"),
    Panel("equinorm: std/mean of norms",
          (("train_equinorm_means", "class means"), ("train_equinorm_weights", "classifier")),
          ylabel="std / mean of the norms"),
    Panel("equiangularity: std of cosines",
          (("train_equiangularity_means", "class means"),
           ("train_equiangularity_weights", "classifier")),
          ylabel="std of the pairwise cosines"),
    Panel("max-angle: mean |cos + 1/(C−1)|",
          (("train_maxangle_means", "class means"), ("train_maxangle_weights", "classifier")),
          ylabel="mean |cos + 1/(C−1)|"),
    Panel("self-duality: ‖W/‖W‖ − M/‖M‖‖²", (("train_self_duality", "train"),),
          ylabel="‖W/‖W‖ − M/‖M‖‖²"),
    Panel("NCC mismatch (NC4)", (("train_ncc_mismatch", "train"), ("test_ncc_mismatch", "test")),
          log=False, ylabel="fraction of samples"),
    Panel("loss", (("train_loss", "train"), ("test_loss", "test")), ylabel="loss"),
)
#: config ``loss`` -> (panel title, y label): the loss named as the trainer computes it.
LOSS_NAMES = {
    "ce": ("loss: cross-entropy", "cross-entropy (mean per sample)"),
    "mse": ("loss: squared error ½‖f(x) − e_y‖²", "squared error (mean per sample)"),
}
_STYLES = ("-", "--")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def loss_panels(runs: Sequence[RunRecord]) -> list[Panel]:
    """The loss panel named after the runs' loss; one per loss when they differ."""
    base = PANELS[-1]
    kinds = list(dict.fromkeys(str(run.config.get("loss", "unknown")) for run in runs))
    panels = []
    for kind in kinds:
        title, ylabel = LOSS_NAMES.get(kind, (f"loss: {plain(kind)}", f"{plain(kind)} loss"))
        panels.append(replace(base, title=title, ylabel=ylabel,
                              loss=kind if len(kinds) > 1 else None))
    return panels


def training_panels(runs: Sequence[RunRecord]) -> list[Panel]:
    """``PANELS`` with the loss panel(s) of :func:`loss_panels`."""
    return [*PANELS[:-1], *loss_panels(runs)]


def identical_to(runs: Sequence[RunRecord], panels: Sequence[Panel]) -> dict[int, int]:
    """{j: i} for each run j whose plotted curves equal those of an earlier run i."""
    keys = [key for panel in panels for key, _ in panel.curves]
    same: dict[int, int] = {}
    for j, later in enumerate(runs):
        for i in range(j):
            if i not in same and all(_equal(runs[i].series(key), later.series(key))
                                     for key in keys):
                same[j] = i
                break
    return same


def _equal(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def run_panels(panels: Sequence[Panel], runs: Sequence[RunRecord]) -> Figure:
    """A figure with one panel per entry of ``panels`` drawn for ``runs`` and, for several
    runs, a legend naming them (call inside ``figure_style()``).

    A value that the panel's axes cannot draw (not positive on a log axis, or beyond
    ``LIMIT``) is left out; a panel with nothing left says so in its middle. Each is
    told in a RunLogWarning.
    """
    fig, axes = panel_grid(len(panels))
    draw_panels(fig, axes, panels, runs)
    return fig


def draw_panels(fig: Figure, axes: Sequence[Axes], panels: Sequence[Panel],
                runs: Sequence[RunRecord]) -> None:
    """Draw ``panels`` for ``runs`` into ``axes`` (one per panel) and, for several runs,
    a legend of ``fig`` naming them (call inside ``figure_style()``)."""
    drops = _drops(runs)
    for ax, panel in zip(axes, panels, strict=True):
        _draw(ax, panel, runs, drops)
    if len(runs) > 1:
        same = identical_to(runs, panels)
        handles = [Line2D([], [], color=color(i), marker=_MARKERS[i % len(_MARKERS)],
                          label=plain(run.label) + (
                              f" (curves identical to {plain(runs[same[i]].label)})"
                              if i in same else ""))
                   for i, run in enumerate(runs)]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(runs), 4),
                   fontsize=10)


def _drops(runs: Sequence[RunRecord]) -> list[list[int]]:
    return [lr_drop_epochs(run.config) for run in runs]


def collapse_panel(runs: Sequence[RunRecord], path: str | os.PathLike,
                   title: str | None = None) -> None:
    """Save the panel of collapse curves of ``runs`` as a PNG.

    With one run, the two curves of a panel get two colours; with several, each run has
    a colour and a marker, and the curves of a panel differ by line style (solid:
    first, dashed: second), as the panel legends say. The TPT onset of each run is a
    dotted line, the learning-rate drops dash-dot-dot lines.
    """
    with figure_style(), figure_notes(path):
        fig = run_panels(training_panels(runs), runs)
        fig.suptitle(f"{plain(title)}\n{_notes(runs)}" if title else _notes(runs), fontsize=11)
        save_png(fig, path)


def _notes(runs: Sequence[RunRecord]) -> str:
    single = len(runs) == 1
    onsets = ", ".join(f"{plain(run.label)}: {run.tpt_onset}" if not single
                       else str(run.tpt_onset)
                       for run in runs if run.tpt_onset is not None)
    note = (f"dotted line: TPT onset, the first epoch with zero training error ({onsets})"
            if onsets else "the training error never reached zero (no TPT)")
    drops = {tuple(d) for d in _drops(runs) if d}
    if len(drops) == 1:
        gamma = runs[0].config.get("lr_gamma")
        factor = f"× {gamma:g}" if isinstance(gamma, (int, float)) else "drops"
        note += (f"; dash-dot-dot lines: learning rate {factor} after epochs "
                 f"{', '.join(map(str, next(iter(drops))))}")
    elif drops:
        note += "; dash-dot-dot lines: learning-rate drops (run colours)"
    return note


def _draw(ax: Axes, panel: Panel, runs: Sequence[RunRecord], drops: list[list[int]]) -> None:
    single = len(runs) == 1
    stride = min(len(runs), 4)
    shown = [r for r, run in enumerate(runs)
             if panel.loss is None or str(run.config.get("loss", "unknown")) == panel.loss]
    logged = left_out = 0
    for r in shown:
        run = runs[r]
        for k, (key, label) in enumerate(panel.curves):
            epochs, values = run.series(key)
            keep = drawable(epochs, log=True) & drawable(values, panel.log)
            logged, left_out = logged + len(values), left_out + int((~keep).sum())
            epochs, values = epochs[keep], values[keep]
            if len(values) == 0:
                continue
            # several runs: markers on every stride-th point, shifted by run, so that
            # runs whose lines coincide still show their own markers
            every = max(1, len(values) // 25) * stride
            ax.plot(epochs, values, color=color(k if single else r),
                    linestyle="-" if single else _STYLES[k % 2],
                    marker=_MARKERS[k % 2] if single else _MARKERS[r % len(_MARKERS)],
                    markevery=every if single else ((r % stride) * every // stride, every),
                    markerfacecolor=None if single or k == 0 else "white",
                    label=label if single else None)
        mark_epoch(ax, run.tpt_onset, colour="0.35" if single else color(r))
    _epoch_axes(ax, runs, drops, shown)
    if not single:  # the runs are told apart by colour (figure legend), the curves by style
        ax.legend(handles=[Line2D([], [], color="0.3", linestyle=_STYLES[k % 2], label=label)
                           for k, (_, label) in enumerate(panel.curves)], loc="best")
    ax.set_title(panel.title)
    ax.set_ylabel(panel.axis_label)
    _value_axis(ax, panel, drawn=logged > left_out, logged=logged)
    _tell_left_out(panel, logged, left_out)
    if single and ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")


def _value_axis(ax: Axes, panel: Panel, drawn: bool, logged: int) -> None:
    """A log y axis when there is something on it (matplotlib cannot log-scale an axis
    whose lines are all empty), else a note in the middle of the panel."""
    if not drawn:
        note_empty(ax, "no value to draw on a log scale" if logged and panel.log
                   else "no value to draw" if logged else "not in the log")
    elif panel.log:
        ax.set_yscale("log")
        readable_log_axis(ax.yaxis)
    elif ax.dataLim.y0 >= 0:  # a rate: from 0 (unless a hand-written log has negatives)
        ax.set_ylim(bottom=0)


def _tell_left_out(panel: Panel, logged: int, left_out: int) -> None:
    """A RunLogWarning naming the panel and how many of its logged values it leaves out."""
    if left_out:
        where = ("on log axes only values in [1e-100, 1e100]" if panel.log
                 else f"on a log epoch axis only epochs in [1e-100, 1e100], values within "
                      f"±{LIMIT:g}")
        warnings.warn(f"{panel.name}: {left_out} of {logged} values not drawn ({where} can be "
                      "drawn)", RunLogWarning, stacklevel=3)


def _epoch_axes(ax: Axes, runs: Sequence[RunRecord], drops: list[list[int]],
                shown: Sequence[int]) -> None:
    """Log epochs; the lr drops in grey when the runs share them, else in run colours."""
    if len({tuple(drops[r]) for r in shown}) <= 1:
        epoch_axis(ax, drops[shown[0]] if shown else ())
        return
    epoch_axis(ax)
    for r in shown:
        mark_lr_drops(ax, drops[r], color(r))


def nc1_figure(runs: Sequence[RunRecord], path: str | os.PathLike) -> None:
    """A single larger plot of training-set NC1 (log scale) with the TPT onsets and the
    learning-rate drops."""
    panel = Panel("NC1 (train)", (("train_nc1", "train"),))
    with figure_style(), figure_notes(path):
        fig, (ax,) = panel_grid(1, size=(6.0, 4.0))
        logged = left_out = 0
        for r, run in enumerate(runs):
            epochs, values = run.series("train_nc1")
            keep = drawable(epochs, log=True) & drawable(values, log=True)
            logged, left_out = logged + len(values), left_out + int((~keep).sum())
            label = plain(run.label) + _drop_text(run.value_at("train_nc1", run.tpt_onset),
                                                  values[keep])
            if keep.any():
                ax.plot(epochs[keep], values[keep], color=color(r), marker=_MARKERS[r % 8],
                        label=label)
            mark_epoch(ax, run.tpt_onset, f"TPT onset, {plain(run.label)} (epoch "
                                          f"{run.tpt_onset})"
                       if run.tpt_onset is not None else None, colour=color(r))
        drops = _drops(runs)
        epoch_axis(ax, drops[0] if len({tuple(d) for d in drops}) == 1 else ())
        _value_axis(ax, panel, drawn=logged > left_out, logged=logged)
        _tell_left_out(panel, logged, left_out)
        ax.set_ylabel("NC1 (train)")
        ax.set_title("within-class variability collapse: NC1 = Tr(Σ_W Σ_B⁺)/C")
        handles = ax.get_legend_handles_labels()[0]
        if drops and drops[0]:
            handles.append(lr_drop_handle(runs[0].config.get("lr_gamma")))
        if handles:
            ax.legend(handles=handles, loc="best")
        save_png(fig, path)


def _drop_text(at_onset: float | None, drawn: np.ndarray) -> str:
    """`` (Nx smaller at the end than at the onset)`` when both values are drawn."""
    if not (at_onset and len(drawn) and drawable(at_onset, log=True)):
        return ""
    ratio = at_onset / drawn[-1]
    return f" ({ratio:.0f}x smaller at the end than at the onset)" if ratio < 1e6 else \
        f" ({ratio:.3g}x smaller at the end than at the onset)"
