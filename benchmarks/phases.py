"""Each phase of a measurement against its limit, timed in the same process.

Run:  python benchmarks/phases.py [--classes 100 1000 10000] [--samples 5]
      [--metrics-max-classes 10000] [--phases statistics decisions metrics]
      [--backend auto|numpy|torch] [--tiles float64|float32] [--clock wall|cpu]
      [--block B]

Data: N = 50,000 float32 rows, d = 512, batches of 512, one torch thread. Per C:

- statistics pass: CollapseStats over every batch / ONE float32 ``X.T @ X``;
- decision pass: DecisionStats over every batch / its two products on the whole X,
  ``X @ W.T`` and ``(X s - origin) @ M~.T`` (float32, as the pass runs them; the
  subtraction itself is left out of the limit);
- compute_metrics (with W): / the float64 products it cannot do without (numpy, as
  compute_metrics runs them on the CPU): the C x C Grams of the pair pass, ``M~ @ M~.T``
  and ``W @ W.T`` (symmetric: the BLAS forms half); nc1 from a Gram G of the centred
  means, its Cholesky factor and inverse (G's eigenvalue ratio certified without its
  eigenvalues): for C <= d the (C-1) x (C-1) Gram of the deflated means ``D @ D.T``,
  then ``Y = G^-1 @ D`` and ``Y @ Sigma_W``, or, for C > d, the d x d Gram
  ``M~.T @ M~``; and the normaliser of the
  ETF gap between W and M~, ``W @ M~.T`` for C <= d + 1 (where the gap is formed whole)
  or ``W.T @ W`` beyond (where the trace identity takes ``<W^T W, M~^T M~>``).

Each phase and its limit are interleaved and each figure is the minimum over
``--samples`` runs (``--samples`` / 2 for compute_metrics), or over as many more as fit
in 3 s (at most 200) for the short ones; the machine's load average is printed with the
results. Targets
(issue 22): 1.1x, 1.25x and 1.3x.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import torch

from nclab import CollapseStats, DecisionStats, compute_metrics

N, DIM, BATCH = 50_000, 512, 512
TARGETS = {"statistics": 1.1, "decisions": 1.25, "metrics": 1.3}
MIN_SECONDS, MAX_ROUNDS = 3.0, 200


#: The clock of every timing: wall time, or this process's CPU time (``--clock cpu``: with
#: one thread, what other work on a shared host inflates least).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def interleaved(phase: Callable[[], object], limit: Callable[[], object],
                samples: int, clock: Callable[[], float] = time.perf_counter
                ) -> tuple[float, float]:
    """(best time of ``phase``, best time of ``limit``), run alternately: ``samples``
    rounds, and more (up to MAX_ROUNDS) until the rounds took MIN_SECONDS, so that the
    minimum of a phase of milliseconds is not one noisy draw on a loaded machine."""
    best = [float("inf"), float("inf")]
    begin, rounds = time.perf_counter(), 0
    while rounds < samples or (time.perf_counter() - begin < MIN_SECONDS
                               and rounds < MAX_ROUNDS):
        for k, fn in enumerate((phase, limit)):
            start = clock()
            fn()
            best[k] = min(best[k], clock() - start)
        rounds += 1
    return best[0], best[1]


def problem(classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features (N, d) float32 of Gaussian classes, labels (N,), a classifier (C, d)."""
    gen = torch.Generator().manual_seed(classes)
    means = torch.randn(classes, DIM, generator=gen)
    labels = torch.randint(0, classes, (N,), generator=gen)
    features = means[labels] + 0.5 * torch.randn(N, DIM, generator=gen)
    weight = means + 0.1 * torch.randn(classes, DIM, generator=gen)
    return features, labels, weight


def statistics_pass(features: torch.Tensor, labels: torch.Tensor, classes: int
                    ) -> CollapseStats:
    stats = CollapseStats(classes, DIM)
    for start in range(0, N, BATCH):
        stats.update(features[start:start + BATCH], labels[start:start + BATCH])
    stats.counts  # noqa: B018  (the finalize on read is part of the pass)
    return stats


def decision_pass(decisions: DecisionStats, features: torch.Tensor,
                  labels: torch.Tensor) -> None:
    for start in range(0, N, BATCH):
        decisions.update(features[start:start + BATCH], labels[start:start + BATCH])


def run(classes: int, args: argparse.Namespace) -> None:
    features, labels, weight = problem(classes)
    samples, phases, clock = args.samples, args.phases, CLOCKS[args.clock]
    ratios = {}
    if "statistics" in phases:
        ratios["statistics"] = interleaved(lambda: statistics_pass(features, labels, classes),
                                           lambda: features.T @ features, samples, clock)
    stats = statistics_pass(features, labels, classes)
    if "decisions" in phases:
        ratios["decisions"] = _decisions(stats, features, labels, weight, samples, clock)
    if "metrics" in phases and classes <= args.metrics_max_classes:
        w64 = weight.double().numpy()
        centred64 = stats.scaled_means() - stats.global_mean(scaled=True)
        sigma_w = stats.within_class_covariance(scaled=True)
        # only what differs from the defaults: the script also times older releases
        options = {key: value for key, value in (("backend", args.backend),
                                                 ("tiles", args.tiles), ("block", args.block))
                   if value not in ("auto", "float64", None)}
        ratios["metrics"] = interleaved(lambda: compute_metrics(stats, w64, **options),
                                        lambda: metrics_limit(centred64, w64, sigma_w),
                                        max(1, samples // 2), clock)
    for name, (phase, limit) in ratios.items():
        print(f"C={classes:>6} {name:<11} {phase:9.4f} s / limit {limit:9.4f} s = "
              f"{phase / limit:5.2f}x (target {TARGETS[name]}x)", flush=True)


def metrics_limit(centred: np.ndarray, weight: np.ndarray, sigma_w: np.ndarray) -> None:
    """The float64 products compute_metrics needs (see the module docstring)."""
    count, dim = centred.shape
    centred @ centred.T, weight @ weight.T  # noqa: B018  (the C x C Grams)
    deflated = centred[1:]  # the shape of nc1's deflated means: the reflection is O(C d)
    gram = centred.T @ centred if count > dim else deflated @ deflated.T
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(torch.from_numpy(gram))).numpy()
    if count <= dim:
        (inverse @ deflated) @ sigma_w  # noqa: B018
    if count <= dim + 1:
        weight @ centred.T  # noqa: B018
    else:
        weight.T @ weight  # noqa: B018


def _decisions(stats: CollapseStats, features: torch.Tensor, labels: torch.Tensor,
               weight: torch.Tensor, samples: int,
               clock: Callable[[], float]) -> tuple[float, float]:
    fresh = lambda: DecisionStats.from_stats(stats, weight)  # noqa: E731
    template = fresh()
    origin = torch.from_numpy(template.origin).float()
    centred = torch.from_numpy(template.centred).float()
    shifted = features * template.scale - origin  # the products alone are the limit
    return interleaved(lambda: decision_pass(fresh(), features, labels),
                       lambda: (features @ weight.T, shifted @ centred.T), samples, clock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--metrics-max-classes", type=int, default=10_000)
    parser.add_argument("--phases", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--backend", default="auto", choices=["auto", "numpy", "torch"])
    parser.add_argument("--tiles", default="float64", choices=["float64", "float32"])
    parser.add_argument("--clock", default="wall", choices=list(CLOCKS))
    parser.add_argument("--block", type=int, default=None,
                        help="compute_metrics' tile side (default: its own)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"N={N} d={DIM} batch={BATCH} threads=1 samples={args.samples} "
          f"backend={args.backend} tiles={args.tiles} block={args.block or 'default'} "
          f"clock={args.clock} "
          f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')} "
          f"load={os.getloadavg()[0]:.1f}", flush=True)
    for classes in args.classes:
        run(classes, args)
    print(f"load at the end={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
