"""``nclab finegrained``: train on superclasses, recover the fine labels, compare (SPEC 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import typer

from nclab import capture
from nclab.cli import options
from nclab.cli.app import app, console, value_table
from nclab.cli.train import parse_list, parse_pairs
from nclab.core.errors import NCInputError
from nclab.core.io import write_json
from nclab.finegrained import CoarseSplits, FineRecovery
from nclab.report.finegrained import projection_figure, recovery_figure
from nclab.runs import RunDir
from nclab.train import TrainConfig, Trainer
from nclab.train.batches import EvalBatches
from nclab.train.finegrained import (
    RECOVERY_COLUMNS,
    ModelRecovery,
    make_recovery_evaluator,
    recover_from_model,
)

RESULT_JSON, RECOVERY_PNG, PROJECTION_PNG = "finegrained.json", "recovery.png", "projection.png"


def comparison_configs(base: TrainConfig, options: dict[str, Any]) -> tuple[TrainConfig,
                                                                              TrainConfig]:
    """The coarse run (task ``coarse``, recovery evaluator) and the fine-label baseline:
    the same network, data, optimizer and epochs; only the labels differ."""
    coarse = base.updated(task="coarse", evaluators=("recovery",),
                          options={**base.options, **options})
    fine = base.updated(task="classification", evaluators=("collapse",))
    return coarse, fine


def _train(config: TrainConfig, run_dir: Path, heading: str, *, resume: bool, device: str,
           progress: bool) -> tuple[Trainer, dict[str, Any]]:
    console.print(heading, highlight=False)
    trainer = Trainer(config, run_dir, device=device, progress=console if progress else False)
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


def _history(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"epoch": row["epoch"], **{key: row.get(key) for key in keys}} for row in rows]


def _logged_rows(trainer: Trainer) -> list[dict[str, Any]]:
    """Every row the run logged (those of an earlier, resumed invocation included)."""
    return trainer.run.read_rows()


def run_comparison(coarse_config: TrainConfig, fine_config: TrainConfig, out: Path, *,
                   superclass: int, resume: bool, device: str, progress: bool) -> dict[str, Any]:
    """Train both runs under ``out``, recover, write the JSON and figures; return the JSON."""
    if not resume and any(RunDir(out / name).read_config() is not None
                          for name in ("coarse", "fine")):
        raise NCInputError(f"{out} already holds runs: pass --resume to continue them, or "
                           "choose another --out")
    coarse, coarse_summary = _train(coarse_config, out / "coarse",
                                    "[bold]1/2[/] training on superclass labels",
                                    resume=resume, device=device, progress=progress)
    fine, fine_summary = _train(fine_config, out / "fine",
                                "[bold]2/2[/] training on fine labels (baseline)",
                                resume=resume, device=device, progress=progress)
    evaluator = make_recovery_evaluator(coarse_config)  # its n_init and threads
    with console.status("recovering the fine labels of the final model"):
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
        "time_s": {"coarse": coarse_summary["time_s"], "fine": fine_summary["time_s"]},
        "device": coarse_summary["device"],
        "config": coarse_config.to_dict(), "baseline_config": fine_config.to_dict(),
        "recovery": result.to_dict(), "projection": projection,
        "history": _history(coarse_rows, ("test_error", *RECOVERY_COLUMNS)),
        "baseline_history": _history(fine_rows, ("test_error", "train_nc1")),
        "runs": {"coarse": str(out / "coarse"), "fine": str(out / "fine")},
    }
    write_json(out / RESULT_JSON, summary)
    _figures(coarse_config, result, coarse_rows, fine_rows, panels,
             coarse.data.fine.train.class_names, superclass, out)
    return summary


def _figures(config: TrainConfig, result: FineRecovery, coarse_rows: list[dict[str, Any]],
             fine_rows: list[dict[str, Any]], panels: list[tuple[str, Any, Any, Any]],
             class_names: tuple[str, ...] | None, superclass: int, out: Path) -> None:
    settings = ", ".join(f"{key}={value}" for key, value in config.model_options.items())
    name = f"{config.model}{f' ({settings})' if settings else ''} on {config.dataset}"
    recovery_figure(coarse_rows, fine_rows, result.chance_accuracy, out / RECOVERY_PNG,
                    title=f"{name}: {result.num_fine} classes merged into "
                          f"{result.num_coarse} superclasses")
    members = result.labeling.members(superclass)
    projection_figure(panels, [class_names[y] if class_names else str(y) for y in members],
                      out / PROJECTION_PNG,
                      title=f"{name}: training features of superclass {superclass} "
                            f"(fine classes {list(members)})\nfirst two principal "
                            "components; colour = fine label")


def print_result(summary: dict[str, Any], out: Path) -> None:
    lines = [
        ("recovered fine accuracy", summary["recovered_test_accuracy"]),
        ("fine-trained baseline accuracy", summary["baseline_test_accuracy"]),
        ("ratio recovered / baseline", summary["ratio"]),
        ("superclass accuracy (upper bound)", summary["coarse_test_accuracy"]),
        ("superclass training error", summary["coarse_train_error"]),
        ("first epoch with zero superclass training error", summary["coarse_tpt_onset"]),
        ("chance (1 / fine classes per superclass)", summary["chance_accuracy"]),
        ("recovered fine accuracy, train", summary["recovered_train_accuracy"]),
        ("NC1, coarse labels (coarse model, train)", summary["coarse_nc1"]),
        ("NC1, fine labels (coarse model, train)", summary["fine_nc1"]),
        ("NC1, fine labels (fine model, train)", summary["baseline_nc1"]),
    ]
    console.print(value_table("fine-label recovery (test set unless noted)", lines,
                              fmt=".4g", missing="never", header=False))
    for note in summary["recovery"]["warnings"]:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    console.print(f"wrote {out / RESULT_JSON}, {out / RECOVERY_PNG}, {out / PROJECTION_PNG}",
                  highlight=False)


@app.command("finegrained")
def finegrained_command(
    dataset: str = typer.Option("mnist1d", help="Data set name (its classes are the fine "
                                                "labels)."),
    root: Path = typer.Option(None, help="Folder of a data set read from files."),
    classes: str = typer.Option(None, help="Keep these fine classes, e.g. 0,1,2,3."),
    per_class: int = options.PER_CLASS,
    per_class_test: int = options.PER_CLASS_TEST,
    data_opt: list[str] = options.DATA_OPT,
    pairing: str = typer.Option("mod", help="How fine classes form superclasses: mod "
                                            "(y -> y mod K'), random, explicit."),
    num_coarse: int = typer.Option(None, help="K', the number of superclasses (default 5; "
                                              "read from the map with --pairing explicit)."),
    coarse_map: str = typer.Option(None, help="Explicit map, e.g. '0:0,1:0,2:1,3:1' or "
                                              "'0,0,1,1'."),
    pairing_seed: int = typer.Option(0, help="Seed of --pairing random."),
    model: str = typer.Option("cnn1d", help="Network name (cnn1d for 1-D sequences, mlp...)."),
    widths: str = options.WIDTHS,
    model_opt: list[str] = options.MODEL_OPT,
    epochs: int = typer.Option(30, help="Epochs of each of the two runs."),
    batch_size: int = options.BATCH_SIZE,
    lr: float = typer.Option(0.05, help="Learning rate."),
    momentum: float = options.MOMENTUM,
    weight_decay: float = typer.Option(5e-4, help="Weight decay."),
    milestones: str = typer.Option(None, help="Fractions of the run after which the lr is "
                                              "divided by 10 (default 0.333,0.667)."),
    seed: int = typer.Option(0, help="Seed of initialization, sample order and k-means."),
    log_points: int = typer.Option(12, help="Log-spaced epochs at which recovery is measured."),
    n_init: int = typer.Option(10, help="k-means restarts per superclass."),
    superclass: int = typer.Option(0, help="Superclass shown in the projection figure."),
    out: Path = typer.Option(None, help="Output folder (default runs/finegrained-DATASET-"
                                        "MODEL-seedSEED): coarse/ and fine/ run folders, "
                                        "JSON, figures."),
    resume: bool = typer.Option(False, "--resume", help="Continue interrupted runs in --out."),
    device: str = typer.Option("auto", help="auto (CUDA if available), cpu, cuda..."),
    threads: int = typer.Option(1, help="CPU threads of torch and k-means."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
) -> None:
    """Train on superclass labels and on the fine labels; recover the fine labels from the
    coarse model's features by k-means inside each superclass; compare the two."""
    if threads < 1:
        raise NCInputError(f"--threads must be >= 1; got {threads}")
    torch.set_num_threads(threads)
    model_options = parse_pairs(model_opt, "--model-opt")
    if widths is not None:
        model_options["widths"] = list(parse_list(widths, int, "--widths"))
    base = TrainConfig(
        dataset=dataset, root=None if root is None else str(root),
        classes=parse_list(classes, int, "--classes"), per_class=per_class,
        per_class_test=per_class_test, dataset_options=parse_pairs(data_opt, "--data-opt"),
        model=model, model_options=model_options, epochs=epochs, batch_size=batch_size, lr=lr,
        momentum=momentum, weight_decay=weight_decay, seed=seed, log_points=log_points,
        **({"lr_milestones": parse_list(milestones, float, "--milestones")}
           if milestones is not None else {}),
    )
    options: dict[str, Any] = {"coarse_pairing": pairing, "coarse_seed": pairing_seed,
                               "recovery_n_init": n_init, "recovery_threads": threads}
    if coarse_map is not None:
        options["coarse_map"] = coarse_map
    if num_coarse is not None or pairing != "explicit":
        options["num_coarse"] = 5 if num_coarse is None else num_coarse
    if superclass < 0 or superclass >= options.get("num_coarse", superclass + 1):
        raise NCInputError(f"--superclass must be a superclass, in 0..K'-1 (K' = "
                           f"{options.get('num_coarse', 'the number of superclasses')}); "
                           f"got {superclass}")
    coarse_config, fine_config = comparison_configs(base, options)
    out = out or Path("runs") / f"finegrained-{dataset}-{model}-seed{seed}"
    summary = run_comparison(coarse_config, fine_config, out, superclass=superclass,
                             resume=resume, device=device, progress=progress)
    print_result(summary, out)
