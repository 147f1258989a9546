"""Fine-label recovery where the answer is known: hierarchical Gaussian mixtures.

A small MLP is trained on the SUPERCLASS labels of ``nclab.data.hierarchical`` data
(5 superclasses of 2 sub-clusters). Its penultimate features are then clustered inside
each superclass (``nclab.finegrained.recover_fine_labels``), over a sweep of
``fine_separation``. With ``fine_separation=0`` the two sub-clusters of a superclass are
the same distribution, so recovery must sit at chance; with well separated sub-clusters it
should approach the fine-trained baseline.

Each row also gives recovery from the raw inputs (what the data allow; true superclasses)
and the test accuracy of the same MLP trained on the fine labels (the baseline). Results
and their discussion: docs/finegrained.md.

    PYTHONPATH=src python experiments/finegrained_synthetic.py \
        --figure docs/figures/finegrained_synthetic.png \
        --json docs/results/finegrained_synthetic.json
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402
from torch import nn  # noqa: E402

from nclab.core.io import write_json  # noqa: E402
from nclab.data.base import ArrayDataset  # noqa: E402
from nclab.data.hierarchical import hierarchical, hierarchical_coarse_map  # noqa: E402
from nclab.finegrained import CoarseLabeling, coarsen_splits, recover_fine_labels  # noqa: E402


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 100
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    depth: int = 2
    width: int = 256


class MLP(nn.Module):
    """``depth`` ReLU layers of ``width`` units (the last one gives the penultimate
    features), then the linear classifier."""

    def __init__(self, in_dim: int, num_classes: int, cfg: TrainConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(cfg.depth):
            layers += [nn.Linear(in_dim if i == 0 else cfg.width, cfg.width), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cfg.width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train(data: ArrayDataset, cfg: TrainConfig, seed: int) -> MLP:
    """Plain SGD with momentum, weight decay and a cosine schedule, to 100% train accuracy."""
    torch.manual_seed(seed)
    model = MLP(data.input_shape[0], data.num_classes, cfg)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(cfg.epochs):
        order = torch.randperm(len(data), generator=generator)
        for i in range(0, len(data), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            opt.zero_grad()
            loss_fn(model(data.x[idx]), data.y[idx]).backward()
            opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: MLP, data: ArrayDataset) -> float:
    return float((model(data.x).argmax(1) == data.y).float().mean())


def run_one(separation: float, args: argparse.Namespace, cfg: TrainConfig) -> dict:
    fine = hierarchical(num_coarse=5, fine_per_coarse=2, dim=args.dim,
                        train_per_class=args.per_class, test_per_class=args.per_class,
                        coarse_separation=args.coarse_separation,
                        fine_separation=separation, noise=1.0, seed=args.seed)
    labeling = CoarseLabeling.from_map(hierarchical_coarse_map(5, 2))
    coarse = coarsen_splits(fine, labeling)
    recover = dict(labeling=labeling, n_init=10, seed=args.seed, threads=args.threads)

    raw = recover_fine_labels(fine.train.x, fine.train.y, coarse.train.y, fine.test.x,
                              coarse.test.y, fine.test.y, **recover)
    coarse_model = train(coarse.train, cfg, args.seed)
    with torch.no_grad():
        h_train, h_test = coarse_model.body(fine.train.x), coarse_model.body(fine.test.x)
        predicted = coarse_model.head(h_test).argmax(1)
    learned = recover_fine_labels(h_train, fine.train.y, coarse.train.y, h_test, predicted,
                                  fine.test.y, **recover)
    baseline = accuracy(train(fine.train, cfg, args.seed), fine.test)
    return {
        "fine_separation": separation,
        "input_recovery_test": raw.test_accuracy,
        "input_coarse_nc1": raw.coarse_nc1,
        "coarse_train_accuracy": accuracy(coarse_model, coarse.train),
        "coarse_test_accuracy": learned.test_coarse_accuracy,
        "coarse_nc1": learned.coarse_nc1,
        "fine_nc1": learned.fine_nc1,
        "recovery_train": learned.train_accuracy,
        "recovery_test": learned.test_accuracy,
        "baseline_test": baseline,
        "ratio": learned.test_accuracy / baseline,
        "chance": learned.chance_accuracy,
        "warnings": list(learned.warnings),
    }


def show(rows: list[dict], console: Console, title: str) -> None:
    table = Table(title=title)
    columns = [("fine_sep", "fine_separation", "{:g}"),
               ("rec. input", "input_recovery_test", "{:.3f}"),
               ("coarse acc", "coarse_test_accuracy", "{:.3f}"),
               ("coarse nc1 input", "input_coarse_nc1", "{:.3f}"),
               ("coarse nc1 feat", "coarse_nc1", "{:.3f}"),
               ("fine nc1 feat", "fine_nc1", "{:.3f}"),
               ("rec. train", "recovery_train", "{:.3f}"),
               ("rec. test", "recovery_test", "{:.3f}"),
               ("fine-trained", "baseline_test", "{:.3f}"),
               ("ratio", "ratio", "{:.3f}")]
    for name, *_ in columns:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(*(fmt.format(row[key]) for _, key, fmt in columns))
    console.print(table)


def plot(rows: list[dict], path: Path) -> None:
    seps = [r["fine_separation"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(seps, [r["input_recovery_test"] for r in rows], "s--", label="k-means on inputs")
    left.plot(seps, [r["recovery_test"] for r in rows], "o-", label="recovered from features")
    left.plot(seps, [r["baseline_test"] for r in rows], "^:", label="MLP trained on fine labels")
    left.axhline(rows[0]["chance"], color="grey", lw=1, label="chance")
    left.set(xlabel="fine_separation (sub-cluster distance / noise std)",
             ylabel="fine test accuracy", ylim=(0.4, 1.02), title="Fine-label recovery")
    left.legend(loc="lower right", fontsize=8)
    right.semilogy(seps, [r["input_coarse_nc1"] for r in rows], "s--",
                   label="coarse labels, inputs")
    right.semilogy(seps, [r["coarse_nc1"] for r in rows], "o-", label="coarse labels, features")
    right.semilogy(seps, [r["fine_nc1"] for r in rows], "^:", label="fine labels, features")
    right.set(xlabel="fine_separation", ylabel="nc1 (training set)",
              title="nc1 of the same features")
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--separations", type=float, nargs="+", default=[0, 1, 2, 4, 6, 8],
                        help="fine_separation values (sub-cluster distance, in noise stds)")
    parser.add_argument("--coarse-separation", type=float, default=4.0)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--depth", type=int, default=TrainConfig.depth)
    parser.add_argument("--width", type=int, default=TrainConfig.width)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch and k-means threads")
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(epochs=args.epochs, depth=args.depth, width=args.width)
    console = Console(width=max(Console().width, 140))  # the table needs ~135 columns
    rows = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("training", total=len(args.separations))
        for separation in args.separations:
            rows.append(run_one(separation, args, cfg))
            progress.advance(task)
    show(rows, console, f"fine-label recovery, coarse-trained MLP (depth {cfg.depth}, width "
                        f"{cfg.width}, {cfg.epochs} epochs); 5 superclasses x 2 sub-clusters, "
                        f"coarse_separation {args.coarse_separation:g}, chance 0.5")
    if args.figure:
        plot(rows, args.figure)
        console.print(f"wrote {args.figure}")
    if args.json:
        config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        write_json(args.json, {"config": {**config, "train": vars(cfg)}, "rows": rows})
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
