"""One-vs-rest margins at scale: their cost beside the tiled pair pass on the same data.

Run:  python benchmarks/margins_scale.py [--classes 1000 10000] [--dims 512 64]
                                         [--repeats 3] [--exact]

For each C and d, the statistics of metrics_scale.py (Gaussian class means, classifier
rows W = means + 0.3 noise) are measured by (a) ``pair_sums``, the one pass over class
pairs that ``compute_metrics`` makes, on the centred means and W; (b) ``margin_metrics``
alone: for means and weights, one pass giving every row's bound 1 - max cos, then exact
QPs on the rows that bound cannot rule out, at most ``--max-rows`` per margin (then a
certified bracket is reported instead of the exact margin; default ``METRIC_ROWS``);
(c) what the margins add inside ``compute_metrics``: ``compute_metrics(stats, W,
margins=True)`` minus ``compute_metrics(stats, W)``, where the bounds 1 - max cos come
from the pair pass (float64 tiles) and only the exact QPs are left (columns ``cm s``,
the time without, and ``in cm s``, the difference of the two minima: where it is small
beside ``cm s`` the load's noise can make it negative). With ``--exact``
also (d) ``margin_metrics(..., max_rows=None)``: both margins exact, however many rows
that takes. All are run in turn ``--repeats`` times on the same data and each time is
the minimum over the repeats (the machine is shared: only ratios within a line mean
something). The last lines repeat the ratios in a form to copy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from metrics_scale import synthetic_stats  # noqa: E402

from nclab import compute_metrics  # noqa: E402
from nclab.core.geometry import pair_sums  # noqa: E402
from nclab.core.margins import METRIC_ROWS, margin_metrics  # noqa: E402


def _bracket(found: dict[str, Any], name: str) -> str:
    return f"[{found[f'ovr_margin_{name}_lower']:.6f}, {found[f'ovr_margin_{name}']:.6f}]"


def _timed(task: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = task()
    return time.perf_counter() - start, result


def _tasks(classes: int, dim: int, max_rows: int, exact: bool
           ) -> dict[str, Callable[[], Any]]:
    """The timed calls on one data set: the pair pass, the budgeted margins alone,
    compute_metrics without and with them, and the exact margins."""
    stats, weight, _ = synthetic_stats(classes, dim)
    means = np.asarray(stats.means)
    centred = means - means.mean(axis=0)
    variances = stats.class_variances()
    tasks: dict[str, Callable[[], Any]] = {
        "pairs": partial(pair_sums, centred, variances, weight,
                         cosine_squares=classes <= dim),
        "margins": partial(margin_metrics, centred, weight, max_rows=max_rows),
        "metrics": partial(compute_metrics, stats, weight),
        "with margins": partial(compute_metrics, stats, weight, margins=True),
    }
    if exact:
        tasks["exact"] = partial(margin_metrics, centred, weight, max_rows=None)
    return tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[512, 64])
    parser.add_argument("--dim", type=int, help=argparse.SUPPRESS)  # old spelling
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-rows", type=int, default=METRIC_ROWS,
                        help=f"Budget of exact row solves per margin (default {METRIC_ROWS}).")
    parser.add_argument("--exact", action="store_true",
                        help="Also time the exact margins (no budget).")
    args = parser.parse_args()
    if args.dim is not None:
        warnings.warn("--dim is renamed --dims (several values); --dim goes in the next "
                      "release", FutureWarning, stacklevel=1)
        args.dims = [args.dim]
    print(f"torch {torch.__version__}, numpy {np.__version__}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"load average {os.getloadavg()[0]:.1f}, repeats {args.repeats}")
    print(f"{'C':>7} {'d':>5} {'pairs s':>8} {'margins s':>9} {'ratio':>6} "
          f"{'cm s':>7} {'in cm s':>8} {'ratio':>6} "
          f"{'exact s':>8} {'ratio':>6}  {'means [lower, upper]':>24}  "
          f"{'weights [lower, upper]':>24}  exact means, weights")
    summary = []
    for classes in args.classes:
        for dim in args.dims:
            tasks = _tasks(classes, dim, args.max_rows, args.exact)
            best = dict.fromkeys(tasks, np.inf)
            found: dict[str, Any] = {}
            for _ in range(args.repeats):  # interleaved: the same load for all three
                for name, task in tasks.items():
                    seconds, found[name] = _timed(task)
                    best[name] = min(best[name], seconds)
            exact_cols = (f"{best['exact']:>8.3f} {best['exact'] / best['pairs']:>6.2f}"
                          if args.exact else f"{'-':>8} {'-':>6}")
            exact_values = (f"{found['exact']['ovr_margin_means']:.6f}, "
                            f"{found['exact']['ovr_margin_weights']:.6f}"
                            if args.exact else "-")
            ratio = best["margins"] / best["pairs"]
            added = best["with margins"] - best["metrics"]
            inside = added / best["pairs"]
            print(f"{classes:>7} {dim:>5} {best['pairs']:>8.3f} {best['margins']:>9.3f} "
                  f"{ratio:>6.2f} {best['metrics']:>7.3f} {added:>8.3f} {inside:>6.2f} "
                  f"{exact_cols}  "
                  f"{_bracket(found['margins'], 'means'):>24}  "
                  f"{_bracket(found['margins'], 'weights'):>24}  {exact_values}", flush=True)
            summary.append(f"C={classes} d={dim}: margins/pairs {ratio:.2f}, "
                           f"in compute_metrics/pairs {inside:.2f}"
                           + (f", exact/pairs {best['exact'] / best['pairs']:.2f}"
                              if args.exact else ""))
    print("\n".join(summary))


if __name__ == "__main__":
    main()
