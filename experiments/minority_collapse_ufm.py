"""Minority collapse in the regularized UFM (Fang et al., PNAS 2021): a sweep of R.

Run:  python experiments/minority_collapse_ufm.py [--lambda 1e-3] [--per-class 1000]
          [--ratios 1,0.1,0.01,0.001] [--seeds 2] [--steps 8000]

C = 10 classes, d = 16, the last 5 classes keep round(R n_max) features (at least one);
cross-entropy, lambda_W = lambda_H = lambda_b = lambda. Prints, per R, the best start's
minority_collapse_weights / _means (definitions §12), its SELI distances, the mean norm of
the minority classifier rows over the majority's, its gradient norm and the spread of the
objectives over the starts.
"""

from __future__ import annotations

import argparse
import time

from nclab.studies.imbalance_ufm import minority_collapse_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lambda", dest="lam", type=float, default=1e-3)
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--ratios", default="1,0.1,0.01,0.001")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8000)
    args = parser.parse_args()
    print("R        n_min  cos(W_min)  cos(M_min)  seli_W  seli_M  |w_min|/|w_maj|  grad_norm  "
          "spread   time")
    for ratio in (float(r) for r in args.ratios.split(",")):
        start = time.perf_counter()
        (row,) = minority_collapse_sweep([ratio], per_class=args.per_class, lambda_w=args.lam,
                                         lambda_h=args.lam, lambda_b=args.lam,
                                         seeds=args.seeds, steps=args.steps)
        print(f"{ratio:<8g} {row['counts'][-1]:5d} {row['minority_collapse_weights']:11.6f} "
              f"{row['minority_collapse_means']:11.6f} {row['seli_distance_weights']:7.4f} "
              f"{row['seli_distance_means']:7.4f} {row['minority_norm_ratio']:15.2e} "
              f"{row['grad_norm']:10.1e} "
              f"{row['objective_spread']:7.1e} {time.perf_counter() - start:5.0f}s", flush=True)


if __name__ == "__main__":
    main()
