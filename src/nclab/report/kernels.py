"""Figures of a kernel sweep: mean +- std of log10 NC1 against d0, one panel per N."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from nclab.core.io import make_dirs
from nclab.report.style import color, figure_style, save_png

#: One palette colour per method (the data in black, the palette's seventh colour).
_COLORS = {"data": color(6), "nngp": color(0), "ntk": color(1), "adaptive": color(2),
           "network": color(3)}
_STYLES = {"erf": "-", "relu": "--"}
_MARKERS = {"data": "o", "nngp": "o", "ntk": "^", "adaptive": "D", "network": "s"}


def plot_sweep(document: dict[str, Any], folder: str | os.PathLike,
               prefix: str = "kernel_nc1") -> list[Path]:
    """Write the sweep's figures into ``folder`` and return their paths.

    ``<prefix>.png``: log10 NC1 against d0; ``<prefix>_relative.png``: log10 of NC1 over
    the data's NC1; ``<prefix>_training.png`` (when networks were trained): the hidden
    layer's NC1 along training.
    """
    folder = Path(folder)
    make_dirs(folder)
    paths = []
    with figure_style():
        figures = {"": _figure(document, False), "_relative": _figure(document, True)}
        networks = [n for n in document["config"]["series"] if n.startswith("network-")]
        if networks and document["records"]:
            figures["_training"] = _training_figure(document, networks[0])
        for suffix, figure in figures.items():
            path = folder / f"{prefix}{suffix}.png"
            save_png(figure, path)
            paths.append(path)
    return paths


def _panels(count: int, height: float) -> tuple[Figure, list[Any]]:
    """One row of ``count`` panels sharing the y axis."""
    figure = Figure(figsize=(3.6 * count + 0.4, height))
    return figure, list(figure.subplots(1, count, sharey=True, squeeze=False)[0])


def _training_figure(document: dict[str, Any], name: str) -> Figure:
    """Mean log10 NC1 of the hidden layer against the training step, one line per d0."""
    config = document["config"]
    sizes = config["sizes"]
    figure, axes = _panels(len(sizes), 3.6)
    colors = colormaps["viridis"]
    for ax, n in zip(axes, sizes, strict=True):
        for i, d0 in enumerate(config["dims"]):
            runs = [r["series"][name]["history"] for r in document["records"]
                    if r["n"] == n and r["d0"] == d0 and r["series"][name]["status"] == "ok"]
            if not runs:
                continue
            steps = np.array(runs[0]["step"], dtype=float)
            curve = np.mean([np.log10(run["nc1"]) for run in runs], axis=0)
            ax.plot(np.maximum(steps, 0.5), curve, marker=".",
                    color=colors(i / max(1, len(config["dims"]) - 1)), label=f"d0 = {d0}")
        ax.set_xscale("log")
        ax.set_title(f"N = {n}")
        ax.set_xlabel("training step (0 drawn at 0.5)")
    axes[0].set_ylabel("log10 NC1 of the hidden layer")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels),
                  bbox_to_anchor=(0.5, -0.02), frameon=False)
    figure.suptitle(f"{name}: hidden-layer NC1 during full-batch gradient descent\n"
                    f"(width {config['network_width']}, lr {config['lr']:g}, "
                    f"weight decay {config['weight_decay']:g}; mean of {config['draws']} draws)")
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    return figure


def _figure(document: dict[str, Any], relative: bool) -> Figure:
    config, summary = document["config"], document["summary"]
    sizes = config["sizes"]
    figure, axes = _panels(len(sizes), 3.9)
    key = "log10_relative" if relative else "log10_nc1"
    names = [n for n in summary if not (relative and n == "data")]
    for ax, n in zip(axes, sizes, strict=True):
        for name in names:
            rows = [r for r in summary[name] if r["n"] == n and r[f"{key}_mean"] is not None]
            if not rows:
                continue
            d0 = [r["d0"] for r in rows]
            mean = [r[f"{key}_mean"] for r in rows]
            std = [r[f"{key}_std"] for r in rows]
            method, _, activation = name.partition("-")
            ax.errorbar(d0, mean, yerr=std, color=_COLORS[method],
                        linestyle=_STYLES.get(activation, ":"), marker=_MARKERS[method],
                        markersize=4 if method == "network" else 3.5,
                        capsize=2.5, linewidth=1.4, label=_label(name, summary[name]))
        if relative:
            ax.axhline(0.0, color="black", linewidth=0.8, linestyle=":")
        ax.set_xscale("log", base=2)
        ax.set_xticks(config["dims"], [str(d) for d in config["dims"]])
        ax.set_title(f"N = {n}")
        ax.set_xlabel("input dimension d0")
    axes[0].set_ylabel("log10(NC1 / NC1 data)" if relative else "log10 NC1  (mean ± std)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4),
                  bbox_to_anchor=(0.5, -0.02), frameon=False)
    title = "NC1 relative to the data" if relative else "NC1 of the features"
    figure.suptitle(f"{title} on D1\n(class means ±{config['mean']:g}·1, std "
                    f"{config['std']:g}, n0/n1 = {config['imbalance']:g}, {config['draws']} draws)")
    figure.tight_layout(rect=(0, 0.12, 1, 1))
    return figure


def _label(name: str, rows: list[dict[str, Any]]) -> str:
    failed: dict[str, int] = {}
    for row in rows:
        for status, count in row["failed"].items():
            failed[status] = failed.get(status, 0) + count
    if not failed:
        return name
    return f"{name} ({', '.join(f'{v} {k}' for k, v in sorted(failed.items()))})"
