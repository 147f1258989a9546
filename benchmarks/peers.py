"""The whole measurement, nclab against the field's reference library, on the same data.

Run:  python benchmarks/peers.py --reference-path PATH [--classes 100 1000 10000]
                                 [--n 50000] [--d 512] [--repeats 5]

PATH is a checkout of rhubarbwu/neural-collapse (MIT; the code of "Linguistic Collapse",
Wu & Papyan 2024): the folder that holds its ``neural_collapse`` package. The library
is imported from there, unchanged; nothing of it is copied into nclab.

"Whole measurement" = every pass and the metrics, from float32 features held in memory
and fed in batches (``--batch``, 512 by default), one thread unless ``--threads``:

(a) nclab: CollapseStats over the batches, DecisionStats over them again,
    compute_metrics (every metric of the definitions page).
(b) the reference library, as its README uses it: MeanAccumulator (pass 1), then
    VarNormAccumulator and CovarAccumulator with the means (pass 2), DecAccumulator with
    W and the means (pass 3); then covariance_ratio (pinv: NC1), variability_cdnv
    (tiled), mean_norms, interference_grid, simplex_etf_error, self_duality_error and
    clf_ncc_agreement.

Both run in this process on the same tensors, interleaved (a, b, a, b, ...), and each
time is the minimum over ``--repeats`` rounds, so that load on a shared machine hits
both alike; nclab's best round is also printed split into its three phases. The
values printed side by side are those whose definitions match (nc1,
cdnv with Galanti et al.'s squared distance, the ETF error of the centred means, the
NCC agreement).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

BATCH = 512
TILE = 256  # tile side of the reference's CDNV grid (its tile_size)
TARGETS = {100: 2.0, 1000: 3.5, 10_000: 3.5}


def make_data(n: int, d: int, classes: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(classes)
    # every class present (the reference keeps empty classes, whose 0 / 0 would poison it)
    labels = torch.randperm(n, generator=generator) % classes
    means = torch.randn(classes, d, generator=generator) * 2
    features = means[labels] + torch.randn(n, d, generator=generator)
    weight = means + 0.5 * torch.randn(classes, d, generator=generator)
    return features, labels, weight


def batches(features: torch.Tensor, labels: torch.Tensor):
    return zip(features.split(BATCH), labels.split(BATCH), strict=True)


# --------------------------------------------------------------------- (a) nclab
def nclab_measurement(features, labels, weight, classes: int) -> dict[str, float]:
    from nclab import CollapseStats, DecisionStats, compute_metrics

    start = time.perf_counter()
    stats = CollapseStats(classes)
    for x, y in batches(features, labels):
        stats.update(x, y)
    stats.counts  # noqa: B018  (the finalize on read is part of the pass)
    passed = time.perf_counter()
    decisions = DecisionStats.from_stats(stats, weight)
    for x, y in batches(features, labels):
        decisions.update(x, y)
    decided = time.perf_counter()
    metrics = compute_metrics(stats, weight, decisions=decisions)
    return {"nc1": metrics.nc1, "cdnv": metrics.cdnv, "agreement": 1 - metrics.ncc_mismatch,
            "etf_error": metrics.etf_error_means, "phases": (
                passed - start, decided - passed, time.perf_counter() - decided)}


# --------------------------------------------------------------------- (b) the reference library
def reference_measurement(features, labels, weight, classes: int) -> dict[str, float]:
    from neural_collapse.accumulate import (
        CovarAccumulator,
        DecAccumulator,
        MeanAccumulator,
        VarNormAccumulator,
    )
    from neural_collapse.measure import (
        clf_ncc_agreement,
        covariance_ratio,
        interference_grid,
        mean_norms,
        self_duality_error,
        simplex_etf_error,
        variability_cdnv,
    )

    dim = features.shape[1]
    mean_accum = MeanAccumulator(classes, dim, "cpu")
    for x, y in batches(features, labels):
        mean_accum.accumulate(x, y)
    means, global_mean = mean_accum.compute()
    var_accum = VarNormAccumulator(classes, dim, "cpu", M=means)
    covar_accum = CovarAccumulator(classes, dim, "cpu", M=means)
    for x, y in batches(features, labels):
        var_accum.accumulate(x, y, means)
        covar_accum.accumulate(x, y, means)
    var_norms, _ = var_accum.compute()
    within = covar_accum.compute()
    dec_accum = DecAccumulator(classes, dim, "cpu", M=means, W=weight)
    for x, y in batches(features, labels):
        dec_accum.accumulate(x, y, weight, means)
    mean_norms(means, global_mean)
    interference_grid(means, global_mean)
    self_duality_error(weight, means, global_mean)
    return {"nc1": covariance_ratio(within, means, global_mean),
            "cdnv": variability_cdnv(var_norms, means, tile_size=TILE),
            "agreement": clf_ncc_agreement(dec_accum),
            "etf_error": simplex_etf_error(means, global_mean)}


# --------------------------------------------------------------------- harness
def interleaved(classes: int, n: int, d: int, repeats: int) -> dict[str, tuple]:
    """(best seconds, values) of each candidate, timed alternately on the same data."""
    features, labels, weight = make_data(n, d, classes)
    candidates = {"nclab": nclab_measurement, "reference": reference_measurement}
    best = dict.fromkeys(candidates, math.inf)
    values: dict[str, dict[str, Any]] = {}
    for _ in range(repeats):
        for name, measure in candidates.items():
            gc.collect()
            start = time.perf_counter()
            found = measure(features, labels, weight, classes)
            seconds = time.perf_counter() - start
            if seconds < best[name]:  # the values (and phases) of the best round
                best[name], values[name] = seconds, found
    return {name: (best[name], values[name]) for name in candidates}


def _reference_path(text: str | None) -> Path:
    default = Path(__file__).resolve().parents[2] / "shared/peers/rhubarbwu-neural-collapse"
    path = Path(text) if text else default
    if not (path / "neural_collapse" / "__init__.py").is_file():
        raise SystemExit(f"error: no neural_collapse package in {path} "
                         "(--reference-path: a checkout of rhubarbwu/neural-collapse)")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-path", help="checkout of rhubarbwu/neural-collapse "
                        "(default: ../shared/peers/rhubarbwu-neural-collapse beside the repo)")
    parser.add_argument("--classes", type=int, nargs="+", default=[100, 1000, 10_000])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    sys.path.insert(0, str(_reference_path(args.reference_path)))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    globals()["BATCH"] = args.batch
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load average "
          f"{os.getloadavg()[0]:.1f}; N={args.n}, d={args.d}, batch {BATCH}, float32 "
          f"features; min of {args.repeats} interleaved rounds")
    print(f"{'C':>6} {'nclab s':>8} {'ref s':>8} {'speed-up':>9} {'target':>7}   "
          "nc1 nclab / ref | cdnv nclab / ref | etf nclab / ref | agreement nclab / ref")
    split = {}
    for classes in args.classes:
        found = interleaved(classes, args.n, args.d, args.repeats)
        (ours, a), (theirs, b) = found["nclab"], found["reference"]
        split[classes] = a["phases"]
        target = TARGETS.get(classes)
        target_text = f">= {target:.1f}x" if target else ""
        print(f"{classes:>6} {ours:>8.3f} {theirs:>8.3f} {theirs / ours:>8.2f}x "
              f"{target_text:>7}   {a['nc1']:.6g} / {b['nc1']:.6g} | "
              f"{a['cdnv']:.6g} / {b['cdnv']:.6g} | {a['etf_error']:.6g} / "
              f"{b['etf_error']:.6g} | {a['agreement']:.4f} / {b['agreement']:.4f}")
    for classes, phases in split.items():
        print(f"C={classes}: nclab's best round = statistics pass {phases[0]:.3f} s + "
              f"decision pass {phases[1]:.3f} s + compute_metrics {phases[2]:.3f} s")


if __name__ == "__main__":
    main()
