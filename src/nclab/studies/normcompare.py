"""Normalized vs regularized training on the same data, model and budget.

Yaras et al. (NeurIPS 2022) report that feature normalization makes real networks
collapse faster. :func:`compare_normalized` trains runs that differ only in how the
last layer is constrained:

- ``normalized-tau{tau}``: cross-entropy on ``tau * W (h / ||h||)``, unit-norm rows of
  W, no bias (``task="normalized"``), weight decay ``normalized_weight_decay`` (0 by
  default, as in Yaras et al.'s code);
- ``regularized-wd{wd}``: cross-entropy with a biased linear classifier and weight decay
  ``wd`` on every parameter (``task="classification"``).

One run per tau and one per weight decay given (one of each by default). They share
every other setting of the base config (data, model, epochs, batch size, learning-rate
schedule, seed). The result holds, for each run, the training-set curves of nc1,
etf_error_means (NC2) and wh_duality (NC3), and the first logged epoch at which train
nc1 falls below a threshold (None when it never does).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from matplotlib.lines import Line2D
from rich.console import Console

from nclab.core.errors import NCInputError
from nclab.core.io import write_json
from nclab.report.style import (
    color,
    epoch_axis,
    figure_style,
    panel_grid,
    readable_log_axis,
    save_png,
)
from nclab.runs import RunDir, RunRecord, load_run
from nclab.train.config import TrainConfig
from nclab.train.normalized import NORMALIZED_TASK, check_tau, normalized_config
from nclab.train.threads import DEFAULT_THREADS
from nclab.train.trainer import Trainer, TrainingDiverged

#: (metric, panel title) of the figure, measured on the training set.
CURVES = (
    ("nc1", "NC1: Tr(Σ_W Σ_B⁺)/C"),
    ("etf_error_means", "NC2: etf_error_means"),
    ("wh_duality", "NC3: wh_duality"),
)
RESULT_JSON, FIGURE_PNG = "normcompare.json", "normcompare.png"


def comparison_configs(base: TrainConfig, taus: Sequence[float],
                       weight_decays: Sequence[float],
                       normalized_weight_decay: float = 0.0) -> dict[str, TrainConfig]:
    """The configs of the comparison, by run name (normalized runs first).

    Parameters
    ----------
    base : TrainConfig
        Data, model and budget shared by every run; its task must be a classification
        (its ``task``, ``weight_decay`` and ``options["tau"]`` are replaced).
    taus : sequence of float
        One normalized run per inverse temperature.
    weight_decays : sequence of float
        One regularized run per weight decay, each > 0.
    normalized_weight_decay : float
        Weight decay of the normalized runs.

    Returns
    -------
    dict
        ``{"normalized-tau5": config, ..., "regularized-wd0.005": config, ...}``.
    """
    if base.task not in ("classification", NORMALIZED_TASK):
        raise NCInputError(f"the comparison trains classification tasks; got task '{base.task}'")
    if not taus or not weight_decays:
        raise NCInputError("the comparison needs at least one tau and one weight decay")
    for weight_decay in weight_decays:
        if not weight_decay > 0:
            raise NCInputError(f"a regularized run needs a weight decay > 0; got {weight_decay}")
    options = {key: value for key, value in base.options.items() if key != "tau"}
    plain = base.updated(task="classification", options=options)
    configs = {f"normalized-tau{check_tau(tau):g}": normalized_config(
        plain.updated(weight_decay=normalized_weight_decay), tau) for tau in taus}
    configs.update({f"regularized-wd{wd:g}": plain.updated(weight_decay=wd)
                    for wd in weight_decays})
    if len(configs) < len(taus) + len(weight_decays):
        raise NCInputError("a tau or a weight decay is given twice")
    return configs


def epochs_to_reach(run: RunRecord, threshold: float, key: str = "train_nc1") -> int | None:
    """First logged epoch at which ``key`` is below ``threshold``; None if never."""
    epochs, values = run.series(key)
    below = epochs[values < threshold]
    return int(below[0]) if len(below) else None


def compare_normalized(
    base: TrainConfig,
    out: str | os.PathLike,
    *,
    taus: Sequence[float],
    weight_decays: Sequence[float],
    normalized_weight_decay: float = 0.0,
    threshold: float = 1e-2,
    device: str = "auto",
    threads: int | None = DEFAULT_THREADS,
    progress: bool | Console = True,
    on_run: Callable[[str, TrainConfig], None] | None = None,
    json_path: str | os.PathLike | None = None,
    figure_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train every run of the comparison in ``out/<run name>``; write JSON and figure.

    A run directory that already holds the same config is resumed (a finished run is
    not trained again); one with a different config is refused. A run that diverges
    (NaN loss) is reported with ``status: "diverged"`` and its epochs up to then; the
    others still run.

    Parameters
    ----------
    base, taus, weight_decays, normalized_weight_decay
        See :func:`comparison_configs`.
    out : path
        Output folder of the run directories (and, by default, of the result).
    threshold : float
        The nc1 level whose first epoch is reported.
    device, threads, progress
        Passed to :class:`Trainer`.
    on_run : callable, optional
        Called with (name, config) before each run starts (for a heading).
    json_path, figure_path : path, optional
        Where the result and the figure go; default ``out/normcompare.json`` and
        ``out/normcompare.png``.

    Returns
    -------
    dict
        The content of the JSON file: ``threshold``, ``metric`` and, by run name,
        ``kind``, ``tau``, ``weight_decay``, ``status``, ``epochs_to_threshold``,
        ``tpt_onset``, ``final`` (last logged epoch) and ``curves``.
    """
    if not threshold > 0:
        raise NCInputError(f"threshold must be > 0; got {threshold}")
    out = Path(out)
    configs = comparison_configs(base, taus, weight_decays, normalized_weight_decay)
    diverged: dict[str, str] = {}
    for name, config in configs.items():
        if on_run is not None:
            on_run(name, config)
        run = RunDir(out / name)
        summary = run.read_summary()
        if summary is not None and summary.get("status") == "diverged":
            diverged[name] = f"diverged in epoch {summary.get('diverged_epoch')}"
            continue  # a resumed run would diverge again in the same epoch
        try:
            Trainer(config, run.path, device=device, threads=threads, progress=progress).fit(
                resume=run.read_config() is not None)
        except TrainingDiverged as exc:  # one unstable setting must not stop the others
            diverged[name] = str(exc)
    runs = {name: load_run(out / name, name) for name in configs
            if RunDir(out / name).read_rows()}
    result = {
        "threshold": threshold,
        "metric": "train_nc1",
        "runs": {name: {**(_run_result(runs[name], threshold) if name in runs else
                           _empty_result(configs[name], out / name)),
                        "status": "diverged" if name in diverged else "complete",
                        "message": diverged.get(name)}
                 for name in configs},
    }
    write_json(json_path or out / RESULT_JSON, result)
    if runs:
        comparison_figure(runs, figure_path or out / FIGURE_PNG, threshold)
    return result


def _is_normalized(run: RunRecord) -> bool:
    return run.config.get("task") == NORMALIZED_TASK


def _empty_result(config: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """The entry of a run that logged no epoch (it diverged in its first one)."""
    normalized = config.task == NORMALIZED_TASK
    return {"kind": "normalized" if normalized else "regularized",
            "tau": config.options["tau"] if normalized else None,
            "weight_decay": config.weight_decay, "run_dir": str(run_dir),
            "epochs_to_threshold": None, "tpt_onset": None, "time_s": None, "final": None,
            "curves": None, "config": config.to_dict()}


def _run_result(run: RunRecord, threshold: float) -> dict[str, Any]:
    last = run.rows[-1]
    keys = ["train_error", "test_error", "train_loss", "train_etf_error_weights",
            *[f"{split}_{name}" for split in ("train", "test") for name, _ in CURVES]]
    curves = {"epoch": [row["epoch"] for row in run.rows]}
    curves.update({f"train_{name}": [row.get(f"train_{name}") for row in run.rows]
                   for name, _ in CURVES})
    return {
        "kind": "normalized" if _is_normalized(run) else "regularized",
        "tau": run.config["options"]["tau"] if _is_normalized(run) else None,
        "weight_decay": run.config.get("weight_decay"),
        "run_dir": str(run.path),
        "epochs_to_threshold": epochs_to_reach(run, threshold),
        "tpt_onset": run.tpt_onset,
        "time_s": last.get("time_s"),
        "final": {"epoch": last["epoch"], **{key: last.get(key) for key in keys}},
        "curves": curves,
        "config": run.config,
    }


def run_label(run: RunRecord, threshold: float) -> str:
    """Legend label: kind, tau or weight decay, and when nc1 fell below ``threshold``."""
    config = run.config
    if _is_normalized(run):
        name = f"normalized, τ = {config['options']['tau']:g}"
        if config.get("weight_decay"):
            name += f", wd = {config['weight_decay']:g}"
    else:
        name = f"regularized, wd = {config.get('weight_decay', 0):g}"
    reached = epochs_to_reach(run, threshold)
    label = f"{name}: nc1 < {threshold:g} " + (
        f"at epoch {reached}" if reached is not None else "not reached")
    if run.summary is not None and run.summary.get("status") == "diverged":
        label += f" (diverged in epoch {run.summary.get('diverged_epoch')})"
    return label


def comparison_figure(runs: dict[str, RunRecord], path: str | os.PathLike,
                      threshold: float) -> None:
    """Three panels (train nc1, etf_error_means, wh_duality against epoch, log y); one
    colour per run, normalized runs solid and regularized runs dashed; a dot where nc1
    first falls below the threshold (dotted grey line)."""
    with figure_style():
        fig, axes = panel_grid(len(CURVES), ncols=len(CURVES), size=(4.4, 3.7))
        handles = []
        for r, run in enumerate(runs.values()):
            style: Literal["-", "--"] = "-" if _is_normalized(run) else "--"
            for ax, (name, _) in zip(axes, CURVES, strict=True):
                epochs, values = run.series(f"train_{name}")
                keep = values > 0
                ax.plot(epochs[keep], values[keep], color=color(r), linestyle=style)
            reached = epochs_to_reach(run, threshold)
            if reached is not None:
                axes[0].plot([reached], [run.value_at("train_nc1", reached)], "o",
                             color=color(r), markersize=6, zorder=3)
            handles.append(Line2D([], [], color=color(r), linestyle=style,
                                  label=run_label(run, threshold)))
        axes[0].axhline(threshold, color="0.4", linestyle=":", linewidth=1.3)
        first = next(iter(runs.values())).config
        drops = _lr_drop_epochs(first)
        for ax, (name, title) in zip(axes, CURVES, strict=True):
            epoch_axis(ax, drops)  # log epochs, as Papyan et al.'s; the lr drops marked
            ax.set_title(title if ax is not axes[0] else f"{title}; dotted: {threshold:g}")
            ax.set_ylabel(f"{name} (training set)")
            ax.set_yscale("log")
            readable_log_axis(ax.yaxis)
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3),
                   fontsize=9)
        note = (f"; dash-dot-dot lines: lr × {first.get('lr_gamma'):g} after epochs "
                f"{', '.join(map(str, drops))}" if drops else "")
        fig.suptitle(f"normalized vs regularized training: {first.get('model')} on "
                     f"{first.get('dataset')}, training set{note}")
        save_png(fig, path)


def _lr_drop_epochs(config: dict[str, Any]) -> list[int]:
    """The epochs after which the learning rate drops (as ``learning_rate`` applies them)."""
    epochs = config.get("epochs", 0)
    return sorted({round(f * epochs) for f in config.get("lr_milestones", ())
                   if 0 < round(f * epochs) < epochs})
