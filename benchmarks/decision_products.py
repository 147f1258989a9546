"""The decision pass's two products per batch against one product of the stacked [W; M~].

Run:  OMP_NUM_THREADS=1 python benchmarks/decision_products.py [--classes 100 1000 10000]

Per batch of 512 float32 rows, d = 512, one thread, process CPU time, the minimum over
interleaved rounds:

- ``two``: what ``DecisionStats.update`` runs: ``b + X W^T`` and its argmax, the shift
  ``X s - origin``, then ``penalty - 2 (X s - origin) M~^T`` and its argmin;
- ``one``: a single ``[b; penalty'] + X [W; M~]^T`` and the two arg-reductions of its
  halves. It needs the origin folded into the constants (penalty' = penalty + 2 origin
  M~^T, and s into M~), which DecisionStats avoids on purpose: for means far from 0 the
  folded terms cancel. Timed anyway, to see what it would save.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

ROWS, DIM = 512, 512


def best_pair(classes: int, rounds: int) -> tuple[float, float]:
    gen = torch.Generator().manual_seed(classes)
    x = torch.randn(ROWS, DIM, generator=gen)
    weight_t, centred_t = (torch.randn(DIM, classes, generator=gen) for _ in range(2))
    bias, penalty, minus_origin = (torch.randn(n, generator=gen)
                                   for n in (classes, classes, DIM))
    stacked = torch.cat([weight_t, centred_t], dim=1).contiguous()
    stacked_bias = torch.cat([bias, penalty])
    scores, shifted = torch.empty(ROWS, classes), torch.empty(ROWS, DIM)
    both = torch.empty(ROWS, 2 * classes)

    def two() -> None:
        torch.addmm(bias, x, weight_t, out=scores).argmax(dim=1)
        torch.add(minus_origin, x, alpha=0.5, out=shifted)
        torch.addmm(penalty, shifted, centred_t, alpha=-2, out=scores).argmin(dim=1)

    def one() -> None:
        torch.addmm(stacked_bias, x, stacked, out=both)
        both[:, :classes].argmax(dim=1)
        both[:, classes:].argmin(dim=1)

    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for k, fn in enumerate((two, one)):
            start = time.process_time()
            fn()
            best[k] = min(best[k], time.process_time() - start)
    return best[0], best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[100, 1_000, 10_000])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"rows={ROWS} d={DIM} threads=1 clock=cpu load={os.getloadavg()[0]:.1f}")
    for classes in args.classes:
        two, one = best_pair(classes, 60 if classes < 10_000 else 15)
        print(f"C={classes:>6} two products {two * 1e3:8.3f} ms | stacked {one * 1e3:8.3f} ms"
              f" = {one / two:.3f}x | load={os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
