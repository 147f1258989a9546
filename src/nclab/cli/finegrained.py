"""``nclab finegrained``: train on superclasses, recover the fine labels, compare (SPEC 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import typer

from nclab.cli import options
from nclab.cli.app import app, console, value_table
from nclab.cli.train import parse_list, parse_pairs
from nclab.core.errors import NCInputError
from nclab.studies.finegrained import (
    PROJECTION_PNG,
    RECOVERY_PNG,
    RESULT_JSON,
    comparison_configs,
    run_comparison,
)
from nclab.train import TrainConfig


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
                             resume=resume, device=device, progress=console if progress else False,
                             announce=lambda text: console.print(text, highlight=False))
    print_result(summary, out)
