"""Low rank against deep neural collapse in the deep ReLU UFM (Sukenik, Lampert & Mondelli,
NeurIPS 2024): the objective of each candidate, a sweep over L and K = r (r - 1) / 2.

Run:  python experiments/deep_ufm_low_rank.py [--vertices 3,4,5,6,7,8] [--layers 2,...,8]
          [--lambda 4e-3] [--per-class 1] [--refine-steps 6000] [--refine 4:4,5:4,5:3]
          [--refine-anneal 3]

Part 1, for each r and L: f of DNC and of the SRG candidate (closed forms of
nclab.ufm.deep_lowrank, each checked here against DeepUFM.objective at the constructed
point), their ratio, and the smallest L at which the SRG value is below DNC. Part 2, for
each r:L of ``--refine``: the SRG point and the DNC point polished by the solver
(``DeepUFM.refine``: L-BFGS, ``--refine-anneal`` smoothing stages then the ReLU,
``--refine-steps`` in all); the end's objective, its gradient norm at the ReLU and at the
last smoothing width, whether it passes ``certified(1e-6)`` and
``certified(1e-6, smoothed=True)``, its kinks, the rank of the class means of every layer
and of the pre-activation of the last ReLU (singular values above 1e-6 of the largest).
"""

from __future__ import annotations

import argparse
import time

import torch

from nclab.ufm.deep import DeepUFM
from nclab.ufm.deep_lowrank import candidate_objective, candidate_params, dnc_shape, srg_shape


def rank(matrix: torch.Tensor) -> int:
    values = torch.linalg.svdvals(matrix)
    return int((values > 1e-6 * values[0]).sum()) if values[0] > 0 else 0


def mean_ranks(solution, classes: int) -> list[int]:
    """Ranks of the class means of H_1..H_L, then of the last ReLU's pre-activation."""
    features = solution.layer_features(0)
    ranks = [rank(torch.stack([h[solution.labels == c].mean(dim=0) for c in range(classes)]))
             for h in features]
    pre = features[-2] if len(features) > 2 else features[0]
    last = solution.params[-2][0]
    return ranks + [rank(pre @ last.T)]


def evaluated(shape, classes: int, layers: int, args) -> float:
    """The closed form, after checking it against the objective at the built point."""
    options = {"lambda_w": args.lam, "lambda_h": args.lam, "per_class": args.per_class}
    value = candidate_objective(shape, layers, **options).objective
    ufm = DeepUFM(classes, max(classes, len(shape[0])), args.per_class, layers=layers,
                  lambda_w=args.lam, lambda_h=args.lam)
    direct = float(ufm.objective(candidate_params(shape, layers, **options))[0])
    assert abs(direct - value) <= 1e-12 * max(1.0, abs(value)), (direct, value)
    return value


def sweep(args) -> None:
    depths = [int(v) for v in args.layers.split(",")]
    print("r  K   " + "  ".join(f"L={L}: DNC / SRG (ratio)".ljust(34) for L in depths))
    for r in (int(v) for v in args.vertices.split(",")):
        classes = r * (r - 1) // 2
        cells, crossover = [], None
        for layers in depths:
            dnc = evaluated(dnc_shape(classes), classes, layers, args)
            srg = evaluated(srg_shape(r), classes, layers, args)
            cells.append(f"{dnc:.6f} / {srg:.6f} ({srg / dnc:.4f})".ljust(34))
            if srg < dnc and crossover is None:
                crossover = layers
        print(f"{r}  {classes:<3} " + "  ".join(cells) + f"  SRG below DNC from L = {crossover}")


def refine(args) -> None:
    for item in args.refine.split(","):
        r, layers = (int(v) for v in item.split(":"))
        classes = r * (r - 1) // 2
        ufm = DeepUFM(classes, classes, args.per_class, layers=layers, lambda_w=args.lam,
                      lambda_h=args.lam)
        for name, shape in (("DNC", dnc_shape(classes)), ("SRG", srg_shape(r))):
            start = time.perf_counter()
            params = candidate_params(shape, layers, lambda_w=args.lam, lambda_h=args.lam,
                                      per_class=args.per_class)
            before = float(ufm.objective(params)[0])
            solution = ufm.refine(params, steps=args.refine_steps, anneal=args.refine_anneal,
                                  grad_tol=1e-9)
            smoothed = solution.smoothed_grad_norm
            print(f"r={r} K={classes} L={layers} {name}: f {before:.6f} -> "
                  f"{float(solution.objective[0]):.6f}, grad {float(solution.grad_norm[0]):.0e},"
                  f" smoothed grad {float(smoothed[0]) if smoothed is not None else 0:.0e}, "
                  f"certified {bool(solution.certified(1e-6)[0])}, smoothed "
                  f"{bool(solution.certified(1e-6, smoothed=True)[0])}, kinks "
                  f"{int(solution.kinks[0])}, ranks of the class means and of the last "
                  f"pre-activation {mean_ranks(solution, classes)} "
                  f"({time.perf_counter() - start:.0f}s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vertices", default="3,4,5,6,7,8")
    parser.add_argument("--layers", default="2,3,4,5,6,8")
    parser.add_argument("--lambda", dest="lam", type=float, default=4e-3)
    parser.add_argument("--per-class", type=int, default=1)
    parser.add_argument("--refine", default="4:4,5:4,5:3")
    parser.add_argument("--refine-steps", type=int, default=6000)
    parser.add_argument("--refine-anneal", type=int, default=3)
    args = parser.parse_args()
    start = time.perf_counter()
    sweep(args)
    if args.refine:
        refine(args)
    print(f"total {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
