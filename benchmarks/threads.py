"""Training speed of the shipped small models with torch's default threads against one.

Times SGD epochs of the demo's MLP (3 x 256, batch norm) and of the 1-D CNN on
MNIST-1D-shaped inputs (1,000 samples of shape (1, 40), 10 classes, batch 128), with
``torch.set_num_threads(default)`` and ``torch.set_num_threads(1)`` interleaved in one
process; the total time of ``--epochs`` epochs per setting, twice each (a total, not a
best-of: spin-waiting threads on a busy machine show up as slow epochs, not as a slower
best one). The ratio default / one decides the thread
count the training commands use by default (``nclab.train.threads.DEFAULT_THREADS``).

    python benchmarks/threads.py [--epochs 10]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from nclab.models import build_model

MODELS = {"mlp": {"widths": [256, 256, 256], "batch_norm": True}, "cnn1d": {}}


def one_epoch(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 128):
    """Return a function running one SGD epoch of ``model`` on (x, y)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    def run() -> None:
        for start in range(0, len(x), batch):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[start:start + batch]),
                                                     y[start:start + batch])
            loss.backward()
            optimizer.step()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    default = torch.get_num_threads()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, default threads {default}")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 1, 40, generator=generator)
    y = torch.randint(0, 10, (1000,), generator=generator)
    for name, options in MODELS.items():
        torch.manual_seed(0)
        epoch = one_epoch(build_model(name, (1, 40), 10, **options).train(), x, y)
        times = {}
        for _ in range(2):  # interleaved: both settings see the same machine load
            for threads in (default, 1):
                torch.set_num_threads(threads)
                start = time.perf_counter()
                for _ in range(args.epochs):
                    epoch()
                times[threads] = times.get(threads, 0.0) + time.perf_counter() - start
        torch.set_num_threads(default)
        per_epoch = {k: v / (2 * args.epochs) * 1e3 for k, v in times.items()}
        print(f"{name:6s} mean epoch: {default} threads {per_epoch[default]:8.1f} ms, "
              f"1 thread {per_epoch[1]:8.1f} ms, ratio {times[default] / times[1]:.2f}")


if __name__ == "__main__":
    main()
