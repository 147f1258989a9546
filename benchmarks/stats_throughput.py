"""Throughput of CollapseStats.update against the hardware limit and a two-pass baseline.

Run:  python benchmarks/stats_throughput.py [--n 50000] [--d 512] [--classes 100]

(a) nclab: one streaming pass of CollapseStats.update (float32 batches);
(b) the hardware limit of this work: one float32 X.T @ X of the same matrix;
(c) a straightforward two-pass numpy float64 computation of Sigma_W and Sigma_B.
Targets: (a) within 1.5x of (b); (a) at least 3x faster than (c). It also reports the
peak resident memory while streaming N and 10 N samples generated batch by batch: the
statistics need O(d^2 + C d) memory, so the peak must not grow with N.
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import best_time  # noqa: E402

from nclab import CollapseStats  # noqa: E402


def stream(num_samples: int, dim: int, classes: int, batch: int) -> CollapseStats:
    stats = CollapseStats(classes)
    generator = torch.Generator().manual_seed(0)
    for start in range(0, num_samples, batch):
        rows = min(batch, num_samples - start)
        y = torch.randint(0, classes, (rows,), generator=generator)
        stats.update(torch.randn(rows, dim, generator=generator) + y[:, None], y)
    return stats


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def two_pass_numpy(x: np.ndarray, y: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    x = x.astype(np.float64)
    means = np.stack([x[y == c].mean(axis=0) for c in range(classes)])
    centred = x - means[y]
    sigma_w = centred.T @ centred / len(x)
    between = means - means.mean(axis=0)
    return sigma_w, between.T @ between / classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    n, d, classes, batch = args.n, args.d, args.classes, args.batch
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"N={n}, d={d}, C={classes}, batch={batch}")

    base = peak_rss_mib()
    stream(n, d, classes, batch)
    after_n = peak_rss_mib()
    stream(10 * n, d, classes, batch)
    after_10n = peak_rss_mib()
    print(f"peak RSS streaming N: {after_n:.0f} MiB (+{after_n - base:.0f}); "
          f"10 N: {after_10n:.0f} MiB (+{after_10n - after_n:.0f} more)")

    generator = torch.Generator().manual_seed(1)
    y = torch.randint(0, classes, (n,), generator=generator)
    x = torch.randn(n, d, generator=generator) + y[:, None].float()
    batches = list(zip(x.split(batch), y.split(batch), strict=True))

    def nclab_pass() -> None:
        stats = CollapseStats(classes)
        for xb, yb in batches:
            stats.update(xb, yb)

    t_nclab = best_time(nclab_pass)
    t_gemm = best_time(lambda: x.T @ x)
    x_np, y_np = x.numpy(), y.numpy()
    t_numpy = best_time(lambda: two_pass_numpy(x_np, y_np, classes), repeats=3)
    print(f"(a) nclab CollapseStats one pass : {t_nclab * 1e3:8.1f} ms")
    print(f"(b) float32 X.T @ X              : {t_gemm * 1e3:8.1f} ms")
    print(f"(c) two-pass numpy float64       : {t_numpy * 1e3:8.1f} ms")
    print(f"ratio (a)/(b) = {t_nclab / t_gemm:.2f}   (target <= 1.5)")
    print(f"ratio (c)/(a) = {t_numpy / t_nclab:.2f}   (target >= 3)")


if __name__ == "__main__":
    main()
