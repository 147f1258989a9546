"""Minority collapse in the UFM (Fang et al., PNAS 2021): a sweep of R.

Run:  python experiments/minority_collapse_ufm.py [--model layer-peeled] [--energy-w 1]
          [--energy-h 5] [--per-class 1000] [--ratios 1,0.1,0.01,0.001] [--seeds 2]
          [--steps 8000]
      python experiments/minority_collapse_ufm.py --model regularized [--lambda 1e-3]
          [--no-bias] ...

C = 10 classes, d = 16, the last 5 classes keep round(R n_max) features (at least one);
cross-entropy. ``layer-peeled`` (the default): the Layer-Peeled Model with budgets E_W,
E_H; ``regularized``: lambda_W = lambda_H = lambda_b = lambda (``--no-bias``: b = 0).
Prints, per R, the best start's
minority_collapse_weights / _means (definitions §12), its SELI distances, the mean norm of
the minority classifier rows over the majority's, its gradient norm and the spread of the
objectives over the starts (and, for the Layer-Peeled Model, the smallest Lagrange
multiplier of its budgets: > 0 means both are spent).
"""

from __future__ import annotations

import argparse
import time

from nclab.studies.imbalance_ufm import minority_collapse_sweep, solve_counts, step_counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("layer-peeled", "regularized"),
                        default="layer-peeled")
    parser.add_argument("--energy-w", type=float, default=1.0)
    parser.add_argument("--energy-h", type=float, default=5.0)
    parser.add_argument("--lambda", dest="lam", type=float, default=1e-3)
    parser.add_argument("--no-bias", action="store_true")
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--ratios", default="1,0.1,0.01,0.001")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8000)
    args = parser.parse_args()
    layer_peeled = args.model == "layer-peeled"
    print("R        n_min  cos(W_min)  cos(M_min)  seli_W  seli_M  |w_min|/|w_maj|  grad_norm  "
          "spread   time" + ("  multiplier" if layer_peeled else ""))
    for ratio in (float(r) for r in args.ratios.split(",")):
        start = time.perf_counter()
        if layer_peeled or not args.no_bias:
            (row,) = minority_collapse_sweep(
                [ratio], per_class=args.per_class, lambda_w=args.lam, lambda_h=args.lam,
                lambda_b=args.lam, seeds=args.seeds, steps=args.steps,
                energies=(args.energy_w, args.energy_h) if layer_peeled else None)
        else:
            counts = step_counts(args.per_class, 10, 5, ratio)
            row = solve_counts(counts, 16, list(range(5, 10)), loss="ce", lambda_w=args.lam,
                               lambda_h=args.lam, lambda_b=0.0, seeds=args.seeds,
                               steps=args.steps, bias=False)
        print(f"{ratio:<8g} {row['counts'][-1]:5d} {row['minority_collapse_weights']:11.6f} "
              f"{row['minority_collapse_means']:11.6f} {row['seli_distance_weights']:7.4f} "
              f"{row['seli_distance_means']:7.4f} {row['minority_norm_ratio']:15.2e} "
              f"{row['grad_norm']:10.1e} "
              f"{row['objective_spread']:7.1e} {time.perf_counter() - start:5.0f}s"
              + (f"  {row['multipliers']:.3g}" if layer_peeled else ""), flush=True)


if __name__ == "__main__":
    main()
