"""Fine-label recovery on MNIST-1D (1-D CNN) and scikit-learn digits (MLP): what helps.

Each variant is one ``nclab finegrained`` comparison (a coarse run on 5 superclasses of
2 digits, ``mod`` pairing, and a fine-label baseline of the same network and budget)
with one setting changed from the base. Runs are kept under ``--runs`` and resumed, so
an interrupted sweep continues, and a finished one is only re-read: running the script
again with every variant collects the table. Results: docs/finegrained.md.

    PYTHONPATH=src python experiments/finegrained_sweep.py \\
        --json docs/results/finegrained_sweep.json

``--variants NAME...`` runs a subset (for example, half in each of two processes).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from nclab.cli.finegrained import comparison_configs, run_comparison
from nclab.io import write_json
from nclab.train import TrainConfig

MNIST1D = TrainConfig(dataset="mnist1d", model="cnn1d", epochs=30, log_points=12)
DIGITS = TrainConfig(dataset="digits", model="mlp", epochs=60, log_points=12)

#: name -> (base config, changes, what it tests)
VARIANTS: dict[str, tuple[TrainConfig, dict[str, Any], str]] = {
    "mnist1d": (MNIST1D, {}, "cnn1d as it is (flattened maps), 30 epochs"),
    "mnist1d-wd5e-3": (MNIST1D, {"weight_decay": 5e-3}, "10x weight decay"),
    "mnist1d-wd0": (MNIST1D, {"weight_decay": 0.0}, "no weight decay"),
    "mnist1d-150ep": (MNIST1D, {"epochs": 150}, "5x longer"),
    "mnist1d-lr0.01": (MNIST1D, {"lr": 0.01}, "5x smaller learning rate"),
    "mnist1d-mse": (MNIST1D, {"loss": "mse"}, "squared loss"),
    "mnist1d-hidden1024": (MNIST1D, {"model_options": {"hidden": 1024}}, "4x wider features"),
    "mnist1d-max": (MNIST1D, {"model_options": {"pool": "max"}}, "global max pooling"),
    "mnist1d-mean": (MNIST1D, {"model_options": {"pool": "mean"}}, "global average pooling"),
    "mnist1d-max-wide": (MNIST1D, {"model_options": {"pool": "max",
                                                     "channels": [64, 128, 128]}},
                         "global max pooling, 2x channels"),
    "digits-mlp3": (DIGITS, {}, "mlp 3 x 256 (the default mlp)"),
    "digits-mlp2": (DIGITS, {"model_options": {"widths": [256, 256]}}, "mlp 2 x 256"),
    "digits-mlp1": (DIGITS, {"model_options": {"widths": [256]}}, "mlp 1 x 256"),
    "digits-mlp1-wd0": (DIGITS, {"model_options": {"widths": [256]}, "weight_decay": 0.0},
                        "mlp 1 x 256, no weight decay"),
    "digits-mlp1x1024": (DIGITS, {"model_options": {"widths": [1024]}}, "mlp 1 x 1024"),
    "digits-mlp1x1024-200ep": (DIGITS, {"model_options": {"widths": [1024]}, "epochs": 200},
                               "mlp 1 x 1024, 200 epochs"),
}
OPTIONS = {"coarse_pairing": "mod", "num_coarse": 5, "coarse_seed": 0, "recovery_n_init": 10,
           "recovery_threads": 1}


def run_variant(name: str, runs: Path) -> dict[str, Any]:
    base, changes, what = VARIANTS[name]
    coarse, fine = comparison_configs(base.updated(**changes), OPTIONS)
    result = run_comparison(coarse, fine, runs / name, superclass=0, resume=True,
                            device="cpu", progress=False)
    keep = ("recovered_test_accuracy", "recovered_train_accuracy", "baseline_test_accuracy",
            "ratio", "coarse_test_accuracy", "coarse_train_error", "coarse_tpt_onset",
            "coarse_nc1", "fine_nc1", "time_s")
    best = max(result["history"], key=lambda row: row["recovery_test_accuracy"] or 0)
    return {"variant": name, "what": what, "dataset": base.dataset, "model": coarse.model,
            "changes": changes, **{key: result[key] for key in keep},
            "per_superclass_test": [s["test_accuracy"]
                                    for s in result["recovery"]["superclasses"]],
            "best_epoch": best["epoch"], "best_recovered_test": best["recovery_test_accuracy"]}


def show(rows: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="fine-label recovery, 5 superclasses of 2 digits (test set)")
    for column in ("variant", "recovered", "baseline", "ratio", "superclass acc",
                   "per superclass", "TPT from", "coarse nc1", "best (epoch)"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for r in rows:
        table.add_row(r["variant"], f"{r['recovered_test_accuracy']:.3f}",
                      f"{r['baseline_test_accuracy']:.3f}", f"{r['ratio']:.3f}",
                      f"{r['coarse_test_accuracy']:.3f}",
                      " ".join(f"{a:.2f}" for a in r["per_superclass_test"]),
                      str(r["coarse_tpt_onset"] or "never"),
                      f"{r['coarse_nc1']:.3g}",
                      f"{r['best_recovered_test']:.3f} ({r['best_epoch']})")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--runs", type=Path, default=Path("runs/finegrained-sweep"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)  # small models: one thread is fastest on shared cores
    console = Console(width=max(Console().width, 140))
    rows = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("variants", total=len(args.variants))
        for name in args.variants:
            progress.update(task, description=name)
            rows.append(run_variant(name, args.runs))
            progress.advance(task)
    show(rows, console)
    if args.json:
        write_json(args.json, {"options": OPTIONS, "rows": rows})
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
