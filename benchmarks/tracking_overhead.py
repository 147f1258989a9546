"""What live collapse tracking costs at the sizes users have, against a fair baseline.

Run:  python benchmarks/tracking_overhead.py [--classes 100 1000] [--epochs 30]
                                             [--per-class 10] [--threads 1] [--repeats 2]
                                             [--profile]

For C = 100 and 1,000 classes: a Gaussian mixture in 64 dimensions (``--per-class``
training and half as many test samples per class, default 10), an MLP 64 -> 512 ->
512 -> C (so the tracked feature has d = 512), cross-entropy, SGD, batches of 128 (so
every split is several batches), 30 epochs and the trainer's log-spaced evaluation
epochs (``--log-points``, default 8: about one epoch in four, where Papyan et al.
evaluate one in seven).

(a) baseline: the same training loop (same data, model, batches, optimizer and
    schedule) that, at the same evaluation epochs as (b) (the log-spaced ones and the
    TPT onset epoch, which the trainer always logs: a first, untimed run of (b) finds
    it), measures the accuracy of both splits in eval mode (one forward pass over each
    split in batches of ``eval_batch_size``);
(b) the trainer with tracking, as ``nclab train`` runs it: the training error after
    every epoch until the TPT onset; at the evaluation epochs, for both splits, the
    loss, the error and the collapse statistics from one forward pass, the second pass
    of ncc_mismatch over the captured features, every metric, rows appended to
    metrics.jsonl and metrics.csv, checkpoints.
(c) floor: (a), with the products (b) cannot do without added to each accuracy pass:
    the float32 X^T X of the split's features (the statistics pass's limit), their
    float32 product with the class means (the nearest-class-mean pass's), and the
    float64 products compute_metrics needs (``phases.metrics_limit``). No target of
    (b) below (c)/(a) can be met without giving up a logged value.
``--profile`` then prints, for the evaluations of one more run of (b), the functions with
the most time of their own (cProfile), per split-evaluation, and the minor page faults
they took (first touches of fresh memory).
Target: (b)/(a) <= 1.15. The variants alternate, ``--repeats`` times each, and the best
time of each is kept; wall and process CPU time are both reported (on a machine shared
with other work the CPU time is the steadier).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import os
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path


def _threads_argument(argv: list[str], default: str = "1") -> str:
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag == "--threads":
            return value
    return default


# numpy's BLAS (the metrics) reads its thread count once, at import: give it the count
# torch gets, or both libraries' threads compete on a shared machine
os.environ.setdefault("OMP_NUM_THREADS", _threads_argument(sys.argv))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from nclab.train import (  # noqa: E402
    ClassificationTask,
    TrainBatches,
    TrainConfig,
    Trainer,
    learning_rate,
    log_spaced_epochs,
)


class Preloaded(ClassificationTask):
    """A classification task with its data generated once, outside every timing."""

    def __init__(self, config, data=None):
        super().__init__(config)
        self.data = data if data is not None else super().load_data()

    def load_data(self):
        return self.data


def config_for(classes: int, epochs: int, log_points: int, per_class: int) -> TrainConfig:
    return TrainConfig(
        dataset="gaussian",
        dataset_options={"num_classes": classes, "dim": 64, "train_per_class": per_class,
                         "test_per_class": max(1, per_class // 2), "separation": 6.0},
        model="mlp", model_options={"widths": [512, 512]}, loss="ce",
        epochs=epochs, log_points=log_points, batch_size=128, lr=0.05, weight_decay=5e-4,
    )


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int,
             floor: bool = False) -> float:
    model.eval()
    features: list[torch.Tensor] = []
    hook = (model.classifier.register_forward_hook(lambda _m, args, _o: features.append(args[0]))
            if floor else None)
    with torch.no_grad():
        correct = sum(int((model(xb).argmax(dim=1) == yb).sum())
                      for xb, yb in zip(x.split(batch), y.split(batch), strict=True))
        if hook is not None:
            hook.remove()
            unavoidable_products(torch.cat(features), y, model.classifier.weight)
    model.train()
    return correct / len(y)


def unavoidable_products(h: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> None:
    """The limits of the statistics pass, the NCC pass and compute_metrics on (h, y)."""
    from phases import metrics_limit

    h.T @ h  # noqa: B018
    classes = weight.shape[0]
    counts = torch.bincount(y, minlength=classes).clamp(min=1)
    means = torch.zeros(classes, h.shape[1]).index_add_(0, y, h) / counts[:, None]
    h @ means.T  # noqa: B018
    centred = (means - means.mean(dim=0)).double().numpy()
    metrics_limit(centred, weight.double().numpy(), _stand_in(h.shape[1]))


@functools.cache
def _stand_in(dim: int) -> np.ndarray:
    """A d x d float64 matrix in place of Sigma_W (only its shape matters to the
    products), made once: its allocation is not a product."""
    return np.eye(dim)


def baseline_training(task: Preloaded, evaluate: set[int], floor: bool = False) -> None:
    """The trainer's training steps, and the accuracy of both splits at the epochs
    ``evaluate`` (with ``floor``, and the products tracking cannot do without)."""
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
        if epoch in evaluate:
            for split in (data.train, data.test):
                accuracy(model, split.x, split.y, config.eval_batch_size, floor)


def compare(classes: int, args: argparse.Namespace) -> None:
    config = config_for(classes, args.epochs, args.log_points, args.per_class)
    task = Preloaded(config)
    evaluate = set(log_spaced_epochs(config.epochs, config.log_points))
    with tempfile.TemporaryDirectory() as tmp:  # finds the onset epoch (and warms up)
        onset = Trainer(config, Path(tmp) / "b", device="cpu", progress=False,
                        task=task).fit()["tpt_onset"]
    if onset is not None:
        evaluate.add(onset)
    print(f"C={classes}: {len(task.data.train)} train / {len(task.data.test)} test samples, "
          f"d=512, batch {config.batch_size}, {config.epochs} epochs, {len(evaluate)} "
          f"evaluation epochs (TPT onset at epoch {onset})")
    variants = {
        "(a) training + accuracy": lambda tmp: baseline_training(task, evaluate),
        "(b) trainer with tracking": lambda tmp: Trainer(
            config, Path(tmp) / "b", device="cpu", progress=False, task=task).fit(),
        "(c) (a) + unavoidable products": lambda tmp: baseline_training(task, evaluate, True),
    }
    best = {name: (float("inf"), float("inf")) for name in variants}
    for _ in range(args.repeats):  # alternate the variants, keep the best of each
        for name, run in variants.items():
            with tempfile.TemporaryDirectory() as tmp:
                wall, cpu = timed(lambda run=run, tmp=tmp: run(tmp))
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    base_wall, base_cpu = best["(a) training + accuracy"]
    for name, (wall, cpu) in best.items():
        print(f"  {name:28s}: wall {wall:7.1f} s ({wall / base_wall:.3f}x)   "
              f"cpu {cpu:7.1f} s ({cpu / base_cpu:.3f}x)")
    wall, cpu = best["(b) trainer with tracking"]
    print(f"  tracking overhead (b)/(a): wall {wall / base_wall:.3f}, cpu {cpu / base_cpu:.3f}"
          "   (target <= 1.15)")
    wall, cpu = best["(c) (a) + unavoidable products"]
    print(f"  its floor (c)/(a): wall {wall / base_wall:.3f}, cpu {cpu / base_cpu:.3f}")
    if args.profile:
        profile(variants["(b) trainer with tracking"], 2 * len(evaluate))


def profile(run, evaluations: int, rows: int = 15) -> None:
    """The functions with the most time of their own in the evaluations of one run
    (the epochs' training steps left out), per split-evaluation."""
    profiler, original = cProfile.Profile(), Trainer._evaluate_checked
    faults = [0]

    def evaluate(self, *args):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        profiler.enable()
        try:
            return original(self, *args)
        finally:
            profiler.disable()
            faults[0] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    Trainer._evaluate_checked = evaluate
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run(tmp)
    finally:
        Trainer._evaluate_checked = original
    stats = pstats.Stats(profiler)
    total = sum(own for _, _, own, _, _ in stats.stats.values())
    print(f"  (b) profiled evaluations: {1e3 * total / evaluations:.1f} ms of own time and "
          f"{faults[0] / evaluations:.0f} minor page faults per split-evaluation "
          f"({evaluations}, the TPT checks included); the largest, with calls per "
          "split-evaluation:")
    ranked = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:rows]
    for (path, line, name), (_, calls, own, _, _) in ranked:
        where = f"{Path(path).name}:{line} {name}" if line else name
        print(f"    {1e3 * own / evaluations:7.2f} ms  {calls / evaluations:7.1f}  {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--log-points", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="Runs of each variant, "
                        "alternating; the best time of each is kept.")
    parser.add_argument("--profile", action="store_true",
                        help="Then profile one more run of (b).")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) (numpy's BLAS "
          f"{os.environ['OMP_NUM_THREADS']}), load average {os.getloadavg()[0]:.1f}")
    torch.optim.SGD([torch.zeros(1, requires_grad=True)])  # first use imports torch._dynamo
    for classes in args.classes:
        compare(classes, args)


if __name__ == "__main__":
    main()
