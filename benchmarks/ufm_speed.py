"""Speed of the sphere UFM solver against textbook Riemannian gradient descent.

Run:  python benchmarks/ufm_speed.py [--classes 100] [--dim 128] [--per-class 10]
                                     [--tau 4] [--threads 1]

Both start from the same random point (seed 0) on the CPU, in float64:
(a) nclab: SphereUFM.solve (analytic gradient, one backtracking step per run, the
    gradient of H scaled by n);
(b) baseline: Riemannian gradient descent as usually written: autograd gradient of
    F.cross_entropy, tangent projection, normalization, one fixed step size; the best
    step of a grid, chosen in this run by time to f*.
Reported: iterations per second, iterations and wall time until f - f* <= tol, and the
ratios baseline / nclab.

One torch thread by default: on a 2-core machine shared with other jobs, two OpenMP
threads spin-waiting for each other made both solvers about 10 times slower (8.5 it/s
instead of 96 for nclab). Pass --threads 0 to use torch's default.
"""

from __future__ import annotations

import argparse
import time

import torch

from nclab.ufm import SphereUFM

BASELINE_STEPS = (10.0, 30.0, 100.0)


def nclab_run(ufm: SphereUFM, steps: int, tol: float) -> tuple[int | None, float, float]:
    """(iterations to tol, seconds to tol, iterations per second) of SphereUFM.solve."""
    stamps: list[float] = []
    start = time.perf_counter()
    solution = ufm.solve([0], steps=steps, grad_tol=1e-10,
                         callback=lambda i: stamps.append(time.perf_counter()))
    total = time.perf_counter() - start
    reached = solution.iterations_to(tol)[0]
    seconds = None if reached is None else (stamps[reached - 1] - start if reached else 0.0)
    return reached, seconds, solution.trace.iterations / total


def baseline_run(ufm: SphereUFM, lr: float, steps: int, tol: float
                 ) -> tuple[int | None, float, float]:
    """The same three numbers for fixed-step autograd Riemannian gradient descent."""
    weight, features = (x[0].clone().requires_grad_(True) for x in ufm.random_start([0]))
    labels = ufm.labels()
    start = time.perf_counter()
    reached = None
    for iteration in range(steps + 1):
        loss = torch.nn.functional.cross_entropy(ufm.tau * features @ weight.T, labels)
        if loss.item() - ufm.optimal_value <= tol:
            reached = iteration
            break
        grads = torch.autograd.grad(loss, (weight, features))
        with torch.no_grad():
            for x, g in zip((weight, features), grads, strict=True):
                x -= lr * (g - (x * g).sum(dim=1, keepdim=True) * x)
                x /= x.norm(dim=1, keepdim=True)
    total = time.perf_counter() - start
    return reached, (total if reached is not None else None), max(iteration, 1) / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--tau", type=float, default=4.0)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--steps", type=int, default=3000, help="cap for every run")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (0: torch default; see the module docstring)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ufm = SphereUFM(args.classes, args.dim, args.per_class, tau=args.tau)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {ufm}; "
          f"f* = {ufm.optimal_value:.12f}, tol = {args.tol:g}")

    ours = nclab_run(ufm, args.steps, args.tol)
    _report("(a) nclab SphereUFM.solve", *ours)
    best = None
    for lr in BASELINE_STEPS:
        result = baseline_run(ufm, lr, args.steps, args.tol)
        _report(f"(b) baseline, step {lr:g}", *result)
        if result[1] is not None and (best is None or result[1] < best[1]):
            best = result
    print(f"ratio iterations/s (a)/(b): {ours[2] / best[2] if best else float('nan'):.2f}")
    if best is None or ours[1] is None:
        print("ratio time to f* (b)/(a): n/a (a run did not reach f*)")
    else:
        print(f"ratio time to f* (b)/(a), best fixed step: {best[1] / ours[1]:.2f}")


def _report(name: str, iterations: int | None, seconds: float | None, rate: float) -> None:
    reached = ("not reached" if iterations is None
               else f"{iterations:5d} iterations, {seconds:6.2f} s to f*")
    print(f"{name:<28} {rate:7.1f} it/s   {reached}")


if __name__ == "__main__":
    main()
