"""The statistics pass with each way of forming its block Grams, interleaved in one process.

Run:  OMP_NUM_THREADS=1 python benchmarks/gram_paths.py [--threads 1] [--classes 100 1000]
      [--seconds 12]

Data and pass as in ``benchmarks/phases.py`` (N = 50,000 float32 rows, d = 512, batches
of 512). Variants, each the minimum over interleaved rounds (at least 5, more until
``--seconds`` have passed), divided by one float32 ``X.T @ X`` (torch):

- ``torch``: torch's products of the Gram's upper blocks (7 products, 5/8 of the flops),
  the path of every device but the CPU;
- ``host``: what the pass does by default (the host BLAS's syrk through numpy's
  ``a.T @ a`` when torch runs on one thread, torch's products otherwise);
- ``host-T``, ``host-1`` (with ``--threads`` above 1): the syrk forced on, OpenBLAS on T
  threads or on one.

The clock is the process's CPU time with one thread (what other work on a shared host
inflates least) and wall time with more (CPU time would count the spinning threads).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import torch
from phases import N, problem, statistics_pass
from threadpoolctl import threadpool_limits

from nclab.core import moments

DEFAULT_APPLIES = moments.host_syrk_applies


def forced_syrk(blas_threads: int) -> tuple[Callable, Callable]:
    """(applies, gram) that take the syrk for every plain CPU tensor, on ``blas_threads``."""
    def applies(z: torch.Tensor) -> bool:
        return z.device.type == "cpu" and z.is_contiguous() and not z.requires_grad

    def gram(z: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        rows = z.numpy()
        with threadpool_limits(blas_threads, user_api="blas"):
            np.matmul(rows.T, rows, out=out.numpy())
        return out

    return applies, gram


def variants(threads: int) -> dict[str, tuple[Callable, Callable | None]]:
    found = {"torch": (lambda z: False, None), "host": (DEFAULT_APPLIES, None)}
    if threads > 1:
        found["host-T"] = forced_syrk(threads)
        found["host-1"] = forced_syrk(1)
    return found


def time_variants(classes: int, threads: int, seconds: float,
                  clock: Callable[[], float]) -> tuple[int, float, dict[str, float]]:
    """(rounds, best X.T @ X, best pass of each variant) at C = ``classes``."""
    features, labels, _ = problem(classes)
    default_gram = moments.host_gram  # patched per variant
    runs: dict[str, Callable[[], object]] = {"X.T @ X": lambda: features.T @ features}
    for name, (applies, gram) in variants(threads).items():
        def run(applies: Callable = applies, gram: Callable | None = gram) -> None:
            moments.host_syrk_applies = applies
            moments.host_gram = gram or default_gram
            statistics_pass(features, labels, classes)
        runs[name] = run
    best = dict.fromkeys(runs, float("inf"))
    begin, rounds = time.perf_counter(), 0
    try:
        while rounds < 5 or (time.perf_counter() - begin < seconds and rounds < 40):
            for name, fn in runs.items():
                start = clock()
                fn()
                best[name] = min(best[name], clock() - start)
            rounds += 1
    finally:
        moments.host_syrk_applies = DEFAULT_APPLIES
        moments.host_gram = default_gram
    limit = best.pop("X.T @ X")
    return rounds, limit, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--classes", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.threads == 1 else time.perf_counter
    print(f"N={N} threads={args.threads} clock={'cpu' if args.threads == 1 else 'wall'} "
          f"load={os.getloadavg()[0]:.1f}", flush=True)
    for classes in args.classes:
        rounds, limit, best = time_variants(classes, args.threads, args.seconds, clock)
        print(f"C={classes:>6} rounds={rounds:>2} X.T@X {limit:.3f} s | " + " | ".join(
            f"{name} {t:.3f} s = {t / limit:.2f}x" for name, t in best.items())
            + f" | load={os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
