"""``.plot()`` of nclab's results: Display objects in the manner of scikit-learn's.

A Display holds the data of one figure and draws it with ``plot(ax=None)``, which
returns ``(fig, ax)``; the results' own ``plot`` methods are these:

==========================================================  ==============================
``CollapseDisplay.from_metrics(metrics).plot()``            ``metrics.plot()``
``HistoryDisplay.from_runs([nclab.load_run(dir)]).plot()``  ``nclab.load_run(dir).plot()``
``ProfileDisplay.from_profile(profile).plot()``             ``profile.plot()``
``RecoveryDisplay.from_recovery(recovery).plot()``          ``recovery.plot()``
==========================================================  ==============================

Without ``ax`` a new figure is made with ``matplotlib.pyplot``, so that a notebook
shows it with the user's backend; with ``ax`` the display draws into it and returns its
figure. The figures that ``nclab report`` writes to files draw with the same functions
(``figures.draw_panels``, ``profile.draw_profile``) on bare figures, without pyplot.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.transforms import blended_transform_factory

from nclab.capture import LayerProfile
from nclab.core.errors import NCInputError
from nclab.core.metric_info import METRICS
from nclab.core.metrics import CollapseMetrics
from nclab.finegrained import FineRecovery
from nclab.report.figures import Panel, draw_panels, training_panels
from nclab.report.profile import draw_profile, profile_size
from nclab.report.style import color, figure_style, panel_grid, readable_log_axis
from nclab.runs import RunRecord

__all__ = ["CollapseDisplay", "HistoryDisplay", "ProfileDisplay", "RecoveryDisplay",
           "draw_metrics", "draw_recovery", "panel_key"]


def target_axes(ax: Any, count: int, ncols: int = 4,
                size: tuple[float, float] = (3.7, 2.9)) -> tuple[Any, list[Axes]]:
    """(figure, ``count`` axes): a new pyplot figure when ``ax`` is None, else ``ax`` itself
    (one Axes, or a sequence or array of ``count`` Axes) and the figure it is in."""
    if ax is None:
        return panel_grid(count, ncols, size, pyplot=True)
    axes = [ax] if isinstance(ax, Axes) else list(np.ravel(np.asarray(ax, dtype=object)))
    if len(axes) != count or not all(isinstance(a, Axes) for a in axes):
        raise NCInputError(f"ax must be {count} matplotlib Axes (one per panel); got "
                           f"{len(axes)} object(s) of type "
                           f"{', '.join(sorted({type(a).__name__ for a in axes}))}")
    return axes[0].figure, axes


def _returned(fig: Any, axes: Sequence[Axes]) -> tuple[Any, Any]:
    """(fig, ax) for one panel, (fig, 1-D array of Axes) for several (as plt.subplots)."""
    if len(axes) == 1:
        return fig, axes[0]
    array = np.empty(len(axes), dtype=object)
    array[:] = list(axes)
    return fig, array


# ----------------------------------------------------------------------------- metrics
def _number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def draw_metrics(ax: Axes, names: Sequence[str], values: Sequence[float],
                 title: str = "") -> None:
    """A lollipop chart of metric values, the first on top, each value written beside it.

    When every metric is a gap (``MetricInfo.is_gap``: >= 0, 0 at perfect collapse) the
    value axis is logarithmic, the stems start at its left edge and a value of exactly 0
    is a hollow marker on that edge; otherwise the axis is linear, with stems from 0.
    The markers of the non-zero values are ``ax.lines[0]`` (x: the values, in order).
    """
    y = np.arange(len(names))[::-1].astype(float)
    x = np.asarray(values, dtype=float)
    log = all(METRICS[name].is_gap for name in names)
    shown = x > 0 if log else np.ones(len(x), bool)
    positive = x[x > 0]
    low = float(positive.min()) / 20 if positive.size else 1e-3
    # stems in data coordinates from far left of any limit, left out of the autoscaling:
    # the axis keeps the limits of the values (also when shared with other axes)
    start = low * 1e-30 if log else 0.0
    ax.add_collection(LineCollection([[(start, row), (value, row)] for value, row
                                      in zip(x[shown], y[shown], strict=True)],
                                     colors=color(0), linewidths=1.4), autolim=False)
    ax.plot(x[shown], y[shown], linestyle="", marker="o", markersize=6, color=color(0))
    for value, row in zip(x[shown], y[shown], strict=True):
        ax.annotate(f"{value:.3g}", (value, row), xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize=8)
    edge = blended_transform_factory(ax.transAxes, ax.transData)
    for row in y[~shown]:  # exact zeros on a log axis: on its left edge
        ax.plot([0.0], [row], linestyle="", marker="o", markersize=6, color=color(0),
                markerfacecolor="white", transform=edge, clip_on=False)
        ax.annotate("0", (0.0, row), xycoords=edge, xytext=(6, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(y, list(names))
    ax.set_ylim(-0.7, len(names) - 0.3)
    if log:
        ax.set_xscale("log")
        readable_log_axis(ax.xaxis)
        ax.set_xlim(low, (float(positive.max()) if positive.size else 1.0) * 20)
        ax.set_xlabel("value (0 at perfect collapse; log scale)")
    else:
        ax.axvline(0.0, color="0.4", linewidth=0.8)
        ax.set_xlabel("value")
    ax.grid(axis="y", visible=False)
    ax.set_title(title)


@dataclass
class CollapseDisplay:
    """The values of some collapse metrics as a lollipop chart (:func:`draw_metrics`).

    Attributes
    ----------
    names : tuple of str
        Metric names (keys of ``METRICS``), drawn top to bottom.
    values : tuple of float
    title : str
    figure_, ax_
        Set by :meth:`plot`.
    """

    names: tuple[str, ...]
    values: tuple[float, ...]
    title: str = ""
    figure_: Any = field(default=None, repr=False)
    ax_: Any = field(default=None, repr=False)

    @classmethod
    def from_metrics(cls, metrics: CollapseMetrics,
                     names: Sequence[str] | None = None) -> CollapseDisplay:
        """The display of a :class:`~nclab.core.metrics.CollapseMetrics`.

        Parameters
        ----------
        metrics : CollapseMetrics
        names : sequence of str, optional
            The metrics to draw; default: every gap metric (lower is better, 0 at
            perfect collapse) that has a finite value. The other metrics with a value
            (``accuracy``, the spectral ones...) are written under the title.
        """
        if not isinstance(metrics, CollapseMetrics):
            raise NCInputError(f"expected a CollapseMetrics; got {type(metrics).__name__}")
        if names is None:
            names = [name for name, info in METRICS.items()
                     if info.is_gap and _number(getattr(metrics, name))]
        else:
            names = list(names)
            for name in names:
                if name not in METRICS:
                    raise NCInputError(f"unknown metric {name!r}; the metrics: "
                                       f"{', '.join(METRICS)}")
                if not _number(getattr(metrics, name)):
                    raise NCInputError(f"{name} has no finite value to plot "
                                       f"({getattr(metrics, name)!r})")
        if not names:
            raise NCInputError("no metric has a finite value to plot")
        others = [f"{name} {value:.3g}" for name, info in METRICS.items()
                  if name not in names and _number(value := getattr(metrics, name))
                  and not info.is_gap]
        title = (f"collapse metrics: N = {metrics.num_samples}, C = {metrics.num_classes}, "
                 f"d = {metrics.dim}" + ("\n" + textwrap.fill(", ".join(others), 64)
                                         if others else ""))
        return cls(tuple(names), tuple(float(getattr(metrics, n)) for n in names), title)

    def plot(self, ax: Axes | None = None) -> tuple[Any, Axes]:
        """Draw into ``ax`` (default: a new figure); return (figure, axes)."""
        with figure_style():
            fig, (axis,) = target_axes(ax, 1, size=(6.5, 0.3 * len(self.names) + 1.3))
            draw_metrics(axis, self.names, self.values, self.title)
        self.figure_, self.ax_ = fig, axis
        return fig, axis


# ----------------------------------------------------------------------------- histories
def panel_key(panel: Panel) -> str:
    """The name a panel is chosen by: its first column without the split and ``_means``
    (``nc1``, ``equinorm``, ``self_duality``, ``ncc_mismatch``, ``error``, ``loss``...)."""
    column = panel.curves[0][0]
    return column.removeprefix("train_").removesuffix("_means")


@dataclass
class HistoryDisplay:
    """Papyan et al.'s panels of collapse against the epoch, for one run or several
    overlaid (the figure ``nclab report`` writes as collapse.png).

    Attributes
    ----------
    runs : tuple of RunRecord
    panels : tuple of Panel
    figure_, axes_
        Set by :meth:`plot`.
    """

    runs: tuple[RunRecord, ...]
    panels: tuple[Panel, ...]
    figure_: Any = field(default=None, repr=False)
    axes_: Any = field(default=None, repr=False)

    @classmethod
    def from_runs(cls, runs: Sequence[RunRecord],
                  panels: Sequence[str] | str | None = None) -> HistoryDisplay:
        """The display of logged runs (``nclab.load_run``).

        Parameters
        ----------
        runs : sequence of RunRecord
        panels : str or sequence of str, optional
            Panels by :func:`panel_key`: ``error``, ``nc1``, ``equinorm``,
            ``equiangularity``, ``maxangle``, ``self_duality``, ``ncc_mismatch``,
            ``loss``; default: all of them.
        """
        runs = tuple(runs)
        if not runs or not all(isinstance(run, RunRecord) for run in runs):
            raise NCInputError("expected one or more RunRecord (nclab.load_run(dir))")
        available = training_panels(runs)
        if panels is None:
            return cls(runs, tuple(available))
        wanted = [panels] if isinstance(panels, str) else list(panels)
        keys = list(dict.fromkeys(panel_key(panel) for panel in available))
        unknown = [name for name in wanted if name not in keys]
        if unknown or not wanted:
            what = f"no panel {unknown[0]!r}" if unknown else "no panel chosen"
            raise NCInputError(f"{what}; the panels: {', '.join(keys)}")
        return cls(runs, tuple(panel for name in wanted for panel in available
                               if panel_key(panel) == name))

    def plot(self, ax: Any = None) -> tuple[Any, Any]:
        """Draw into ``ax`` (one Axes per panel; default: a new figure); return (figure,
        axes): one Axes for one panel, else a 1-D array of them."""
        with figure_style():
            fig, axes = target_axes(ax, len(self.panels))
            draw_panels(fig, axes, self.panels, self.runs)
        self.figure_, self.axes_ = _returned(fig, axes)
        return self.figure_, self.axes_


# ----------------------------------------------------------------------------- profiles
@dataclass
class ProfileDisplay:
    """NC1 and NC1_trace layer by layer (the figure ``nclab profile`` writes).

    Attributes
    ----------
    profile : LayerProfile or dict
        As :func:`nclab.report.profile.profile_figure` takes it.
    title : str, optional
    """

    profile: LayerProfile | Mapping[str, Any]
    title: str | None = None
    figure_: Any = field(default=None, repr=False)
    ax_: Any = field(default=None, repr=False)

    @classmethod
    def from_profile(cls, profile: LayerProfile | Mapping[str, Any],
                     title: str | None = None) -> ProfileDisplay:
        return cls(profile, title)

    def plot(self, ax: Axes | None = None) -> tuple[Any, Axes]:
        """Draw into ``ax`` (default: a new figure); return (figure, axes)."""
        with figure_style():
            fig, (axis,) = target_axes(ax, 1, size=profile_size(self.profile))
            draw_profile(axis, self.profile, self.title)
        self.figure_, self.ax_ = fig, axis
        return fig, axis


# ----------------------------------------------------------------------------- fine labels
def draw_recovery(ax: Axes, recovery: FineRecovery) -> None:
    """Recovered fine-label accuracy per superclass (train and test bars) with the chance
    level 1/k of each superclass of k fine classes (definitions §6)."""
    supers = recovery.superclasses
    x = np.arange(len(supers))
    width = 0.38
    train = [r.train_accuracy for r in supers]
    test = [np.nan if r.test_accuracy is None else r.test_accuracy for r in supers]
    ax.bar(x - width / 2, train, width, color=color(0),
           label=f"train (all: {recovery.train_accuracy:.3f})")
    if recovery.test_accuracy is not None:
        ax.bar(x + width / 2, test, width, color=color(1),
               label=f"test (all: {recovery.test_accuracy:.3f})")
    chance = [1 / len(r.fine_classes) for r in supers]
    ax.hlines(chance, x - width, x + width, color="0.2", linestyle="-.", linewidth=1.2,
              label="chance: 1/k")
    ax.set_xticks(x, [f"{r.superclass}\nk = {len(r.fine_classes)}" for r in supers])
    ax.set_ylim(0, 1.05)
    nc1 = f"coarse NC1 {recovery.coarse_nc1:.3g}" if recovery.coarse_nc1 is not None else ""
    ax.set(xlabel="superclass (k fine classes)", ylabel="recovered fine-label accuracy",
           title=f"fine labels recovered from coarse features{', ' if nc1 else ''}{nc1}")
    ax.grid(axis="x", visible=False)
    ax.legend(loc="lower right", fontsize=8)


@dataclass
class RecoveryDisplay:
    """Fine-label recovery per superclass (:func:`draw_recovery`)."""

    recovery: FineRecovery
    figure_: Any = field(default=None, repr=False)
    ax_: Any = field(default=None, repr=False)

    @classmethod
    def from_recovery(cls, recovery: FineRecovery) -> RecoveryDisplay:
        if not isinstance(recovery, FineRecovery):
            raise NCInputError(f"expected a FineRecovery; got {type(recovery).__name__}")
        return cls(recovery)

    def plot(self, ax: Axes | None = None) -> tuple[Any, Axes]:
        """Draw into ``ax`` (default: a new figure); return (figure, axes)."""
        count = len(self.recovery.superclasses)
        with figure_style():
            fig, (axis,) = target_axes(ax, 1, size=(max(5.0, 0.7 * count + 2.0), 3.8))
            draw_recovery(axis, self.recovery)
        self.figure_, self.ax_ = fig, axis
        return fig, axis
