"""Minority collapse in trained networks (Fang et al., PNAS 2021): a sweep of R.

Run:  python experiments/minority_collapse_trained.py [--dataset gaussian]
          [--data-opt train_per_class=2000 ...] [--widths 256,256,256] [--epochs 200]
          [--weight-decay 5e-4] [--ratios 1,0.1,0.02,0.01,0.005] [--seeds 0,1]
          [--out runs/minority-trained]

One ``nclab train --imbalance step:R,5`` run per R and seed (cross-entropy, SGD, the
default recipe otherwise, one thread), each in OUT/R<R>-seed<seed>. Prints, per run, at
the last epoch: the class counts n_max and n_min, the training error and the training
accuracy of the minority classes, the mean pairwise
cosine of the minority classifier rows (``minority_collapse_weights``) and of the centred
minority class means of the training split (``minority_collapse_means``), the mean norm of
the minority rows over the majority's, the mean bias of the minority rows minus the
majority's, the test accuracy of the majority and of the minority classes, the largest
minority cosine of W among the logged epochs and the wall time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from nclab.capture.tracking import classifier_parameters
from nclab.train import TrainConfig, Trainer


def option(text: str) -> tuple[str, Any]:
    """KEY=VALUE with a numeric VALUE (``train_per_class=2000``, ``separation=3``)."""
    key, value = text.split("=", 1)
    number = float(value)
    return key, int(number) if number.is_integer() and "." not in value else number


def head_summary(trainer: Trainer, minority: list[int]) -> dict[str, float]:
    """Norm ratio of the minority rows of W to the majority's, and the bias gap."""
    weight, bias = classifier_parameters(trainer.model, trainer.classifier)
    norms = weight.norm(dim=1).numpy()
    is_minority = np.isin(np.arange(len(norms)), minority)
    gap = float("nan") if bias is None else float(
        bias.numpy()[is_minority].mean() - bias.numpy()[~is_minority].mean())
    return {"norm_ratio": float(norms[is_minority].mean() / norms[~is_minority].mean()),
            "bias_gap": gap}


def number(value: float | None) -> float:
    """A logged metric, NaN where it is undefined (None: a zero minority row)."""
    return float("nan") if value is None else value


def run(args: argparse.Namespace, ratio: float, seed: int) -> str:
    config = TrainConfig(
        dataset=args.dataset, dataset_options=dict(args.data_opt), per_class=args.per_class,
        imbalance=f"step:{ratio:g},5", model="mlp",
        model_options={"widths": [int(w) for w in args.widths.split(",")]},
        epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
        batch_size=args.batch_size, seed=seed, log_points=args.log_points)
    start = time.perf_counter()
    trainer = Trainer(config, Path(args.out) / f"R{ratio:g}-seed{seed}", progress=False)
    summary = trainer.fit()
    seconds = time.perf_counter() - start
    info = trainer.data.info["imbalance"]
    head = head_summary(trainer, info["minority"])
    last = summary["final"]
    # None where a minority row is zero (its cosine is undefined)
    logged = [row.get("train_minority_collapse_weights") for row in trainer.state.rows]
    peak = max((value for value in logged if value is not None), default=float("nan"))
    columns = [(last["train_error"], 9, 4), (last["train_minority_accuracy"], 9, 3),
               (number(last["train_minority_collapse_weights"]), 10, 3),
               (number(last["train_minority_collapse_means"]), 10, 3),
               (head["norm_ratio"], 15, 3), (head["bias_gap"], 8, 3),
               (last["test_majority_accuracy"], 8, 3), (last["test_minority_accuracy"], 8, 3),
               (peak, 11, 3)]
    return (f"{ratio:<6g} {seed:4d} {info['counts'][0]:5d} {info['counts'][-1]:5d} "
            + " ".join(f"{value:{width}.{digits}f}" for value, width, digits in columns)
            + f" {seconds:5.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="gaussian")
    parser.add_argument("--data-opt", type=option, action="append", default=[])
    parser.add_argument("--per-class", type=int, default=None)
    parser.add_argument("--widths", default="256,256,256")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--log-points", type=int, default=6)
    parser.add_argument("--ratios", default="1,0.1,0.02,0.01,0.005")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--out", default="runs/minority-trained")
    args = parser.parse_args()
    print("R      seed n_max n_min train_err train_min cos(W_min) cos(M_min) |w_min|/|w_maj| "
          "bias_gap test_maj test_min peak_cos(W)  time", flush=True)
    for ratio in (float(r) for r in args.ratios.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            print(run(args, ratio, seed), flush=True)


if __name__ == "__main__":
    main()
