"""What live collapse tracking costs: the demo's training with and without it, in one run.

Run:  python benchmarks/tracking_overhead.py [--epochs 600] [--threads 1] [--repeats 2]

(a) baseline: the demo's training loop alone (same data, model, batches, optimizer and
    learning-rate schedule as the trainer), no evaluation at all;
(b) the trainer as `nclab demo` runs it: the training error after every epoch until the
    TPT onset; at the ~50 log-spaced epochs (and the onset), for both splits, one forward
    pass for the loss, the error and the collapse statistics, then the second pass of
    ncc_mismatch over the captured features; rows appended to metrics.jsonl and
    metrics.csv; a checkpoint every 30 s and at the end.
Target: (b)/(a) <= 1.15. The variants run alternately, ``--repeats`` times each, and the
best time of each is kept. Wall time and process CPU time are both reported: on a
machine shared with other work the CPU time is the steadier of the two.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from nclab.studies.demo import DEMO_CONFIG, DEMO_THREADS
from nclab.train import ClassificationTask, TrainBatches, Trainer, learning_rate


class Preloaded(ClassificationTask):
    """The demo's task with its data generated once, outside every timing."""

    def __init__(self, config, data=None):
        super().__init__(config)
        self.data = data if data is not None else super().load_data()

    def load_data(self):
        return self.data


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bare_training(task: Preloaded) -> None:
    """The trainer's training steps and nothing else."""
    config, data = task.config, task.data
    torch.manual_seed(config.seed)
    model = task.build_model(data)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    model.train()
    for epoch in range(1, config.epochs + 1):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(epoch, config.lr, config.epochs, config.lr_milestones,
                                        config.lr_gamma)
        for x, y, size in TrainBatches(data.train.x, data.train.y, config.batch_size,
                                       config.seed, epoch):
            loss = task.loss(model(x), y) / size
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=DEMO_CONFIG.epochs)
    parser.add_argument("--threads", type=int, default=DEMO_THREADS)
    parser.add_argument("--repeats", type=int, default=2, help="Runs of each variant, "
                        "alternating; the best time of each is kept.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = DEMO_CONFIG.updated(epochs=args.epochs)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); demo config with "
          f"{config.epochs} epochs, {config.log_points} log points")
    task = Preloaded(config)
    torch.optim.SGD([torch.zeros(1, requires_grad=True)])  # first use imports torch._dynamo
    variants = {
        "(a) training only": lambda tmp: bare_training(task),
        "(b) trainer with tracking": lambda tmp: Trainer(
            config, Path(tmp) / "b", device="cpu", progress=False, task=task).fit(),
    }
    best = {name: (float("inf"), float("inf")) for name in variants}
    for _ in range(args.repeats):  # alternate the variants, keep the best of each
        for name, run in variants.items():
            with tempfile.TemporaryDirectory() as tmp:
                wall, cpu = timed(lambda run=run, tmp=tmp: run(tmp))
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    base_wall, base_cpu = best["(a) training only"]
    for name, (wall, cpu) in best.items():
        print(f"{name:28s}: wall {wall:7.1f} s ({wall / base_wall:.3f}x)   "
              f"cpu {cpu:7.1f} s ({cpu / base_cpu:.3f}x)")
    wall, cpu = best["(b) trainer with tracking"]
    print(f"tracking overhead (b)/(a): wall {wall / base_wall:.3f}, cpu {cpu / base_cpu:.3f}"
          "   (target <= 1.15)")


if __name__ == "__main__":
    main()
