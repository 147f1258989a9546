"""What the spectral metrics (definitions §8) add to compute_metrics, on the same statistics.

Run:  python benchmarks/spectral_cost.py [--classes 1000] [--dim 512] [--repeats 5]

The statistics of C classes are built directly (metrics_scale.synthetic_stats: 4 samples a
class, a full-rank within-class scatter); then, in each of ``repeats`` rounds, one call of
``compute_metrics(stats, W, b)`` and one of ``spectral_metrics`` on the same scaled
statistics are timed back to back (interleaved, so that a busy machine slows both alike),
after one warm-up call of each. The minimum over the rounds is reported for each, and their
ratio. BLAS and torch run on one thread. The issue's budget: a ratio of at most 0.10 at
C = 1,000, d = 512.

The spectral metrics cost O(C d^2) for the class Grams plus one tridiagonal reduction of
S_T (whose spectrum and that of X^T X follow from it) and LiDAR's generalized eigenvalue
problem, independent of the number of class pairs that compute_metrics goes through.

The floor, timed in the same rounds: two plain ``np.linalg.eigvalsh`` calls, one on S_T and
one on LiDAR's matrix L^-1 Sigma_B L^-T (formed beforehand, untimed). No exact route
shares them (S_T and LiDAR's matrix are unrelated), so no implementation of these
metrics from the statistics costs less than this floor.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from metrics_scale import synthetic_stats  # noqa: E402

from nclab import compute_metrics  # noqa: E402
from nclab.core.spectral import LIDAR_DELTA, second_moments, spectral_metrics  # noqa: E402


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


def floor_matrices(arrays: tuple) -> tuple[np.ndarray, np.ndarray]:
    """S_T and LiDAR's symmetric matrix L^-1 Sigma_B L^-T, the two spectra the metrics need."""
    moments = second_moments(*arrays)
    within, between = moments.within_cov, moments.between_cov
    dim = within.shape[0]
    variance = (np.trace(within) + np.trace(between)) / dim
    factor = np.linalg.cholesky(within + LIDAR_DELTA * variance * np.eye(dim))
    half = scipy.linalg.solve_triangular(factor, between, lower=True)
    lidar_matrix = scipy.linalg.solve_triangular(factor, half.T, lower=True)
    return moments.total, (lidar_matrix + lidar_matrix.T) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    torch.set_num_threads(1)
    stats, weight, bias = synthetic_stats(args.classes, args.dim)
    arrays = stats.counts, stats.scaled_means(), stats.scaled_scatter()
    total, lidar_matrix = floor_matrices(arrays)
    with threadpool_limits(limits=1):
        best = interleaved({
            "compute_metrics": lambda: compute_metrics(stats, weight, bias),
            "spectral_metrics": lambda: spectral_metrics(*arrays, trusted=True),
            "floor": lambda: (np.linalg.eigvalsh(total), np.linalg.eigvalsh(lidar_matrix)),
        }, args.repeats)
    base = best["compute_metrics"]
    print(f"C = {args.classes}, d = {args.dim}, one thread, min of {args.repeats} "
          f"interleaved rounds")
    print(f"compute_metrics   {base:8.3f} s")
    print(f"spectral_metrics  {best['spectral_metrics']:8.3f} s   "
          f"ratio {best['spectral_metrics'] / base:.3f}   (target 0.100)")
    print(f"floor: 2 eigvalsh {best['floor']:8.3f} s   ratio {best['floor'] / base:.3f}")


if __name__ == "__main__":
    main()
