"""Fine-label recovery after coarse training (definitions §6): the comparison study.

:func:`run_comparison` trains the same network on superclass labels and on the fine
labels, recovers the fine labels from the coarse model's features by k-means inside
each superclass, and writes ``finegrained.json``, ``recovery.png`` (recovery against
epoch and against the coarse train nc1) and ``projection.png`` (PCA of one
superclass's features under both models). With ``until_collapse`` the coarse run stops
at the first logged epoch in the terminal phase (:class:`TerminalPhase`); the JSON says
whether the final coarse model is in it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from nclab import capture
from nclab.core.errors import NCInputError
from nclab.core.io import write_json
from nclab.finegrained import (
    CoarseSplits,
    FineRecovery,
    fine_scatter_shares,
    linear_probe_accuracy,
)
from nclab.report.finegrained import projection_figure, recovery_figure
from nclab.report.pages import setting_text
from nclab.report.style import lr_drop_epochs
from nclab.runs import RunDir
from nclab.train import StopWhen, TrainConfig, Trainer
from nclab.train.batches import EvalBatches
from nclab.train.finegrained import (
    RECOVERY_COLUMNS,
    ModelRecovery,
    TerminalPhase,
    make_recovery_evaluator,
    recover_from_model,
)
from nclab.train.threads import DEFAULT_THREADS

RESULT_JSON, RECOVERY_PNG, PROJECTION_PNG = "finegrained.json", "recovery.png", "projection.png"


def comparison_configs(base: TrainConfig, options: dict[str, Any]) -> tuple[TrainConfig,
                                                                              TrainConfig]:
    """The coarse run (task ``coarse``, recovery evaluator) and the fine-label baseline:
    the same network, data, optimizer and epochs; only the labels differ."""
    coarse = base.updated(task="coarse", evaluators=("recovery",),
                          options={**base.options, **options})
    fine = base.updated(task="classification", evaluators=("collapse",))
    return coarse, fine


def _train(config: TrainConfig, run_dir: Path, *, resume: bool, device: str,
           threads: int | None, progress: bool | Console,
           stop_when: TerminalPhase | None = None) -> tuple[Trainer, dict[str, Any]]:
    callbacks = [StopWhen(stop_when)] if stop_when is not None else []
    trainer = Trainer(config, run_dir, device=device, threads=threads, progress=progress,
                      callbacks=callbacks)
    return trainer, trainer.fit(resume=resume)


def _projection(recovery: ModelRecovery, data: CoarseSplits, baseline: Trainer, superclass: int,
                batch_size: int) -> tuple[list[tuple[str, Any, Any, Any]], dict[str, Any]]:
    """PCA panels of one superclass's training features: coarse model, fine model."""
    from sklearn.decomposition import PCA  # slow to import: only when a figure is drawn

    labeling = data.labeling
    if not 0 <= superclass < labeling.num_coarse:
        raise NCInputError(f"--superclass must be a superclass, in 0..K'-1 (K' = "
                           f"{labeling.num_coarse}); got {superclass}")
    members = np.asarray(labeling.members(superclass))
    rows = (data.train.y == superclass).numpy()
    fine = data.fine.train.y.numpy()[rows]
    index = np.searchsorted(members, fine)  # label -> position in members (sorted)
    recovered = np.searchsorted(members, recovery.result.train_recovered[rows])
    base_data = baseline.data.train
    base_h = capture.features(baseline.model, EvalBatches(base_data.x, base_data.y, batch_size))
    panels, variance = [], {}
    for name, features, centred in (
        ("trained on superclasses", recovery.train.features.numpy()[rows], True),
        ("trained on fine labels", base_h.features.numpy()[rows], False),
    ):
        pca = PCA(n_components=2).fit(features)
        points = pca.transform(features)
        centres = (np.stack([points[recovered == k].mean(axis=0) for k in range(len(members))
                             if (recovered == k).any()]) if centred else None)
        panels.append((name, points, index, centres))
        variance[name] = pca.explained_variance_ratio_.tolist()
    info = {"superclass": superclass, "fine_classes": members.tolist(),
            "explained_variance_ratio": variance}
    return panels, info


def terminal_flags(terminal: TerminalPhase, rows: list[dict[str, Any]]) -> list[bool]:
    """Per logged row: whether the run was in ``terminal``'s terminal phase there."""
    return [terminal(rows[:i + 1]) for i in range(len(rows))]


def _history(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"epoch": row["epoch"], **{key: row.get(key) for key in keys}} for row in rows]


def _logged_rows(trainer: Trainer) -> list[dict[str, Any]]:
    """Every row the run logged (those of an earlier, resumed invocation included)."""
    return trainer.run.read_rows()


def run_comparison(coarse_config: TrainConfig, fine_config: TrainConfig, out: Path, *,
                   superclass: int, resume: bool, device: str = "auto",
                   threads: int | None = DEFAULT_THREADS,
                   progress: bool | Console = False,
                   announce: Callable[[str], None] | None = None,
                   until_collapse: TerminalPhase | None = None,
                   baseline_dir: Path | None = None) -> dict[str, Any]:
    """Train both runs under ``out``, recover, write the JSON and figures; return the JSON.

    Parameters
    ----------
    coarse_config, fine_config : TrainConfig
        From :func:`comparison_configs`.
    out : Path
        Output folder: ``coarse/`` and ``fine/`` run folders, ``finegrained.json``,
        ``recovery.png`` and ``projection.png``.
    superclass : int
        The superclass drawn in the projection figure.
    resume : bool
        Continue the runs already in ``out`` (without it, runs there are refused).
    device, threads, progress
        Passed to :class:`~nclab.train.Trainer`.
    announce : callable, optional
        Called with a line of text before each stage (the two runs, the recovery).
    until_collapse : TerminalPhase, optional
        Stop the coarse run at the first logged epoch where it holds (within
        ``coarse_config.epochs``); the baseline always trains the whole budget.
    baseline_dir : Path, optional
        Run folder of the baseline (default ``out / "fine"``): comparisons that differ
        only in their pairing can share one (its config does not depend on the pairing).

    Returns
    -------
    dict
        Written to ``finegrained.json``. ``terminal_phase`` checks the final coarse
        model against the fixed definition (``TerminalPhase()``: zero training error,
        coarse train nc1 <= 0.05 and >= 10x below its value at the TPT onset);
        ``until_collapse`` (None without it) the same against the demanded one, with
        ``stopped_early``.
    """
    say = announce or (lambda text: None)
    baseline_dir = baseline_dir or out / "fine"
    if not resume and any(RunDir(path).read_config() is not None
                          for path in (out / "coarse", baseline_dir)):
        raise NCInputError(f"{out} already holds runs: pass --resume to continue them, or "
                           "choose another --out")
    say("[bold]1/2[/] training on superclass labels")
    coarse, coarse_summary = _train(coarse_config, out / "coarse", resume=resume, device=device,
                                    threads=threads, progress=progress, stop_when=until_collapse)
    say("[bold]2/2[/] training on fine labels (baseline)")
    fine, fine_summary = _train(fine_config, baseline_dir, resume=resume, device=device,
                                threads=threads, progress=progress)
    evaluator = make_recovery_evaluator(coarse_config)  # its n_init and threads
    say("recovering the fine labels of the final model")
    recovery = recover_from_model(coarse.model, coarse.data,
                                  batch_size=coarse_config.eval_batch_size,
                                  n_init=evaluator.n_init, seed=coarse_config.seed,
                                  threads=evaluator.threads)
    panels, projection = _projection(recovery, coarse.data, fine, superclass,
                                     coarse_config.eval_batch_size)
    result = recovery.result
    baseline = 1.0 - fine_summary["final"]["test_error"]
    coarse_rows, fine_rows = _logged_rows(coarse), _logged_rows(fine)
    summary = {
        "recovered_test_accuracy": result.test_accuracy,
        "recovered_train_accuracy": result.train_accuracy,
        "baseline_test_accuracy": baseline,
        "ratio": result.test_accuracy / baseline if baseline else None,
        "coarse_test_accuracy": result.test_coarse_accuracy,
        "coarse_train_error": coarse_summary["final"]["train_error"],
        "coarse_tpt_onset": coarse_summary["tpt_onset"],
        "baseline_tpt_onset": fine_summary["tpt_onset"],
        "chance_accuracy": result.chance_accuracy,
        "coarse_nc1": result.coarse_nc1, "fine_nc1": result.fine_nc1,
        "baseline_nc1": fine_summary["final"].get("train_nc1"),
        "epochs": coarse_config.epochs,
        "coarse_epochs_done": coarse_summary["epochs_done"],
        "terminal_phase": TerminalPhase().report(coarse_rows),
        "until_collapse": _until_report(until_collapse, coarse_rows, coarse_summary),
        "time_s": {"coarse": coarse_summary["time_s"], "fine": fine_summary["time_s"]},
        "device": coarse_summary["device"],
        "config": coarse_config.to_dict(), "baseline_config": fine_config.to_dict(),
        "recovery": result.to_dict(), "projection": projection,
        "scatter": fine_scatter_shares(recovery.train.features, coarse.data.fine.train.y,
                                       coarse.data.train.y).to_dict(),
        "linear_probe_test_accuracy": _probe(recovery, coarse.data),
        "history": [{**row, "terminal_phase": flag} for row, flag in zip(
            _history(coarse_rows, ("train_error", "test_error", *RECOVERY_COLUMNS)),
            terminal_flags(TerminalPhase(), coarse_rows), strict=True)],
        "baseline_history": _history(fine_rows, ("test_error", "train_nc1")),
        "runs": {"coarse": str(out / "coarse"), "fine": str(baseline_dir)},
    }
    write_json(out / RESULT_JSON, summary)
    _figures(coarse_config, result, coarse_rows, fine_rows, panels,
             coarse.data.fine.train.class_names, superclass, out,
             until_collapse or TerminalPhase())
    return summary


def _probe(recovery: ModelRecovery, data: CoarseSplits) -> float:
    """Fine labels read off the final coarse features by a probe fitted with them."""
    return linear_probe_accuracy(recovery.train.features, data.fine.train.y, data.train.y,
                                 recovery.test.features, data.fine.test.y, data.test.y)


def _until_report(until: TerminalPhase | None, rows: list[dict[str, Any]],
                  summary: dict[str, Any]) -> dict[str, Any] | None:
    if until is None:
        return None
    return {**until.report(rows), "stopped_early": bool(summary.get("stopped_early")),
            "epochs_done": summary["epochs_done"]}


def _figures(config: TrainConfig, result: FineRecovery, coarse_rows: list[dict[str, Any]],
             fine_rows: list[dict[str, Any]], panels: list[tuple[str, Any, Any, Any]],
             class_names: tuple[str, ...] | None, superclass: int, out: Path,
             terminal: TerminalPhase) -> None:
    settings = setting_text(config.model_options) if config.model_options else ""
    name = f"{config.model}{f' ({settings})' if settings else ''} on {config.dataset}"
    recovery_figure(coarse_rows, fine_rows, result.chance_accuracy, out / RECOVERY_PNG,
                    title=f"{name}: {result.num_fine} classes merged into "
                          f"{result.num_coarse} superclasses; {config.loss} loss",
                    inside=terminal_flags(terminal, coarse_rows),
                    threshold=terminal.threshold, lr_drops=lr_drop_epochs(config.to_dict()))
    members = result.labeling.members(superclass)
    projection_figure(panels, [class_names[y] if class_names else str(y) for y in members],
                      out / PROJECTION_PNG,
                      title=f"{name}: training features of superclass {superclass} "
                            f"(fine classes {list(members)})\nfirst two principal "
                            "components; colour = fine label")
