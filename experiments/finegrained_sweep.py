"""Fine-label recovery on MNIST-1D (1-D CNN) and scikit-learn digits (MLP): what helps.

Each variant is one ``nclab finegrained`` comparison (a coarse run on 5 superclasses of
2 digits, ``mod`` pairing, and a fine-label baseline of the same network and budget)
with one setting changed from the base. Runs are kept under ``--runs`` and resumed, so
an interrupted sweep continues, and a finished one is only re-read: running the script
again with every variant collects the table. Results: docs/finegrained.md.

    PYTHONPATH=src python experiments/finegrained_sweep.py \\
        --json docs/results/finegrained_sweep.json

``--variants NAME...`` runs a subset (for example, half in each of two processes); ``--json``
then adds its rows to those already in the file.

Each row also gives a linear probe: a logistic regression fitted, inside each superclass,
on the coarse model's training features WITH the fine labels and scored on the test
samples of that (true) superclass. It says whether the fine labels are still in the
features at all, whatever k-means can find without labels; ``l2 rec.`` is the recovery
on L2-normalized features, and ``fine share`` the share of the within-superclass scatter
that lies between the fine-class means (mean over superclasses; see ``feature_checks``).
``input recovery`` is the
same k-means recovery on the raw inputs with the true superclasses: how much cluster
structure by fine class the data set itself has.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from nclab import capture
from nclab.cli.finegrained import comparison_configs, run_comparison
from nclab.core.io import write_json
from nclab.data import load_dataset
from nclab.finegrained import (
    CoarseLabeling,
    fine_scatter_shares,
    linear_probe_accuracy,
    recover_fine_labels,
)
from nclab.report.style import color, figure_style, panel_grid, save_png
from nclab.train import TrainConfig, Trainer
from nclab.train.batches import EvalBatches

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
    "mnist1d-max-20k": (MNIST1D, {"model_options": {"pool": "max"},
                                  "dataset_options": {"num_samples": 20000}},
                        "global max pooling, 16,000 training sequences"),
    "mnist1d-max-40k": (MNIST1D, {"model_options": {"pool": "max"},
                                  "dataset_options": {"num_samples": 40000}},
                        "global max pooling, 32,000 training sequences"),
    "mnist1d-max-nohidden": (MNIST1D, {"model_options": {"pool": "max", "hidden": 0}},
                             "global max pooling, no hidden layer (h: 64 pooled channels)"),
    "mnist1d-max-nohidden-256": (MNIST1D, {"model_options": {"pool": "max", "hidden": 0,
                                                             "channels": [32, 64, 256]}},
                                 "global max pooling, no hidden layer, 256 last channels"),
    **{f"mnist1d-max-hidden{width}": (MNIST1D, {"model_options": {"pool": "max",
                                                                  "hidden": width}},
                                      f"global max pooling, {256 // width}x narrower features "
                                      f"({width})") for width in (32, 16, 8, 4)},
    **{f"mnist1d-max-hidden8-seed{seed}": (
        MNIST1D, {"model_options": {"pool": "max", "hidden": 8}, "seed": seed},
        f"global max pooling, features of width 8, training seed {seed}") for seed in (1, 2)},
    "mnist1d-max-hidden8-20k": (MNIST1D, {"model_options": {"pool": "max", "hidden": 8},
                                          "dataset_options": {"num_samples": 20000}},
                                "global max pooling, features of width 8, 16,000 training "
                                "sequences"),
    **{f"mnist1d-max-random{seed}": (
        MNIST1D, {"model_options": {"pool": "max"},
                  "options": {"coarse_pairing": "random", "coarse_seed": seed}},
        f"global max pooling, random pairing (seed {seed})") for seed in (0, 1, 2)},
    **{f"mnist1d-max-seed{seed}": (MNIST1D, {"model_options": {"pool": "max"}, "seed": seed},
                                   f"global max pooling, training seed {seed}")
       for seed in (1, 2)},
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


def feature_checks(config: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """What the final coarse features hold beyond what plain k-means recovers.

    ``linear_probe_test``: test accuracy of per-superclass logistic regressions fitted with
    the fine labels (true superclasses). ``l2_recovered_test``: the recovery of
    ``recover_fine_labels`` (predicted superclasses) on L2-normalized features.
    ``fine_variance_share``: per superclass, the share of the scatter of its training
    features that lies between its fine-class means (the R^2 of the fine label; k-means
    with k = 2 cuts along the direction of largest spread, so a small share means the
    fine split is not what it finds). ``top_pc_share``: the share of the first principal
    direction, for comparison.
    """
    trainer = Trainer(config, run_dir, device="cpu", progress=False)
    trainer.fit(resume=True)  # a finished run: only loads the final model
    data = trainer.data
    captured = {split: capture.features(trainer.model, EvalBatches(d.x, d.y, 1024))
                for split, d in (("train", data.train), ("test", data.test))}
    h = {split: c.features.double().numpy() for split, c in captured.items()}
    fine = {"train": data.fine.train.y.numpy(), "test": data.fine.test.y.numpy()}
    probe = linear_probe_accuracy(h["train"], fine["train"], data.train.y, h["test"],
                                  fine["test"], data.test.y)
    shares = fine_scatter_shares(h["train"], fine["train"], data.train.y)
    unit = {split: v / np.linalg.norm(v, axis=1, keepdims=True).clip(1e-12)
            for split, v in h.items()}
    l2 = recover_fine_labels(unit["train"], fine["train"], data.train.y, unit["test"],
                             captured["test"].outputs.argmax(dim=1), fine["test"],
                             labeling=data.labeling, n_init=OPTIONS["recovery_n_init"],
                             threads=1)
    return {"linear_probe_test": probe,
            "l2_recovered_test": l2.test_accuracy,
            "fine_variance_share": list(shares.fine_share),
            "top_pc_share": list(shares.top_pc_share)}


def input_recovery(dataset: str) -> float:
    """Test accuracy of k-means recovery on the flattened inputs, true superclasses."""
    data = load_dataset(dataset)
    labeling = CoarseLabeling.create(OPTIONS["coarse_pairing"], data.num_classes,
                                     OPTIONS["num_coarse"], seed=OPTIONS["coarse_seed"])
    result = recover_fine_labels(data.train.x.flatten(1), data.train.y,
                                 labeling.coarse(data.train.y), data.test.x.flatten(1),
                                 labeling.coarse(data.test.y), data.test.y, labeling=labeling,
                                 n_init=OPTIONS["recovery_n_init"], threads=1)
    return result.test_accuracy


def run_variant(name: str, runs: Path) -> dict[str, Any]:
    base, changes, what = VARIANTS[name]
    config = base.updated(**changes)
    # a variant's own options (a pairing, say) take precedence over the sweep's
    coarse, fine = comparison_configs(config, {**OPTIONS, **config.options})
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
            "superclass_members": [s["fine_classes"] for s in result["recovery"]["superclasses"]],
            "best_epoch": best["epoch"], "best_recovered_test": best["recovery_test_accuracy"],
            **feature_checks(coarse, runs / name / "coarse")}


def show(rows: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="fine-label recovery, 5 superclasses of 2 digits (test set)")
    for column in ("variant", "recovered", "baseline", "ratio", "superclass acc",
                   "per superclass", "TPT from", "coarse nc1", "best (epoch)", "probe",
                   "l2 rec.", "fine share"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for r in rows:
        table.add_row(r["variant"], f"{r['recovered_test_accuracy']:.3f}",
                      f"{r['baseline_test_accuracy']:.3f}", f"{r['ratio']:.3f}",
                      f"{r['coarse_test_accuracy']:.3f}",
                      " ".join(f"{a:.2f}" for a in r["per_superclass_test"]),
                      str(r["coarse_tpt_onset"] or "never"),
                      f"{r['coarse_nc1']:.3g}",
                      f"{r['best_recovered_test']:.3f} ({r['best_epoch']})",
                      f"{r['linear_probe_test']:.3f}", f"{r['l2_recovered_test']:.3f}",
                      f"{np.mean(r['fine_variance_share']):.3f}")
    console.print(table)


def share_figure(rows: list[dict[str, Any]], path: Path) -> None:
    """Per superclass, recovered accuracy against the fine share of the scatter; and the
    ratio against the feature width of the max-pooled cnn1d (every seed run)."""
    with figure_style():
        fig, (left, right) = panel_grid(2, ncols=2, size=(4.6, 3.6))
        checked = [r for r in rows if "fine_variance_share" in r]
        for i, dataset in enumerate(dict.fromkeys(r["dataset"] for r in checked)):
            mine = [r for r in checked if r["dataset"] == dataset]
            left.scatter([x for r in mine for x in r["fine_variance_share"]],
                         [y for r in mine for y in r["per_superclass_test"]], s=14,
                         color=color(i), alpha=0.75,
                         label=f"{dataset} ({len(mine)} runs x 5 superclasses)")
        left.axhline(0.5, color="0.4", linestyle=":", linewidth=1.2, label="chance")
        left.set(xlabel="fine share of within-superclass scatter (train features)",
                 ylabel="recovered fine accuracy (test)",
                 title="k-means finds the split when it\ncarries much of the spread")
        left.legend(loc="lower right")
        widths = {}
        for r in checked:
            options = r["changes"].get("model_options", {})
            if (r["dataset"] == "mnist1d" and options.get("pool") == "max"
                    and set(r["changes"]) <= {"model_options", "seed"} and set(options) <= {
                        "pool", "hidden"}):
                if options.get("hidden", 256):  # width 0 (no hidden layer) is another network
                    widths.setdefault(options.get("hidden", 256), []).append(r["ratio"])
        for width, ratios in sorted(widths.items()):
            right.scatter([width] * len(ratios), ratios, color=color(0), s=18)
        if widths:
            x = sorted(widths)
            right.plot(x, [np.mean(widths[w]) for w in x], color=color(0), label="mean over seeds")
        right.axhline(0.9, color=color(1), linestyle="--", linewidth=1.2, label="target 0.9")
        right.set_xscale("log", base=2)
        right.set_xticks(sorted(widths), [str(w) for w in sorted(widths)])
        right.minorticks_off()
        right.set(xlabel="feature width (hidden units)", ylabel="ratio recovered / baseline",
                  title="MNIST-1D, cnn1d with global max pooling")
        right.legend(loc="lower left")
        save_png(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--runs", type=Path, default=Path("runs/finegrained-sweep"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--figure", type=Path,
                        help="PNG of recovery against the fine share of the scatter (every "
                             "row of --json that has it)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small models: one thread is fastest on shared cores
    console = Console(width=max(Console().width, 150))
    rows = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("variants", total=len(args.variants))
        for name in args.variants:
            progress.update(task, description=name)
            rows.append(run_variant(name, args.runs))
            progress.advance(task)
    show(rows, console)
    inputs = {name: input_recovery(name) for name in dict.fromkeys(r["dataset"] for r in rows)}
    for name, value in inputs.items():
        console.print(f"input recovery, {name}: {value:.3f}")
    if args.json:
        result = merged(args.json, rows, inputs)
        write_json(args.json, result)
        console.print(f"wrote {args.json}")
        rows = result["rows"]  # the figure shows every row of the file
    if args.figure:
        share_figure(rows, args.figure)
        console.print(f"wrote {args.figure}")


def merged(path: Path, rows: list[dict[str, Any]], inputs: dict[str, float]) -> dict[str, Any]:
    """The rows of this run added to those already in ``path`` (same variant: replaced),
    in the order of ``VARIANTS``, so that subsets of the sweep can be run one at a time."""
    old = json.loads(path.read_text()) if path.exists() else {"rows": [], "input_recovery": {}}
    by_name = {row["variant"]: row for row in old["rows"]} | {row["variant"]: row for row in rows}
    order = {name: i for i, name in enumerate(VARIANTS)}
    return {"options": OPTIONS,
            "rows": sorted(by_name.values(), key=lambda row: order.get(row["variant"], len(order))),
            "input_recovery": {**old["input_recovery"], **inputs}}


if __name__ == "__main__":
    main()
