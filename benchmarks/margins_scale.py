"""One-vs-rest margins at scale: their cost beside the tiled pair pass on the same data.

Run:  python benchmarks/margins_scale.py [--classes 1000 10000] [--dim 512]

For each C, Gaussian class means (centred) and classifier rows W = means + 0.3 noise,
as in metrics_scale.py, are measured by (a) ``pair_sums``, the one pass over
class pairs that ``compute_metrics`` makes, and (b) ``margin_metrics``: for means and
weights, one pass giving every row's bound 1 - max cos, then exact QPs on the rows that
bound cannot rule out, at most ``--max-rows`` per margin (then a certified bracket is
reported instead of the exact margin; default 8). One run, the same data, wall times.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from nclab.core.geometry import pair_sums
from nclab.core.margins import margin_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--max-rows", type=int, default=None,
                        help="Budget of exact row solves per margin (default: 8).")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, numpy {np.__version__}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'C':>7} {'d':>5} {'pairs s':>8} {'margins s':>9} {'ratio':>6}  "
          f"{'means [lower, upper]':>28}  {'weights [lower, upper]':>28}")
    for classes in args.classes:
        rng = np.random.default_rng(0)
        means = rng.normal(size=(classes, args.dim))
        weight = means + 0.3 * rng.normal(size=(classes, args.dim))
        centred = means - means.mean(axis=0)
        variances = rng.uniform(0.5, 1.5, size=classes)
        start = time.perf_counter()
        pair_sums(centred, variances, weight, cosine_squares=classes <= args.dim)
        pairs = time.perf_counter() - start
        budget = args.max_rows if args.max_rows is not None else 8
        start = time.perf_counter()
        found = margin_metrics(centred, weight, max_rows=budget)
        margins = time.perf_counter() - start
        brackets = [f"[{found[f'ovr_margin_{name}_lower']:.6f}, "
                    f"{found[f'ovr_margin_{name}']:.6f}]" for name in ("means", "weights")]
        print(f"{classes:>7} {args.dim:>5} {pairs:>8.2f} {margins:>9.2f} "
              f"{margins / pairs:>6.2f}  {brackets[0]:>28}  {brackets[1]:>28}")


if __name__ == "__main__":
    main()
