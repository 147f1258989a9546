"""Figures of fine-label recovery (SPEC section 6): curves over epochs, one projection."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from nclab.report.style import color, figure_style, panel_grid, save_png


def _series(rows: Sequence[dict[str, Any]], key: str,
            transform: Any = None) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(row["epoch"], row[key]) for row in rows if row.get(key) is not None]
    if not pairs:
        return np.empty(0), np.empty(0)
    epochs, values = (np.asarray(v, dtype=float) for v in zip(*pairs, strict=True))
    return epochs, values if transform is None else transform(values)


def _epoch_axis(ax: Axes) -> None:
    """Log-scaled epochs labelled 1, 2, 5, 10... rather than in powers of ten."""
    ax.set_xscale("log")
    ax.set_xlabel("epoch")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(FuncFormatter(
        lambda value, _: f"{value:g}" if f"{value:g}"[0] in "25" else ""))


def _accuracy(errors: np.ndarray) -> np.ndarray:
    return 1.0 - errors


def _plot(ax: Axes, series: tuple[np.ndarray, np.ndarray], label: str, k: int,
          style: str = "-", marker: str = "o") -> None:
    epochs, values = series
    if len(values):
        ax.plot(epochs, values, linestyle=style, marker=marker, color=color(k), label=label)


def recovery_figure(coarse_rows: Sequence[dict[str, Any]],
                    baseline_rows: Sequence[dict[str, Any]], chance: float,
                    path: str | os.PathLike, title: str | None = None) -> None:
    """Recovered fine accuracy against epoch, beside the nc1 of the same features.

    Parameters
    ----------
    coarse_rows : list of dict
        Logged rows of the coarse run (``recovery_*``, ``coarse_nc1``, ``fine_nc1``,
        ``test_error``).
    baseline_rows : list of dict
        Logged rows of the fine-label baseline (``test_error``, ``train_nc1``).
    chance : float
        Accuracy of a uniform guess inside the true superclass.
    """
    with figure_style():
        fig, (left, right) = panel_grid(2, size=(5.2, 3.9))
        _plot(left, _series(coarse_rows, "recovery_test_accuracy"), "recovered, test", 0)
        _plot(left, _series(coarse_rows, "recovery_train_accuracy"), "recovered, train", 0,
              "--", "s")
        _plot(left, _series(baseline_rows, "test_error", _accuracy),
              "trained on fine labels, test", 1, "-", "^")
        _plot(left, _series(coarse_rows, "test_error", _accuracy),
              "superclass right, test (upper bound)", 2, ":", "v")
        left.axhline(chance, color="0.45", linewidth=1.0, linestyle="-.", label="chance")
        _epoch_axis(left)
        left.set(ylabel="fine-label accuracy", title="fine labels recovered from coarse features")
        left.legend(loc="lower right")
        _plot(right, _series(coarse_rows, "coarse_nc1"), "coarse model, coarse labels", 0)
        _plot(right, _series(coarse_rows, "fine_nc1"), "coarse model, fine labels", 0, "--", "s")
        _plot(right, _series(baseline_rows, "train_nc1"), "fine model, fine labels", 1, "-", "^")
        _epoch_axis(right)
        right.set(yscale="log", ylabel="NC1 (training set)",
                  title="NC1 = Tr(Σ_W Σ_B⁺)/C of the same features")
        right.legend(loc="best")
        if title:
            fig.suptitle(title, fontsize=11)
        save_png(fig, path)


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
