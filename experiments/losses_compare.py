"""Cross-entropy, label smoothing and the focal loss (and squared error) at one budget.

Run:  PYTHONPATH=src python experiments/losses_compare.py
          [--datasets digits mnist1d] [--losses ce ls:0.1 focal:2 mse] [--seeds 0 1]
          [--epochs 350] [--log-points 30] [--out runs/losses]
          [--figure docs/figures/losses_nc1.png] [--json docs/results/losses_compare.json]

Trains the trainer's default network and recipe (``mlp``: the MLP of docs/training.md;
SGD lr 0.05, momentum 0.9, weight decay 5e-4, batch 128, lr / 10 after 1/3 and 2/3 of the
epochs) once per data set, loss and seed, changing nothing but the loss, and prints per
run: the final training and test error, train NC1 at about 1/10 and 1/3 of the run and at
the end, the first logged epoch with train NC1 below ``--threshold``, the final NC2
(``etf_error_means``, ``etf_error_weights``) and NC3 (``self_duality``), and NC2 at a
common NC1 level (the largest final train NC1 of the data set's runs, which every run
reaches: Guo et al. compare NC2 at equal NC1). Then one line per loss with the means over
the seeds. Runs that finished are read back rather than trained again.

The papers: Zhou et al. (NeurIPS 2022) prove that cross-entropy, label smoothing, the
focal loss and squared error share the simplex ETF as the only global minimizer of the
UFM and find, with large ResNets on CIFAR-10/100 trained long enough, the same collapse
and test accuracy for all; Guo et al. (TMLR 2025, "Cross entropy versus label smoothing:
a neural collapse perspective") find, with deep convolutional networks on CIFAR-10,
CIFAR-100, STL-10 and Tiny ImageNet, that label smoothing collapses faster (lower NC1 at
the same epoch) and, at equal NC1, has a smaller NC2.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.io import write_json
from nclab.core.losses import ClassificationLoss
from nclab.data import DATASETS
from nclab.report.style import (
    color,
    epoch_axis,
    figure_style,
    lr_drop_epochs,
    panel_grid,
    readable_log_axis,
    save_png,
)
from nclab.runs import RunRecord, load_run
from nclab.train import TrainConfig, Trainer

#: The columns of a run's log that the comparison reads, per logged epoch.
SERIES = ("train_nc1", "train_etf_error_means", "train_etf_error_weights",
          "train_self_duality", "train_error", "test_error")


def train_run(config: TrainConfig, run_dir: Path) -> RunRecord:
    """Train ``config`` into ``run_dir`` (or read it back when it finished before)."""
    done = (run_dir / "summary.json").is_file() and load_run(run_dir).summary.get(
        "status") == "complete"
    if not done:
        resume = (run_dir / "config.json").is_file()
        Trainer(config, run_dir, progress=False, threads=1).fit(resume=resume)
    return load_run(run_dir)


def value_near(run: RunRecord, key: str, epoch: float) -> tuple[int, float]:
    """(logged epoch, value) of ``key`` at the logged epoch nearest to ``epoch``."""
    epochs, values = run.series(key)
    index = int(np.argmin(np.abs(np.log(np.maximum(epochs, 1)) - np.log(max(epoch, 1)))))
    return int(epochs[index]), float(values[index])


def first_below(run: RunRecord, key: str, level: float) -> int | None:
    """The first logged epoch where ``key`` <= ``level``; None if never."""
    epochs, values = run.series(key)
    hits = np.flatnonzero(values <= level)
    return int(epochs[hits[0]]) if hits.size else None


def run_row(run: RunRecord, epochs: int, threshold: float) -> dict[str, Any]:
    """The numbers of one run that the table prints."""
    final = {key: float(run.series(key)[1][-1]) for key in SERIES}
    early_epoch, early = value_near(run, "train_nc1", epochs / 10)
    mid_epoch, mid = value_near(run, "train_nc1", epochs / 3)
    return {
        "loss": run.config["loss"], "seed": run.config["seed"],
        "dataset": run.config["dataset"], **{f"final_{k}": v for k, v in final.items()},
        "nc1_early_epoch": early_epoch, "nc1_early": early,
        "nc1_mid_epoch": mid_epoch, "nc1_mid": mid,
        "epoch_nc1_below": first_below(run, "train_nc1", threshold),
        "tpt_onset": run.summary.get("tpt_onset"), "time_s": run.summary.get("time_s"),
    }


def at_common_nc1(run: RunRecord, level: float) -> tuple[int | None, float | None]:
    """(epoch, etf_error_means) at the first logged epoch with train NC1 <= ``level``."""
    epoch = first_below(run, "train_nc1", level)
    if epoch is None:
        return None, None
    return epoch, run.value_at("train_etf_error_means", epoch)


def show(value: float | None, spec: str = ".3g") -> str:
    return "never" if value is None else format(value, spec)


def print_table(dataset: str, rows: Sequence[dict[str, Any]], threshold: float,
                level: float) -> None:
    """One line per run, then the means over the seeds per loss."""
    early, mid = rows[0]["nc1_early_epoch"], rows[0]["nc1_mid_epoch"]
    print(f"\n{dataset}: train nc1 at epochs {early}, {mid} and the end; "
          f"nc2 = etf_error_means; nc2@nc1 = etf_error_means at the first epoch with "
          f"nc1 <= {level:.3g}")
    header = (f"{'loss':>8} {'seed':>4} {'train err':>9} {'test err':>8} "
              f"{f'nc1@{early}':>9} {f'nc1@{mid}':>9} {'nc1 end':>9} "
              f"{f'ep nc1<{threshold:g}':>11} {'nc2 end':>8} {'nc2 W':>8} {'nc3':>8} "
              f"{'nc2@nc1':>13} {'onset':>5} {'time':>6}")
    print(header)
    for r in rows:
        at = f"{show(r['nc2_at_level'])} (ep {show(r['epoch_at_level'], 'd')})"
        print(f"{r['loss']:>8} {r['seed']:>4} {r['final_train_error']:>9.4f} "
              f"{r['final_test_error']:>8.4f} {r['nc1_early']:>9.3g} {r['nc1_mid']:>9.3g} "
              f"{r['final_train_nc1']:>9.3g} {show(r['epoch_nc1_below'], 'd'):>11} "
              f"{r['final_train_etf_error_means']:>8.3g} "
              f"{r['final_train_etf_error_weights']:>8.3g} "
              f"{r['final_train_self_duality']:>8.3g} {at:>13} "
              f"{show(r['tpt_onset'], 'd'):>5} {r['time_s']:>5.0f}s")
    print("means over seeds:")
    for loss in dict.fromkeys(r["loss"] for r in rows):
        mine = [r for r in rows if r["loss"] == loss]

        def mean(key: str, group: list[dict[str, Any]] = mine) -> float:
            return float(np.mean([r[key] for r in group]))

        print(f"{loss:>8}  test accuracy {1 - mean('final_test_error'):.4f}  "
              f"nc1 {mean('nc1_early'):.3g} / {mean('nc1_mid'):.3g} / "
              f"{mean('final_train_nc1'):.3g}  nc2 {mean('final_train_etf_error_means'):.3g}"
              f"  nc2@nc1 {mean('nc2_at_level'):.3g}")


def draw(runs: dict[str, list[RunRecord]], path: Path) -> None:
    """Train NC1 (top) and NC2 (bottom) against the epoch, one column per data set,
    one colour per loss, one line per seed (solid: the first seed)."""
    datasets = list(runs)
    losses = list(dict.fromkeys(r.config["loss"] for rs in runs.values() for r in rs))
    with figure_style():
        fig, axes = panel_grid(2 * len(datasets), ncols=len(datasets), size=(4.4, 3.2))
        for column, dataset in enumerate(datasets):
            seeds = sorted({r.config["seed"] for r in runs[dataset]})
            for row, key in enumerate(("train_nc1", "train_etf_error_means")):
                ax = axes[row * len(datasets) + column]
                for run in runs[dataset]:
                    epochs, values = run.series(key)
                    first = run.config["seed"] == seeds[0]
                    ax.plot(epochs, values, color=color(losses.index(run.config["loss"])),
                            linestyle="-" if first else "--", alpha=0.9 if first else 0.6,
                            label=run.config["loss"] if first else None)
                epoch_axis(ax, lr_drop_epochs(runs[dataset][0].config))
                ax.set_yscale("log")
                readable_log_axis(ax.yaxis)
                ax.set_ylabel(f"train {key.removeprefix('train_')}")
                ax.set_title(f"{dataset}, mlp" if row == 0 else "")
        axes[0].legend(title=f"loss (dashed: seed {seeds[-1]})" if len(seeds) > 1 else "loss")
        save_png(fig, path)


def check_names(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Stop with one line on a bad loss or data set name before any run trains."""
    try:
        args.losses = [ClassificationLoss.parse(text, "--losses").text for text in args.losses]
    except NCInputError as error:
        parser.error(str(error))
    unknown = [name for name in args.datasets if name not in DATASETS]
    if unknown:
        parser.error(f"--datasets: unknown {', '.join(unknown)}; choose from "
                     f"{', '.join(DATASETS)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist1d"])
    parser.add_argument("--losses", nargs="+", default=["ce", "ls:0.1", "focal:2", "mse"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=350)
    parser.add_argument("--log-points", type=int, default=30)
    parser.add_argument("--threshold", type=float, default=0.1,
                        help="report the first logged epoch with train nc1 below this")
    parser.add_argument("--out", type=Path, default=Path("runs/losses"))
    parser.add_argument("--figure", type=Path, default=Path("docs/figures/losses_nc1.png"))
    parser.add_argument("--json", type=Path, default=None, help="write every row here")
    args = parser.parse_args()
    check_names(parser, args)
    torch.set_num_threads(1)
    started = time.perf_counter()
    records: dict[str, list[RunRecord]] = {}
    table: list[dict[str, Any]] = []
    for dataset in args.datasets:
        records[dataset] = []
        for loss in args.losses:
            for seed in args.seeds:
                config = TrainConfig(dataset=dataset, loss=loss, seed=seed,
                                     epochs=args.epochs, log_points=args.log_points)
                tag = f"{dataset}-{loss.replace(':', '')}-{args.epochs}-seed{seed}"
                records[dataset].append(train_run(config, args.out / tag))
                print(f"done {tag}", flush=True)
        rows = [run_row(run, args.epochs, args.threshold) for run in records[dataset]]
        level = max(r["final_train_nc1"] for r in rows)
        for row, run in zip(rows, records[dataset], strict=True):
            row["epoch_at_level"], row["nc2_at_level"] = at_common_nc1(run, level)
            row["common_nc1_level"] = level
        print_table(dataset, rows, args.threshold, level)
        table.extend(rows)
    draw(records, args.figure)
    print(f"\nfigure: {args.figure}; wall time {time.perf_counter() - started:.0f} s")
    if args.json is not None:
        write_json(args.json, {"epochs": args.epochs, "log_points": args.log_points,
                               "rows": table})


if __name__ == "__main__":
    main()
