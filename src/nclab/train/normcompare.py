"""Normalized vs regularized training on the same data, model and budget.

Yaras et al. (NeurIPS 2022) report that feature normalization makes real networks
collapse faster. :func:`compare_normalized` trains two runs that differ only in how
the last layer is constrained:

- ``normalized``: cross-entropy on ``tau * W (h / ||h||)``, unit-norm rows of W, no
  bias (``task="normalized"``), weight decay ``normalized_weight_decay`` (0 by default,
  as in Yaras et al.'s code);
- ``regularized``: cross-entropy with a biased linear classifier and weight decay on
  every parameter (``task="classification"``).

Both share every other setting of the base config (data, model, epochs, batch size,
learning-rate schedule, seed). The result holds, for each run, the training-set
curves of nc1, etf_error_means (NC2) and wh_duality (NC3), and the first logged epoch
at which train nc1 falls below a threshold (None when it never does).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from nclab.errors import NCInputError
from nclab.io import write_json
from nclab.report.runs import RunRecord, load_run
from nclab.report.style import color, figure_style, mark_epoch, panel_grid, save_png
from nclab.train.config import TrainConfig
from nclab.train.normalized import NORMALIZED_TASK, check_tau, normalized_config
from nclab.train.rundir import RunDir
from nclab.train.trainer import Trainer

#: (metric, panel title) of the figure, measured on the training set.
CURVES = (
    ("nc1", "NC1: Tr(Σ_W Σ_B⁺)/C"),
    ("etf_error_means", "NC2: etf_error_means"),
    ("wh_duality", "NC3: wh_duality"),
)
RUN_NAMES = ("normalized", "regularized")
RESULT_JSON, FIGURE_PNG = "normcompare.json", "normcompare.png"


def comparison_configs(base: TrainConfig, tau: float, weight_decay: float,
                       normalized_weight_decay: float = 0.0) -> dict[str, TrainConfig]:
    """The two configs: ``base`` made normalized (``tau``) and regularized (``weight_decay``).

    Parameters
    ----------
    base : TrainConfig
        Data, model and budget shared by both runs; its task must be a plain
        classification (its ``weight_decay`` and ``task`` are replaced).
    tau : float
        Inverse temperature of the normalized run.
    weight_decay : float
        Weight decay of the regularized run, > 0.
    normalized_weight_decay : float
        Weight decay of the normalized run.
    """
    if base.task not in ("classification", NORMALIZED_TASK):
        raise NCInputError(f"the comparison trains classification tasks; got task '{base.task}'")
    if not weight_decay > 0:
        raise NCInputError(f"the regularized run needs a weight decay > 0; got {weight_decay}")
    options = {key: value for key, value in base.options.items() if key != "tau"}
    plain = base.updated(task="classification", options=options)
    return {
        "normalized": normalized_config(plain.updated(weight_decay=normalized_weight_decay),
                                        check_tau(tau)),
        "regularized": plain.updated(weight_decay=weight_decay),
    }


def epochs_to_reach(run: RunRecord, threshold: float, key: str = "train_nc1") -> int | None:
    """First logged epoch at which ``key`` is below ``threshold``; None if never."""
    epochs, values = run.series(key)
    below = epochs[values < threshold]
    return int(below[0]) if len(below) else None


def compare_normalized(
    base: TrainConfig,
    out: str | os.PathLike,
    *,
    tau: float,
    weight_decay: float,
    normalized_weight_decay: float = 0.0,
    threshold: float = 1e-2,
    device: str = "auto",
    progress: bool | Console = True,
    on_run: Callable[[str, TrainConfig], None] | None = None,
) -> dict[str, Any]:
    """Train both runs in ``out/normalized`` and ``out/regularized``; write JSON and figure.

    A run directory that already holds the same config is resumed (a finished run is
    not trained again); one with a different config is refused.

    Parameters
    ----------
    base, tau, weight_decay, normalized_weight_decay
        See :func:`comparison_configs`.
    out : path
        Output folder: the two run directories, ``normcompare.json`` and
        ``normcompare.png``.
    threshold : float
        The nc1 level whose first epoch is reported.
    device, progress
        Passed to :class:`Trainer`.
    on_run : callable, optional
        Called with (name, config) before each run starts (for a heading).

    Returns
    -------
    dict
        The content of ``normcompare.json``.
    """
    if not threshold > 0:
        raise NCInputError(f"threshold must be > 0; got {threshold}")
    out = Path(out)
    configs = comparison_configs(base, tau, weight_decay, normalized_weight_decay)
    for name, config in configs.items():
        if on_run is not None:
            on_run(name, config)
        run_dir = out / name
        Trainer(config, run_dir, device=device, progress=progress).fit(
            resume=RunDir(run_dir).read_config() is not None)
    runs = {name: load_run(out / name, name) for name in configs}
    result = {
        "threshold": threshold,
        "metric": "train_nc1",
        "tau": configs["normalized"].options["tau"],
        "runs": {name: _run_result(run, threshold) for name, run in runs.items()},
    }
    write_json(out / RESULT_JSON, result)
    comparison_figure(runs, out / FIGURE_PNG, threshold)
    return result


def _run_result(run: RunRecord, threshold: float) -> dict[str, Any]:
    last = run.rows[-1]
    keys = ["train_error", "test_error", "train_loss",
            *[f"{split}_{name}" for split in ("train", "test") for name, _ in CURVES]]
    curves = {"epoch": [row["epoch"] for row in run.rows]}
    curves.update({f"train_{name}": [row.get(f"train_{name}") for row in run.rows]
                   for name, _ in CURVES})
    return {
        "run_dir": str(run.path),
        "config": run.config,
        "epochs_to_threshold": epochs_to_reach(run, threshold),
        "tpt_onset": run.tpt_onset,
        "time_s": last.get("time_s"),
        "final": {"epoch": last["epoch"], **{key: last.get(key) for key in keys}},
        "curves": curves,
    }


def run_label(run: RunRecord) -> str:
    """Legend label: the run name with its tau or weight decay."""
    config = run.config
    if config.get("task") == NORMALIZED_TASK:
        return (f"{run.label} (τ = {config['options']['tau']:g}, "
                f"wd = {config.get('weight_decay', 0):g})")
    return f"{run.label} (wd = {config.get('weight_decay', 0):g})"


def comparison_figure(runs: dict[str, RunRecord], path: str | os.PathLike,
                      threshold: float) -> None:
    """Three panels (train nc1, etf_error_means, wh_duality vs epoch, log y), one colour
    per run; the threshold on the nc1 panel and the epoch each run reaches it."""
    with figure_style():
        fig, axes = panel_grid(len(CURVES), ncols=len(CURVES), size=(4.2, 3.4))
        for r, run in enumerate(runs.values()):
            for ax, (name, _) in zip(axes, CURVES, strict=True):
                epochs, values = run.series(f"train_{name}")
                keep = values > 0
                ax.plot(epochs[keep], values[keep], color=color(r), label=run_label(run))
            reached = epochs_to_reach(run, threshold)
            mark_epoch(axes[0], reached, colour=color(r),
                       label=f"{run.label} below {threshold:g}: epoch {reached}"
                       if reached is not None else None)
        axes[0].axhline(threshold, color="0.4", linestyle="--", linewidth=1.0,
                        label=f"nc1 = {threshold:g}")
        for ax, (_, title) in zip(axes, CURVES, strict=True):
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.set_yscale("log")
        axes[0].legend(loc="best")
        first = next(iter(runs.values())).config
        fig.suptitle(f"normalized vs regularized training: {first.get('model')} on "
                     f"{first.get('dataset')}, training set")
        save_png(fig, path)
