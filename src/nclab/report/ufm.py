"""Convergence figure of a batch of UFM runs."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from nclab.report.style import color, figure_style, save_png
from nclab.ufm import UFMSolution

#: Gaps below this are drawn at this value (a log axis cannot show 0 or rounding noise).
FLOOR = 1e-16


def plot_convergence(solution: UFMSolution, path: str | Path, *, tol: float, title: str = "",
                     riemannian: bool = False) -> Path:
    """Save objective gap and gradient norm against iteration, one line per run.

    The gap is f - f* when f* is known, else f - (best final objective over the runs).
    """
    reference = solution.optimal_value
    label = "f − f*"
    if reference is None:
        reference = float(solution.objective.min())
        label = "f − best final f over seeds"
    gap = (solution.trace.objective - reference).clamp_min(FLOOR).cpu().numpy()
    grad = solution.trace.grad_norm.clamp_min(FLOOR).cpu().numpy()
    grad_label = "Riemannian gradient norm" if riemannian else "gradient norm"
    with figure_style():
        fig = Figure(figsize=(11, 4.2), layout="constrained")
        axes = fig.subplots(1, 2)
        for ax, values, name in ((axes[0], gap, label), (axes[1], grad, grad_label)):
            ax.plot(values, color=color(0), alpha=max(0.15, 1 / len(solution.seeds) ** 0.5),
                    lw=1)
            ax.set_yscale("log")
            ax.set_xlabel("iteration")
            ax.set_ylabel(f"{name}  (floor {FLOOR:g})")
        axes[0].axhline(tol, color=color(1), ls="--", lw=1, label=f"tolerance {tol:g}")
        axes[0].legend(loc="upper right")
        fig.suptitle(f"{title}  ({len(solution.seeds)} random starts)", fontsize=10)
        save_png(fig, path)
    return Path(path)
