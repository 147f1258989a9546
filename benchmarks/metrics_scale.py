"""compute_metrics at vocabulary scale: time and peak memory against the cost model.

Run:  python benchmarks/metrics_scale.py [--classes 100 1000 10000 50000] [--dims 256 512]

For each (C, d) the statistics of C classes (class means, spreads, a within-class
scatter) are built directly through ``load_state_dict`` (the streaming pass is measured
by stats_throughput.py), with a classifier W, b; then ``compute_metrics`` runs once.

Cost model (docs/performance.md), with P = C (C - 1) / 2 class pairs:

    time   = P (2 g d / F + e)  +  [C^2 <= 4e6] 3 C^2 (2 d / F)  +  s C d^2
    memory = 8 bytes x (9 C d + 2 block^2 + [C^2 <= 4e6] 6 C^2 + 4 d^2)

g = 2 Gram products per tile (centred means, classifier rows) at the float64 GEMM rate
F of one block x block x d tile product; e the elementwise work per pair; the bracket
the dense ETF gaps below 2,000 classes (three C x C products); s C d^2 the SVD of the
centred means (nc1) and the d x d Grams. F, e and s are measured here, in the same run,
on fixed small problems: F on one tile product, e from pair_sums at C = 4,096, d = 16
minus its products, s from one SVD of 4,096 x d. Every prediction beyond is an
extrapolation of the model's laws, not a fit to the rows it is compared with.

The last two columns time, in the same run, the shared pass over pairs alone and the
three separate pair passes (cdnv, the cosines of the means and of the weights) that the
metrics made before it, which computed less (no gnc2 metrics).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import best_time  # noqa: E402

from nclab import CollapseStats, compute_metrics  # noqa: E402
from nclab.core.geometry import DEFAULT_BLOCK, pair_sums, power_of_two_scale  # noqa: E402

GRAMS = 2  # tile products per pair tile: centred means, classifier rows
DENSE_LIMIT = 4_000_000  # C^2 up to which the ETF gaps form C x C matrices
CALIBRATION_C = 4096


def synthetic_stats(classes: int, dim: int, seed: int = 0) -> tuple[CollapseStats, ...]:
    """Statistics of C classes with 4 samples each, built without streaming."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(classes, dim))
    factor = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    state = {
        "num_classes": torch.tensor(classes), "dim": torch.tensor(dim),
        "counts": torch.full((classes,), 4, dtype=torch.int64),
        "means": torch.from_numpy(means),
        "spread": torch.from_numpy(rng.uniform(0.5, 1.5, size=classes) * 4),
        "scatter": torch.from_numpy(factor @ factor.T * 4 * classes),
        "scale_exponent": torch.tensor(0),  # data of ordinary magnitude
    }
    stats = CollapseStats(classes).load_state_dict(state)
    weight = means + 0.3 * rng.normal(size=(classes, dim))
    return stats, weight, rng.normal(size=classes)


def gemm_rate(dim: int, block: int = DEFAULT_BLOCK) -> float:
    """float64 flop/s of one block x block x d tile product."""
    a, b = np.random.default_rng(1).normal(size=(2, block, dim))
    return 2 * block * block * dim / best_time(lambda: a @ b.T, repeats=5)


def pair_cost(classes: int = CALIBRATION_C, dim: int = 16) -> float:
    """Seconds of elementwise work per pair: pair_sums at small d minus its products."""
    rng = np.random.default_rng(2)
    centred, weight = rng.normal(size=(2, classes, dim))
    seconds = best_time(lambda: pair_sums(centred, np.ones(classes), weight), repeats=3)
    pairs = classes * (classes - 1) / 2
    return (seconds - pairs * GRAMS * 2 * dim / gemm_rate(dim)) / pairs


def svd_cost(dim: int, classes: int = CALIBRATION_C) -> float:
    """Seconds per C d^2 of the SVD of a C x d matrix."""
    matrix = np.random.default_rng(3).normal(size=(classes, dim))
    return best_time(lambda: np.linalg.svd(matrix, full_matrices=False), repeats=3) / (
        classes * dim * dim)


def predicted(classes: int, dim: int, flops: float, per_pair: float, per_cdd: float,
              block: int = DEFAULT_BLOCK) -> tuple[float, float]:
    """(seconds, bytes) of the cost model."""
    pairs = classes * (classes - 1) / 2
    dense = classes * classes <= DENSE_LIMIT
    seconds = (pairs * (GRAMS * 2 * dim / flops + per_pair)
               + dense * 3 * classes**2 * 2 * dim / flops + per_cdd * classes * dim**2)
    entries = 9 * classes * dim + 2 * min(block, classes) ** 2 + dense * 6 * classes**2
    return seconds, 8.0 * (entries + 4 * dim * dim)


# ---- the three separate pair passes compute_metrics made before the shared pass, kept
# here (and only here) as the comparison the "3 passes s" column times


def upper_tiles(n: int, block: int = DEFAULT_BLOCK) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """Tiles (rows, cols, mask) covering the pairs i < j of an n x n matrix once each."""
    for i0 in range(0, n, block):
        rows = slice(i0, min(i0 + block, n))
        for j0 in range(i0, n, block):
            cols = slice(j0, min(j0 + block, n))
            i = np.arange(rows.start, rows.stop)[:, None]
            j = np.arange(cols.start, cols.stop)[None, :]
            yield rows, cols, i < j


def separate_cosine_moments(vectors: np.ndarray,
                             block: int = DEFAULT_BLOCK) -> tuple[float, float]:
    """(equiangularity, maxangle) of the rows of ``vectors``.

    equiangularity = std over c != c' of cos(v_c, v_c'); maxangle = mean of
    |cos(v_c, v_c') + 1/(C-1)|. Sums are taken of cos + 1/(C-1), which is near zero
    at collapse, so the variance suffers no cancellation.
    """
    count = vectors.shape[0]
    vectors = vectors / power_of_two_scale(vectors)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    offset = 1.0 / (count - 1)
    total = total_sq = total_abs = 0.0
    for rows, cols, mask in upper_tiles(count, block):
        shifted = (unit[rows] @ unit[cols].T + offset)[mask]
        total += shifted.sum()
        total_sq += shifted @ shifted
        total_abs += np.abs(shifted).sum()
    pairs = count * (count - 1) / 2
    mean = total / pairs
    return float(np.sqrt(max(total_sq / pairs - mean**2, 0.0))), float(total_abs / pairs)


def separate_cdnv(means: np.ndarray, variances: np.ndarray,
                  block: int = DEFAULT_BLOCK) -> float:
    """Mean over pairs c < c' of (sigma_c^2 + sigma_c'^2) / (2 ||mu_c - mu_c'||^2).

    Distances come from a Gram tile; pairs whose distance is tiny next to the norms,
    where that formula cancels, are recomputed from explicit differences.
    """
    # cdnv is unchanged by mu -> mu / s, sigma^2 -> sigma^2 / s^2: keep the squares in range
    outer = power_of_two_scale(means)
    centred = means / outer - (means / outer).mean(axis=0)
    inner = power_of_two_scale(centred)
    centred = centred / inner
    variances = variances / outer / outer / inner / inner
    norms = np.einsum("cd,cd->c", centred, centred)
    total = 0.0
    for rows, cols, mask in upper_tiles(len(means), block):
        scale = norms[rows, None] + norms[None, cols]
        dist = scale - 2 * centred[rows] @ centred[cols].T
        risky = np.argwhere(mask & (dist < 1e-6 * scale))
        for i, j in risky:
            diff = centred[rows.start + i] - centred[cols.start + j]
            dist[i, j] = diff @ diff
        with np.errstate(divide="ignore", invalid="ignore"):  # masked-out diagonal: 0/0
            ratio = (variances[rows, None] + variances[None, cols]) / (2 * dist)
        total += ratio[mask].sum()
    return float(total / (len(means) * (len(means) - 1) / 2))


def pair_passes(classes: int, dim: int) -> tuple[float, float]:
    """Seconds of (the shared pass, the three separate pair passes the metrics made
    before it: separate_cdnv and separate_cosine_moments of the means and weights)."""
    stats, weight, _ = synthetic_stats(classes, dim)
    means, variances = stats.means, stats.class_variances()
    centred = means - means.mean(axis=0)
    start = time.perf_counter()
    pair_sums(centred, variances, weight, cosine_squares=classes <= dim)
    middle = time.perf_counter()
    separate_cdnv(means, variances)
    separate_cosine_moments(centred)
    separate_cosine_moments(weight)
    return middle - start, time.perf_counter() - middle


def measured(classes: int, dim: int) -> tuple[float, float]:
    """(seconds, peak bytes allocated) of one compute_metrics call."""
    stats, weight, bias = synthetic_stats(classes, dim)
    tracemalloc.start()
    start = time.perf_counter()
    compute_metrics(stats, weight, bias)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[100, 1000, 10_000, 50_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--previous-up-to", type=int, default=10_000,
                        help="Also time the three separate pair passes of before, up to this C.")
    args = parser.parse_args()
    per_pair = pair_cost()
    print(f"torch {torch.__version__}, numpy {np.__version__}, {torch.get_num_threads()} "
          f"threads, load average {os.getloadavg()[0]:.1f}; elementwise work "
          f"e = {per_pair * 1e9:.1f} ns per pair (pair_sums at C = {CALIBRATION_C}, d = 16)")
    print(f"{'C':>7} {'d':>5} {'F GFLOP/s':>10} {'time s':>9} {'model s':>9} {'ratio':>6} "
          f"{'peak MiB':>9} {'model MiB':>10} {'ratio':>6} {'shared s':>9} {'3 passes s':>11}")
    for dim in args.dims:
        flops, per_cdd = gemm_rate(dim), svd_cost(dim)
        for classes in args.classes:
            seconds, peak = measured(classes, dim)
            model_s, model_b = predicted(classes, dim, flops, per_pair, per_cdd)
            shared, previous = "-", "-"
            if classes <= args.previous_up_to:
                shared, previous = (f"{t:.2f}" for t in pair_passes(classes, dim))
            print(f"{classes:>7} {dim:>5} {flops / 1e9:>10.1f} {seconds:>9.2f} {model_s:>9.2f} "
                  f"{seconds / model_s:>6.2f} {peak / 2**20:>9.1f} {model_b / 2**20:>10.1f} "
                  f"{peak / model_b:>6.2f} {shared:>9} {previous:>11}")


if __name__ == "__main__":
    main()
