"""Convergence figure of a batch of UFM runs."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nclab.core.io import write_atomic  # noqa: E402
from nclab.ufm._base import UFMSolution  # noqa: E402

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
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    grad_label = "Riemannian gradient norm" if riemannian else "gradient norm"
    for ax, values, name in ((axes[0], gap, label), (axes[1], grad, grad_label)):
        ax.plot(values, color="tab:blue", alpha=max(0.15, 1 / len(solution.seeds) ** 0.5), lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"{name}  (floor {FLOOR:g})")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].axhline(tol, color="tab:red", ls="--", lw=1, label=f"tolerance {tol:g}")
    axes[0].legend(loc="upper right")
    fig.suptitle(f"{title}  ({len(solution.seeds)} random starts)", fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
    return Path(path)
