"""Figures of a kernel sweep: mean +- std of log10 NC1 against d0, one panel per N."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_COLORS = {"data": "black", "nngp": "tab:blue", "ntk": "tab:orange", "adaptive": "tab:green",
           "network": "tab:red"}
_STYLES = {"erf": "-", "relu": "--"}


def plot_sweep(document: dict[str, Any], folder: str | os.PathLike,
               prefix: str = "kernel_nc1") -> list[Path]:
    """Write ``<prefix>.png`` (log10 NC1) and ``<prefix>_relative.png`` (log10 of NC1 over
    the data's NC1) into ``folder``; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for relative, suffix in ((False, ""), (True, "_relative")):
        figure = _figure(document, relative)
        path = folder / f"{prefix}{suffix}.png"
        figure.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(figure)
        paths.append(path)
    return paths


def _figure(document: dict[str, Any], relative: bool) -> plt.Figure:
    config, summary = document["config"], document["summary"]
    sizes = config["sizes"]
    figure, axes = plt.subplots(1, len(sizes), figsize=(3.6 * len(sizes) + 0.4, 3.9),
                                sharey=True, squeeze=False)
    key = "log10_relative" if relative else "log10_nc1"
    names = [n for n in summary if not (relative and n == "data")]
    for ax, n in zip(axes[0], sizes, strict=True):
        for name in names:
            rows = [r for r in summary[name] if r["n"] == n and r[f"{key}_mean"] is not None]
            if not rows:
                continue
            d0 = [r["d0"] for r in rows]
            mean = [r[f"{key}_mean"] for r in rows]
            std = [r[f"{key}_std"] for r in rows]
            method, _, activation = name.partition("-")
            ax.errorbar(d0, mean, yerr=std, color=_COLORS[method],
                        linestyle=_STYLES.get(activation, ":"), marker="o", markersize=3.5,
                        capsize=2.5, linewidth=1.4, label=_label(name, summary[name]))
        if relative:
            ax.axhline(0.0, color="black", linewidth=0.8, linestyle=":")
        ax.set_xscale("log", base=2)
        ax.set_xticks(config["dims"], [str(d) for d in config["dims"]])
        ax.set_title(f"N = {n}")
        ax.set_xlabel("input dimension d0")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("log10(NC1 / NC1 data)" if relative else "log10 NC1  (mean ± std)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4),
                  bbox_to_anchor=(0.5, -0.02), frameon=False)
    title = "NC1 relative to the data" if relative else "NC1 of the features"
    figure.suptitle(f"{title} on D1 (mean={config['mean']}, std={config['std']}, "
                    f"n0/n1={config['imbalance']:g}, {config['draws']} draws)")
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
