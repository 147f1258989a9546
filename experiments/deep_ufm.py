"""The deep UFM from many random starts: deep neural collapse and low-rank ends.

Run:  python experiments/deep_ufm.py [--classes 4] [--dim 8] [--per-class 3]
          [--layers 2,3,4] [--lambda 5e-3] [--seeds 8] [--steps 10000]

For each activation and depth L: every start's end objective and gradient norm, and for
each end the rank of the last layer's class means (singular values above 1e-4 of the
largest); for the best end, nc1 and the rank of the class means at every layer. An end of
rank < K below every full-rank end is a measured instance of the low-rank bias of
Sukenik et al. (NeurIPS 2024).
"""

from __future__ import annotations

import argparse
import time

import torch

from nclab.ufm.deep import DeepUFM


def mean_rank(features: torch.Tensor, labels: torch.Tensor, classes: int) -> int:
    """Numerical rank of the (uncentred) class means (K, d) of features (N, d)."""
    means = torch.stack([features[labels == c].mean(dim=0) for c in range(classes)])
    values = torch.linalg.svdvals(means)
    return int((values > 1e-4 * values[0]).sum()) if values[0] > 0 else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=3)
    parser.add_argument("--layers", default="2,3,4")
    parser.add_argument("--lambda", dest="lam", type=float, default=5e-3)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10000)
    args = parser.parse_args()
    for activation in ("linear", "relu"):
        for layers in (int(v) for v in args.layers.split(",")):
            start = time.perf_counter()
            ufm = DeepUFM(args.classes, args.dim, args.per_class, layers=layers,
                          activation=activation, lambda_w=args.lam, lambda_h=args.lam)
            solution = ufm.solve(range(args.seeds), steps=args.steps)
            ends = []
            for run in range(args.seeds):
                last = solution.layer_features(run)[-1]
                ends.append((float(solution.objective[run]), float(solution.grad_norm[run]),
                             mean_rank(last, solution.labels, args.classes)))
            best = solution.best
            per_layer = [(m.nc1, mean_rank(h, solution.labels, args.classes)) for m, h in
                         zip(solution.layer_metrics(best), solution.layer_features(best),
                             strict=True)]
            print(f"{activation} L={layers} ({time.perf_counter() - start:.0f}s)")
            print("  ends (f, grad, rank of last means): " + ", ".join(
                f"({f:.6f}, {g:.0e}, {r})" for f, g, r in sorted(ends)))
            print("  best: " + ", ".join(f"layer {i + 1}: nc1 {nc1:.1e} rank {r}"
                                         for i, (nc1, r) in enumerate(per_layer)), flush=True)


if __name__ == "__main__":
    main()
