"""What the spectral metrics (definitions §8) add to compute_metrics, on the same statistics.

Run:  python benchmarks/spectral_cost.py [--classes 1000] [--dim 512] [--repeats 5]

The statistics of C classes are built directly (metrics_scale.synthetic_stats: 4 samples a
class, a full-rank within-class scatter); then, in each of ``repeats`` rounds, one call of
``compute_metrics(stats, W, b)`` and one of ``spectral_metrics`` on the same scaled
statistics are timed back to back (interleaved, so that a busy machine slows both alike),
after one warm-up call of each. The minimum over the rounds is reported for each, and their
ratio. BLAS and torch run on one thread. The issue's budget: a ratio of at most 0.10 at
C = 1,000, d = 512.

The spectral metrics cost O(C d^2) for the second moments plus three d x d eigenvalue
problems (X^T X, S_T, and the generalized one of LiDAR), independent of the number of
class pairs that compute_metrics goes through.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from metrics_scale import synthetic_stats  # noqa: E402

from nclab import compute_metrics  # noqa: E402
from nclab.core.spectral import spectral_metrics  # noqa: E402


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(calls: dict, repeats: int) -> dict[str, float]:
    """Minimum wall time of each call over ``repeats`` rounds, one call of each a round."""
    for fn in calls.values():  # warm-up
        fn()
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeats):
        for name, fn in calls.items():
            best[name] = min(best[name], seconds(fn))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    torch.set_num_threads(1)
    stats, weight, bias = synthetic_stats(args.classes, args.dim)
    arrays = stats.counts, stats.scaled_means(), stats.scaled_scatter()
    with threadpool_limits(limits=1):
        best = interleaved({
            "compute_metrics": lambda: compute_metrics(stats, weight, bias),
            "spectral_metrics": lambda: spectral_metrics(*arrays),
        }, args.repeats)
    ratio = best["spectral_metrics"] / best["compute_metrics"]
    print(f"C = {args.classes}, d = {args.dim}, one thread, min of {args.repeats} "
          f"interleaved rounds")
    print(f"compute_metrics   {best['compute_metrics']:8.3f} s")
    print(f"spectral_metrics  {best['spectral_metrics']:8.3f} s")
    print(f"ratio             {ratio:8.3f}   (budget 0.100)")


if __name__ == "__main__":
    main()
