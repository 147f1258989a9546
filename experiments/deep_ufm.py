"""The deep UFM from many random starts: deep neural collapse, stalls on the ReLU's kinks.

Run:  python experiments/deep_ufm.py [--classes 4] [--dim 8] [--per-class 3]
          [--layers 2,3,4] [--lambda 5e-3] [--seeds 8] [--steps 10000] [--anneal 0,4]
          [--method lbfgs|descent]

For the linear model and, for each ``--anneal`` A, the ReLU model (A = 0: plain descent at
the ReLU; A > 0: A smoothing stages of widths 1e-1..1e-A, then the ReLU, sharing the
steps), at each depth L: every start's end objective and gradient norm, and for each end
the rank of the last layer's class means (singular values above 1e-4 of the largest);
for the best end, nc1 of every layer, its gradient norm, its number of pre-activations at
the kink and the smallest slope off them (``kink_report``), how many ends pass the
first-order test ``certified(1e-6)`` and the iterations of each stage. The value of deep
neural collapse (``dnc_objective``) is printed alongside.
"""

from __future__ import annotations

import argparse
import time

import torch

from nclab.ufm.deep import DeepUFM
from nclab.ufm.deep_lowrank import dnc_objective


def mean_rank(features: torch.Tensor, labels: torch.Tensor, classes: int) -> int:
    """Numerical rank of the (uncentred) class means (K, d) of features (N, d)."""
    means = torch.stack([features[labels == c].mean(dim=0) for c in range(classes)])
    values = torch.linalg.svdvals(means)
    return int((values > 1e-4 * values[0]).sum()) if values[0] > 0 else 0


def report(args: argparse.Namespace, activation: str, layers: int, anneal: int) -> None:
    start = time.perf_counter()
    ufm = DeepUFM(args.classes, args.dim, args.per_class, layers=layers,
                  activation=activation, lambda_w=args.lam, lambda_h=args.lam)
    solution = ufm.solve(range(args.seeds), steps=args.steps, anneal=anneal,
                         method=args.method)
    ends = []
    for run in range(args.seeds):
        last = solution.layer_features(run)[-1]
        ends.append((float(solution.objective[run]), float(solution.grad_norm[run]),
                     mean_rank(last, solution.labels, args.classes)))
    best = solution.best
    dnc = dnc_objective(args.classes, layers, lambda_w=args.lam, lambda_h=args.lam,
                        per_class=args.per_class).objective
    at_dnc = sum(abs(f - dnc) <= 1e-6 for f, _, _ in ends)
    print(f"{activation} L={layers} {args.method} anneal={anneal if activation == 'relu' else '-'} "
          f"({time.perf_counter() - start:.0f}s); DNC value {dnc:.6f}, ends within 1e-6 of "
          f"it: {at_dnc}/{args.seeds}; certified: {int(solution.certified(1e-6).sum())}"
          f"/{args.seeds}; iterations per stage {solution.stage_steps}")
    print("  ends (f, grad, rank of last means): " + ", ".join(
        f"({f:.6f}, {g:.0e}, {r})" for f, g, r in sorted(ends)))
    print(f"  best: f {float(solution.objective[best]):.6f}, grad "
          f"{float(solution.grad_norm[best]):.0e}, kinks {int(solution.kinks[best])}, "
          f"kink slope {float(solution.kink_slope[best]):.1e}; nc1 " + ", ".join(
              f"{m.nc1:.1e}" for m in solution.layer_metrics(best)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=3)
    parser.add_argument("--layers", default="2,3,4")
    parser.add_argument("--lambda", dest="lam", type=float, default=5e-3)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--anneal", default="0,4")
    parser.add_argument("--method", choices=("lbfgs", "descent"), default="lbfgs")
    parser.add_argument("--no-linear", action="store_true")
    args = parser.parse_args()
    depths = [int(v) for v in args.layers.split(",")]
    for layers in depths:
        if not args.no_linear:
            report(args, "linear", layers, 0)
        for anneal in (int(v) for v in args.anneal.split(",")):
            report(args, "relu", layers, anneal)


if __name__ == "__main__":
    main()
