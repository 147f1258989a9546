"""The landscape of the sphere UFM: critical points, zero modes, and what happens for d < K - 1.

Run:  python experiments/ufm_landscape.py [--classes 10] [--per-class 5] [--tau 4]

Part 1 (d = 16 and d = K): the Riemannian gradient norm and the full Hessian spectrum at
the simplex ETF and at constructed critical points (classes sharing vectors in groups,
features opposite their classifiers), each under a random rotation.
Part 2 (d < K - 1, no ETF): 50 random starts per d; the distinct end values, how many
starts reach the best one, and the Hessian at one end point per distinct value (a
spurious local minimum has no negative eigenvalue).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from nclab.ufm import SphereUFM, etf_point, flipped_point, grouped_point, probe
from nclab.ufm.landscape import random_rotation


def part_one(classes: int, per_class: int, tau: float) -> None:
    print("point            d        f      f - f*   grad norm    min eig   #neg   zero/sym")
    for dim in (16, classes):
        ufm = SphereUFM(classes, dim, per_class, tau)
        rotation = random_rotation(dim, seed=0)
        points = {"etf": etf_point(ufm, rotation), "flipped": flipped_point(ufm, rotation)}
        for groups in (g for g in range(1, classes) if classes % g == 0):
            points[f"grouped G={groups}"] = grouped_point(ufm, groups, rotation)
        for name, (weight, features) in points.items():
            result = probe(ufm, weight, features, k=10**9)  # the full spectrum
            negative = int(np.sum(result.eigenvalues < -1e-8))
            print(f"{name:<14} {dim:3d} {result.objective:8.5f} "
                  f"{result.objective - ufm.optimal_value:11.3e} {result.grad_norm:11.1e} "
                  f"{result.min_eigenvalue:10.3e} {negative:6d} "
                  f"{result.zero_modes(1e-8):5d}/{result.symmetry_modes}")


def part_two(classes: int, per_class: int, tau: float, seeds: int) -> None:
    print(f"\nd < K - 1 = {classes - 1}: {seeds} random starts each "
          f"(ETF value {SphereUFM(classes, 2, per_class, tau).etf_value:.6f})")
    print("  d   end value   starts     min eig   next after zero modes   zero/sym   grad norm")
    for dim in (2, 3, 5, 8):
        ufm = SphereUFM(classes, dim, per_class, tau)
        solution = ufm.solve(range(seeds), steps=20000, grad_tol=1e-11)
        values = solution.objective.numpy()
        order = np.argsort(values)
        groups: list[list[int]] = []
        for run in order:
            if groups and values[run] - values[groups[-1][0]] <= 1e-8:
                groups[-1].append(int(run))
            else:
                groups.append([int(run)])
        for group in groups:
            run = group[0]
            result = probe(ufm, solution.weight[run], solution.features[run],
                           k=dim * (dim - 1) // 2 + 3)
            beyond = result.eigenvalues[result.symmetry_modes]
            print(f"{dim:3d}  {values[run]:.8f}  {len(group):3d}/{seeds}   "
                  f"{result.min_eigenvalue:9.2e}   {beyond:21.2e}   "
                  f"{result.zero_modes(1e-8):4d}/{result.symmetry_modes:<4d}  "
                  f"{float(solution.grad_norm[run]):9.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=5)
    parser.add_argument("--tau", type=float, default=4.0)
    parser.add_argument("--seeds", type=int, default=50)
    args = parser.parse_args()
    torch.set_printoptions(precision=4)
    part_one(args.classes, args.per_class, args.tau)
    part_two(args.classes, args.per_class, args.tau, args.seeds)


if __name__ == "__main__":
    main()
