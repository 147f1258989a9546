"""Figures of fine-label recovery (definitions §6): curves over epochs, one projection."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from nclab.report.style import (
    color,
    epoch_axis,
    figure_style,
    lr_drop_handle,
    panel_grid,
    readable_log_axis,
    save_png,
)


def _series(rows: Sequence[dict[str, Any]], key: str,
            transform: Any = None) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(row["epoch"], row[key]) for row in rows if row.get(key) is not None]
    if not pairs:
        return np.empty(0), np.empty(0)
    epochs, values = (np.asarray(v, dtype=float) for v in zip(*pairs, strict=True))
    return epochs, values if transform is None else transform(values)


def _accuracy(errors: np.ndarray) -> np.ndarray:
    return 1.0 - errors


def _plot(ax: Axes, series: tuple[np.ndarray, np.ndarray], label: str, k: int,
          style: str = "-", marker: str = "o") -> None:
    epochs, values = series
    if len(values):
        ax.plot(epochs, values, linestyle=style, marker=marker, color=color(k), label=label)


def nc1_collapse_axis(ax: Axes, threshold: float | None = None) -> None:
    """A log x axis of coarse train nc1 that DEcreases to the right (collapse deepens
    left to right, as training goes on), with the terminal-phase region shaded."""
    ax.set_xscale("log")
    ax.invert_xaxis()
    readable_log_axis(ax.xaxis)
    ax.set_xlabel("coarse train NC1 (log; collapse deepens →)")
    if threshold is not None:
        low = min(ax.get_xlim())
        ax.axvspan(threshold, low, color="0.85", zorder=0, linewidth=0,
                   label=f"NC1 ≤ {threshold:g}")
        ax.set_xlim(max(ax.get_xlim()), low)


def recovery_against_nc1(ax: Axes, nc1: np.ndarray, recovered: np.ndarray, *, label: str,
                         k: int = 0, inside: np.ndarray | None = None,
                         style: str = "-") -> None:
    """One run's recovered accuracy (y) against its coarse train nc1 (x), in logged order.

    Parameters
    ----------
    nc1, recovered : arrays of shape (n,)
        At each logged epoch, oldest first.
    inside : bool array of shape (n,), optional
        Epochs in the terminal phase: filled markers; the others hollow.
    """
    ax.plot(nc1, recovered, linestyle=style, color=color(k), linewidth=1.2, label=label)
    inside = np.zeros(len(nc1), bool) if inside is None else np.asarray(inside, bool)
    ax.scatter(nc1[inside], recovered[inside], color=color(k), s=16, zorder=3)
    ax.scatter(nc1[~inside], recovered[~inside], facecolors="white", edgecolors=color(k),
               s=16, zorder=3)


def terminal_legend_handles() -> list[Line2D]:
    """Legend entries explaining filled and hollow markers."""
    return [Line2D([], [], linestyle="", marker="o", color="0.3", label="in the terminal phase"),
            Line2D([], [], linestyle="", marker="o", markerfacecolor="white",
                   markeredgecolor="0.3", label="not (yet) in it")]


def recovery_figure(coarse_rows: Sequence[dict[str, Any]],
                    baseline_rows: Sequence[dict[str, Any]], chance: float,
                    path: str | os.PathLike, title: str | None = None, *,
                    inside: Sequence[bool] | None = None,
                    threshold: float | None = None, lr_drops: Sequence[int] = ()) -> None:
    """Recovered fine accuracy against epoch, the nc1 of the same features, and the
    recovered accuracy against the coarse train nc1.

    Parameters
    ----------
    coarse_rows : list of dict
        Logged rows of the coarse run (``recovery_*``, ``coarse_nc1``, ``fine_nc1``,
        ``test_error``).
    baseline_rows : list of dict
        Logged rows of the fine-label baseline (``test_error``, ``train_nc1``).
    chance : float
        Accuracy of a uniform guess inside the true superclass.
    inside : sequence of bool, optional
        One per coarse row: whether that epoch is in the terminal phase.
    threshold : float, optional
        The terminal phase's nc1 threshold, shaded in the third panel.
    lr_drops : sequence of int
        Epochs after which the learning rate drops (dash-dot lines).
    """
    with figure_style():
        fig, (left, middle, right) = panel_grid(3, ncols=3, size=(5.0, 3.9))
        _plot(left, _series(coarse_rows, "recovery_test_accuracy"), "recovered, test", 0)
        _plot(left, _series(coarse_rows, "recovery_train_accuracy"), "recovered, train", 0,
              "--", "s")
        _plot(left, _series(baseline_rows, "test_error", _accuracy),
              "trained on fine labels, test", 1, "-", "^")
        _plot(left, _series(coarse_rows, "test_error", _accuracy),
              "superclass right, test (upper bound)", 2, ":", "v")
        left.axhline(chance, color="0.45", linewidth=1.0, linestyle="-.", label="chance")
        epoch_axis(left, lr_drops)
        left.set(ylabel="fine-label accuracy", title="fine labels recovered from coarse features")
        left.legend(loc="best")
        _plot(middle, _series(coarse_rows, "coarse_nc1"), "coarse model, coarse labels", 0)
        _plot(middle, _series(coarse_rows, "fine_nc1"), "coarse model, fine labels", 0, "--",
              "s")
        _plot(middle, _series(baseline_rows, "train_nc1"), "fine model, fine labels", 1, "-",
              "^")
        epoch_axis(middle, lr_drops)
        middle.set(yscale="log", ylabel="NC1 (training set)",
                   title="NC1 = Tr(Σ_W Σ_B⁺)/C of the same features")
        readable_log_axis(middle.yaxis)
        handles = middle.get_legend_handles_labels()[0]
        middle.legend(handles=handles + ([lr_drop_handle()] if lr_drops else []), loc="best")
        _nc1_panel(right, coarse_rows, baseline_rows, chance, inside, threshold)
        if title:
            fig.suptitle(title, fontsize=11)
        save_png(fig, path)


def _nc1_panel(ax: Axes, coarse_rows: Sequence[dict[str, Any]],
               baseline_rows: Sequence[dict[str, Any]], chance: float,
               inside: Sequence[bool] | None, threshold: float | None) -> None:
    rows = [row for row in coarse_rows if row.get("coarse_nc1") and
            row.get("recovery_test_accuracy") is not None]
    flags = None
    if inside is not None:
        by_epoch = dict(zip((row["epoch"] for row in coarse_rows), inside, strict=True))
        flags = np.array([by_epoch[row["epoch"]] for row in rows], bool)
    nc1 = np.array([row["coarse_nc1"] for row in rows], float)
    recovered = np.array([row["recovery_test_accuracy"] for row in rows], float)
    recovery_against_nc1(ax, nc1, recovered, label="recovered, test", inside=flags)
    _, errors = _series(baseline_rows, "test_error", _accuracy)
    if len(errors):
        ax.axhline(errors[-1], color=color(1), linestyle="--", linewidth=1.2,
                   label=f"trained on fine labels, test (final: {errors[-1]:.3f})")
    ax.axhline(chance, color="0.45", linewidth=1.0, linestyle="-.", label="chance")
    if len(nc1):
        nc1_collapse_axis(ax, threshold)
    ax.set(ylabel="recovered fine accuracy (test)",
           title="recovery while collapse deepens")
    handles = ax.get_legend_handles_labels()[0]
    # below the axes: inside, it would cover the baseline or the last points
    ax.legend(handles=handles + (terminal_legend_handles() if flags is not None else []),
              loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2)


def projection_figure(panels: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]],
                      class_names: Sequence[str], path: str | os.PathLike,
                      title: str | None = None) -> None:
    """Scatter plots of 2-D projections, one colour per fine class.

    Parameters
    ----------
    panels : sequence of (title, points, labels, centres)
        ``points`` of shape (n, 2), ``labels`` of shape (n,) holding indices into
        ``class_names``, ``centres`` of shape (k, 2) marked with crosses (or None).
    class_names : sequence of str
        Legend entry of each label index.
    """
    with figure_style():
        fig, axes = panel_grid(len(panels), size=(4.6, 4.2))
        for ax, (name, points, labels, centres) in zip(axes, panels, strict=True):
            handles = []
            for k, label in enumerate(class_names):
                mine = points[labels == k]
                ax.scatter(mine[:, 0], mine[:, 1], s=7, alpha=0.55, color=color(k),
                           edgecolors="none")
                handles.append(Line2D([], [], linestyle="", marker="o", color=color(k),
                                      label=f"fine class {label}"))
            if centres is not None:
                ax.scatter(centres[:, 0], centres[:, 1], marker="X", s=120, color="black",
                           edgecolors="white", linewidths=1.0)
                handles.append(Line2D([], [], linestyle="", marker="X", color="black",
                                      markersize=8, label="k-means cluster means"))
            ax.set(title=name, xlabel="PC 1", ylabel="PC 2")
            ax.legend(handles=handles, loc="best")
        if title:
            fig.suptitle(title, fontsize=11)
        save_png(fig, path)
