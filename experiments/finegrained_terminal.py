"""Fine-label recovery with the coarse model IN the terminal phase, over seeds and pairings.

Every run is one ``nclab finegrained --until-collapse 0.05`` comparison: the coarse
model trains until zero superclass training error and a coarse train nc1 at most 0.05
and at least 10x below its value at the TPT onset (``TerminalPhase()``), within the
epoch budget; the fine labels are then recovered from its features and compared with
the same network trained on the fine labels for the whole budget. Only runs whose final
coarse model is in the terminal phase count towards the summary; the others are listed.

- digits and MNIST-1D: 3 training seeds x 3 pairings (``mod``, two ``random``); the
  baseline depends on the seed only, so the three pairings of a seed share it;
- hierarchical Gaussian mixtures: the ``mod`` pairing of the data (its own hierarchy)
  over a sweep of ``fine_separation``.

Runs are kept under ``--runs`` and resumed, so a finished run is only re-read.

    PYTHONPATH=src python experiments/finegrained_terminal.py \\
        --json docs/results/finegrained_terminal.json \\
        --figure docs/figures/finegrained_terminal.png --examples docs/figures

Results and their discussion: docs/notes/finegrained.md.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.lines import Line2D
from rich.console import Console
from rich.table import Table

from nclab.core.io import write_json
from nclab.report.finegrained import (
    nc1_collapse_axis,
    recovery_against_nc1,
    terminal_legend_handles,
)
from nclab.report.style import color, figure_style, panel_grid, save_png
from nclab.studies.finegrained import comparison_configs, run_comparison
from nclab.train import TrainConfig
from nclab.train.finegrained import TerminalPhase

#: name -> (config, what it is). MSE with weight decay and batch normalization drives
#: nc1 down fast (studies/demo.py); see docs/notes/finegrained.md for the choices.
RECIPES: dict[str, tuple[TrainConfig, str]] = {
    "digits": (TrainConfig(
        dataset="digits", model="mlp",
        model_options={"widths": [256, 256, 256], "batch_norm": True}, loss="mse",
        lr=0.05, weight_decay=5e-3, epochs=120, log_points=40),
        "mlp 3 x 256 with batch norm, MSE, weight decay 5e-3, budget 120 epochs"),
    "mnist1d": (TrainConfig(
        dataset="mnist1d", per_class=200, model="cnn1d", model_options={"pool": "max"},
        loss="mse", lr=0.05, weight_decay=5e-3, epochs=200, lr_milestones=(0.67, 0.9),
        log_points=30),
        "cnn1d with global max pooling, MSE, weight decay 5e-3, lr / 10 after 2/3 and 9/10 "
        "of a 200-epoch budget, 2,000 training sequences"),
    "hierarchical": (TrainConfig(
        dataset="hierarchical", model="mlp",
        dataset_options={"dim": 32, "coarse_separation": 4.0, "noise": 1.0,
                         "train_per_class": 200, "test_per_class": 200},
        model_options={"widths": [256, 256], "batch_norm": True}, loss="mse", lr=0.05,
        weight_decay=5e-3, epochs=120, batch_size=100, log_points=40),
        "mlp 2 x 256 with batch norm, MSE, weight decay 5e-3, budget 120 epochs"),
}
PAIRINGS = (("mod", 0), ("random", 1), ("random", 2))
SEPARATIONS = (0.0, 2.0, 4.0, 6.0, 8.0)
#: The mixtures' run whose recovery figure --examples copies (the borderline case).
EXAMPLE_SEPARATION = 4.0
OPTIONS = {"num_coarse": 5, "recovery_n_init": 10, "recovery_threads": 1}
TARGET = 0.9


def run_one(dataset: str, seed: int, pairing: tuple[str, int], runs: Path,
            separation: float | None = None) -> dict[str, Any]:
    """One comparison; the row of the JSON."""
    base, _ = RECIPES[dataset]
    name, pairing_seed = pairing
    config = base.updated(seed=seed)
    where = runs / dataset / f"seed{seed}"
    if separation is not None:
        config = config.updated(dataset_options={**base.dataset_options,
                                                 "fine_separation": separation})
        where = runs / dataset / f"sep{separation:g}" / f"seed{seed}"
    coarse, fine = comparison_configs(config, {**OPTIONS, "coarse_pairing": name,
                                               "coarse_seed": pairing_seed})
    out = where / f"{name}{pairing_seed}"
    start = time.perf_counter()
    result = run_comparison(coarse, fine, out, superclass=0, resume=True, device="cpu",
                            until_collapse=TerminalPhase(), baseline_dir=where / "fine")
    return _row(dataset, seed, name, pairing_seed, separation, result, out,
                time.perf_counter() - start)


def _row(dataset: str, seed: int, pairing: str, pairing_seed: int, separation: float | None,
         result: dict[str, Any], out: Path, wall: float) -> dict[str, Any]:
    history = result["history"]
    baseline = result["baseline_test_accuracy"]
    phase = result["terminal_phase"]
    onset = next((r for r in history if r["epoch"] == phase["tpt_onset"]), None)
    best = max(history, key=lambda r: r["recovery_test_accuracy"] or 0.0)
    superclasses = result["recovery"]["superclasses"]
    return {
        "dataset": dataset, "seed": seed, "pairing": pairing, "pairing_seed": pairing_seed,
        "fine_separation": separation, "run": str(out),
        "superclass_members": [s["fine_classes"] for s in superclasses],
        "recovered_test_accuracy": result["recovered_test_accuracy"],
        "baseline_test_accuracy": baseline, "ratio": result["ratio"],
        "coarse_test_accuracy": result["coarse_test_accuracy"],
        "terminal_phase": phase, "epochs_done": result["coarse_epochs_done"],
        "epoch_budget": result["epochs"],
        "ratio_at_onset": onset["recovery_test_accuracy"] / baseline if onset else None,
        "best_ratio": best["recovery_test_accuracy"] / baseline, "best_epoch": best["epoch"],
        "best_coarse_nc1": best["coarse_nc1"],
        "per_superclass_test": [s["test_accuracy"] for s in superclasses],
        "linear_probe_test_accuracy": result["linear_probe_test_accuracy"],
        "fine_share": result["scatter"]["fine_share"],
        "top_pc_share": result["scatter"]["top_pc_share"],
        "history": [{key: r[key] for key in ("epoch", "coarse_nc1", "recovery_test_accuracy",
                                             "train_error", "terminal_phase")}
                    for r in history],
        "train_time_s": result["time_s"], "wall_s": round(wall, 1),
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per data set (per separation for the synthetic one): runs in the terminal phase,
    their ratio mean and standard deviation, the coarse nc1 they reached."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        key = row["dataset"] if row["fine_separation"] is None else \
            f"{row['dataset']} fine_separation={row['fine_separation']:g}"
        groups.setdefault(key, []).append(row)
    return {key: _group_summary(group) for key, group in groups.items()}


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    array = np.asarray(values, dtype=float)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1
            else 0.0, "min": float(array.min()), "max": float(array.max())}


def _group_summary(group: list[dict[str, Any]]) -> dict[str, Any]:
    inside = [r for r in group if r["terminal_phase"]["reached"]]
    return {
        "runs": len(group), "in_terminal_phase": len(inside),
        "ratio": _stats([r["ratio"] for r in inside]),
        "recovered_test_accuracy": _stats([r["recovered_test_accuracy"] for r in inside]),
        "baseline_test_accuracy": _stats([r["baseline_test_accuracy"] for r in inside]),
        "coarse_nc1_final": _stats([r["terminal_phase"]["nc1_final"] for r in inside]),
        "nc1_drop": _stats([r["terminal_phase"]["nc1_drop"] for r in inside]),
        "ratio_at_onset": _stats([r["ratio_at_onset"] for r in inside
                                  if r["ratio_at_onset"] is not None]),
        "best_ratio": _stats([r["best_ratio"] for r in inside]),
        "mean_fine_share": _stats([float(np.mean(r["fine_share"])) for r in inside]),
        "linear_probe_test_accuracy": _stats([r["linear_probe_test_accuracy"] for r in inside]),
        "meets_target": bool(inside) and min(r["ratio"] for r in inside) >= TARGET,
        "mean_meets_target": bool(inside) and float(np.mean([r["ratio"] for r in inside]))
        >= TARGET,
        "not_in_terminal_phase": [r["run"] for r in group if not r["terminal_phase"]["reached"]],
    }


def show(rows: list[dict[str, Any]], summary: dict[str, Any], console: Console) -> None:
    table = Table(title="fine-label recovery with the coarse model in the terminal phase "
                        "(test set)")
    for column in ("data", "seed", "pairing", "epochs", "TPT", "nc1 onset", "nc1 end", "drop",
                   "terminal", "recovered", "baseline", "ratio", "at onset", "probe",
                   "fine share"):
        table.add_column(column, justify="left" if column in ("data", "pairing") else "right")
    for r in rows:
        phase = r["terminal_phase"]
        data = r["dataset"] if r["fine_separation"] is None else f"sep {r['fine_separation']:g}"
        table.add_row(
            data, str(r["seed"]), f"{r['pairing']}{r['pairing_seed']}",
            f"{r['epochs_done']}/{r['epoch_budget']}", str(phase["tpt_onset"] or "never"),
            _fmt(phase["nc1_at_onset"]), _fmt(phase["nc1_final"]), _fmt(phase["nc1_drop"], ".3g"),
            "yes" if phase["reached"] else "[bold red]NO[/]",
            f"{r['recovered_test_accuracy']:.3f}", f"{r['baseline_test_accuracy']:.3f}",
            f"{r['ratio']:.3f}", _fmt(r["ratio_at_onset"], ".3f"),
            f"{r['linear_probe_test_accuracy']:.3f}", f"{np.mean(r['fine_share']):.3f}")
    console.print(table)
    for key, s in summary.items():
        ratio = s["ratio"]
        text = (f"ratio {ratio['mean']:.3f} ± {ratio['std']:.3f} (min {ratio['min']:.3f}, "
                f"max {ratio['max']:.3f}); coarse nc1 {s['coarse_nc1_final']['min']:.3g} to "
                f"{s['coarse_nc1_final']['max']:.3g}" if ratio else "no run in it")
        console.print(f"{key}: {s['in_terminal_phase']}/{s['runs']} runs in the terminal "
                      f"phase; {text}", highlight=False)


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "n/a" if value is None else format(value, spec)


#: Short panel titles (the recipes are in RECIPES and the docs).
TITLES = {"digits": "digits: mlp 3 x 256 + batch norm, MSE",
          "mnist1d": "MNIST-1D: cnn1d (global max pool), MSE"}
_SEED_STYLES = ("-", "--", ":")


def figure(rows: list[dict[str, Any]], path: Path) -> None:
    """Recovered / baseline against coarse train nc1 for every run of each data set, and
    per superclass the final recovery against the fine share of the scatter."""
    real = [d for d in dict.fromkeys(r["dataset"] for r in rows) if d != "hierarchical"]
    names = [f"{name}{seed}" for name, seed in PAIRINGS]
    with figure_style():
        fig, axes = panel_grid(len(real) + 2, ncols=2, size=(5.4, 4.0))
        for ax, dataset in zip(axes, real, strict=False):
            for r in (r for r in rows if r["dataset"] == dataset):
                _ratio_curve(ax, r, names.index(f"{r['pairing']}{r['pairing_seed']}"),
                             _SEED_STYLES[r["seed"] % 3])
            seeds = sorted({r["seed"] for r in rows if r["dataset"] == dataset})
            handles = [Line2D([], [], color=color(k), label=f"pairing {name}")
                       for k, name in enumerate(names)]
            handles += [Line2D([], [], color="0.3", linestyle=_SEED_STYLES[seed % 3],
                               label=f"seed {seed}") for seed in seeds]
            _ratio_axes(ax, TITLES.get(dataset, dataset), handles)
        ax = axes[len(real)]
        synthetic = [r for r in rows if r["dataset"] == "hierarchical"
                     and r["fine_separation"] != 0]  # 0: both at chance, the ratio says nothing
        for r in synthetic:
            k = SEPARATIONS.index(r["fine_separation"]) if r["fine_separation"] in SEPARATIONS \
                else 0
            _ratio_curve(ax, r, k, _SEED_STYLES[r["seed"] % 3])
        handles = [Line2D([], [], color=color(SEPARATIONS.index(sep) if sep in SEPARATIONS
                                              else 0), label=f"fine_separation {sep:g}")
                   for sep in dict.fromkeys(r["fine_separation"] for r in synthetic)]
        _ratio_axes(ax, "hierarchical mixtures: mlp 2 x 256 + batch norm, MSE", handles)
        _share_panel(axes[-1], rows)
        save_png(fig, path)


def _ratio_curve(ax: Any, row: dict[str, Any], k: int, style: str) -> None:
    history = [h for h in row["history"] if h["coarse_nc1"] and
               h["recovery_test_accuracy"] is not None]
    nc1 = np.array([h["coarse_nc1"] for h in history])
    ratio = np.array([h["recovery_test_accuracy"] for h in history]) / row[
        "baseline_test_accuracy"]
    recovery_against_nc1(ax, nc1, ratio, label="_", k=k, style=style,
                         inside=np.array([h["terminal_phase"] for h in history]))


def _ratio_axes(ax: Any, title: str, handles: list[Line2D]) -> None:
    ax.axhline(TARGET, color="0.2", linestyle="--", linewidth=1.0, label=f"target {TARGET:g}")
    nc1_collapse_axis(ax, TerminalPhase().threshold)
    ax.set(ylabel="recovered / fine-trained accuracy (test)", title=title)
    extra = ax.get_legend_handles_labels()[0]  # the target, the shaded region
    ax.legend(handles=handles + extra + terminal_legend_handles(), loc="lower right",
              fontsize=7, ncols=2)


def _share_panel(ax: Any, rows: list[dict[str, Any]]) -> None:
    inside = [r for r in rows if r["terminal_phase"]["reached"]]
    for i, dataset in enumerate(dict.fromkeys(r["dataset"] for r in inside)):
        mine = [r for r in inside if r["dataset"] == dataset]
        ax.scatter([x for r in mine for x in r["fine_share"]],
                   [y for r in mine for y in r["per_superclass_test"]], s=14, color=color(i),
                   alpha=0.75, label=f"{dataset} ({len(mine)} runs x 5 superclasses)")
    ax.axhline(0.5, color="0.4", linestyle="-.", linewidth=1.0, label="chance")
    ax.set(xlabel="fine share of the superclass's scatter (train features, final model)",
           ylabel="recovered fine accuracy of the superclass (test)",
           title="final models: recovery follows the fine share")
    ax.legend(loc="lower right", fontsize=7)


def copy_examples(rows: list[dict[str, Any]], folder: Path) -> list[Path]:
    """The recovery figure of the first run of each data set (seed 0, ``mod``; for the
    mixtures the one of ``EXAMPLE_SEPARATION``), as
    ``finegrained_terminal_<dataset>_recovery.png``."""
    written = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        first = next((r for r in mine if r["fine_separation"] in (None, EXAMPLE_SEPARATION)),
                     mine[0])
        target = folder / f"finegrained_terminal_{dataset}_recovery.png"
        shutil.copyfile(Path(first["run"]) / "recovery.png", target)
        written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--synthetic-seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--separations", nargs="+", type=float, default=list(SEPARATIONS))
    parser.add_argument("--runs", type=Path, default=Path("runs/finegrained-terminal"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--examples", type=Path,
                        help="folder for one recovery figure per data set")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small models: one thread is fastest on shared cores
    console = Console(width=max(Console().width, 160))
    rows = []
    for dataset in args.datasets:
        if dataset == "hierarchical":
            plan = [(seed, PAIRINGS[0], sep) for sep in args.separations
                    for seed in args.synthetic_seeds]
        else:
            plan = [(seed, pairing, None) for seed in args.seeds for pairing in PAIRINGS]
        for seed, pairing, separation in plan:
            console.print(f"{dataset} seed {seed} {pairing[0]}{pairing[1]}"
                          + (f" fine_separation {separation:g}" if separation is not None
                             else ""), highlight=False)
            rows.append(run_one(dataset, seed, pairing, args.runs, separation))
    summary = summarize(rows)
    show(rows, summary, console)
    if args.json:
        write_json(args.json, {"recipes": {k: {"config": c.to_dict(), "what": w}
                                           for k, (c, w) in RECIPES.items()
                                           if k in args.datasets},
                               "terminal_phase": {"nc1_threshold": TerminalPhase().threshold,
                                                  "drop_required": TerminalPhase().drop},
                               "options": OPTIONS, "target": TARGET, "summary": summary,
                               "rows": rows})
        console.print(f"wrote {args.json}")
    if args.figure:
        figure(rows, args.figure)
        console.print(f"wrote {args.figure}")
    if args.examples:
        for path in copy_examples(rows, args.examples):
            console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
