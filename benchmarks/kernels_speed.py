"""Speed of the kernel code: NNGP + NTK Gram matrices and one adaptive-kernel solve.

Run:  python benchmarks/kernels_speed.py [--n 4096] [--d 128] [--adaptive-n 1024]
                                          [--adaptive-d 32] [--threads T]

(a) ``two_layer_kernels`` (Kact, K1 and Theta together, chunked) for N x d0 inputs,
    against two baselines measured in the same run: the one float64 product X X^T (the
    floor: every Gram needs it) and a plain numpy evaluation of the same formulas on
    whole matrices;
(b) one ``adaptive_kernel`` solve on D1 (N x d0), reported with its number of
    evaluations of the equations of state, against one evaluation with the analytic
    gradient and one with the gradient taken by torch autograd (what a straightforward
    implementation would do).
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import best_time  # noqa: E402

from nclab.kernels import ACTIVATIONS, adaptive_kernel, d1, two_layer_kernels  # noqa: E402
from nclab.kernels.adaptive import EquationsOfState, adaptive_q  # noqa: E402


def numpy_kernels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Erf NNGP and NTK with sigma_w = 1, sigma_b = 0, whole matrices, plain numpy."""
    k0 = x @ x.T / x.shape[1]
    v = np.diag(k0)
    scale = np.sqrt(np.outer(1 + 2 * v, 1 + 2 * v))
    kact = 2 / np.pi * np.arcsin(2 * k0 / scale)
    kdot = 4 / np.pi / np.sqrt(scale**2 - 4 * k0**2)
    return kact, kact + k0 * kdot


def autograd_update(system: EquationsOfState, sigma: torch.Tensor, width: float) -> torch.Tensor:
    """F(Sigma) with d/dSigma Tr[A Q(Sigma)] by autograd instead of the closed form."""
    a = system.source(sigma)
    leaf = sigma.clone().requires_grad_(True)
    torch.sum(a * adaptive_q(system.inputs, leaf, system.dual, system.sigma_a)).backward()
    return torch.linalg.inv(torch.diag(1 / system.prior_variances) - leaf.grad / width)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--adaptive-n", type=int, default=1024)
    parser.add_argument("--adaptive-d", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--gram-only", action="store_true",
                        help="Time two_layer_kernels alone (for large --n, e.g. 8192).")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    x = np.random.default_rng(0).normal(size=(args.n, args.d))
    if args.gram_only:
        start = time.perf_counter()
        grams = two_layer_kernels(x, get=("nngp_hidden", "nngp", "ntk"))
        print(f"two_layer_kernels N={args.n}, d0={args.d}: {time.perf_counter() - start:.2f} s, "
              f"{len(grams)} matrices of {args.n**2 * 8 / 2**20:.0f} MiB, peak resident "
              f"memory {peak_mib():.0f} MiB")
        return
    gram = best_time(lambda: two_layer_kernels(x, get=("nngp_hidden", "nngp", "ntk")), 2)
    product = best_time(lambda: x @ x.T, 2)
    plain = best_time(lambda: numpy_kernels(x), 2)
    ours = two_layer_kernels(x, get=("nngp_hidden", "ntk"))
    reference = numpy_kernels(x)
    error = max(np.abs(ours["nngp_hidden"] - reference[0]).max(),
                np.abs(ours["ntk"] - reference[1]).max())
    print(f"(a) NNGP + NTK Gram, N={args.n}, d0={args.d} (erf, 3 matrices of "
          f"{args.n**2 * 8 / 2**20:.0f} MiB)")
    print(f"    two_layer_kernels      {gram:8.3f} s")
    print(f"    X X^T alone (floor)    {product:8.3f} s   ratio {gram / product:6.2f}x")
    print(f"    plain numpy, 2 kernels {plain:8.3f} s   ratio {gram / plain:6.2f}x  "
          f"(max difference {error:.1e})")
    print(f"    peak resident memory so far {peak_mib():.0f} MiB")

    xa, ya = d1(args.adaptive_d).sample(args.adaptive_n, rng=0)
    start = time.perf_counter()
    result = adaptive_kernel(xa, ya)
    solve = time.perf_counter() - start
    system = EquationsOfState(torch.from_numpy(xa), torch.from_numpy(np.where(ya == 1, 1.0, -1.0))
                              [:, None], ACTIVATIONS["erf"], sigma_a=128**-0.5, noise=1e-6)
    sigma = torch.from_numpy(np.asarray(result.sigma))
    one = best_time(lambda: system.update(sigma, 500.0), 3)
    auto = best_time(lambda: autograd_update(system, sigma, 500.0), 3)
    gap = float((system.update(sigma, 500.0) - autograd_update(system, sigma, 500.0)).abs().max())
    print(f"(b) adaptive kernel, D1 N={args.adaptive_n}, d0={args.adaptive_d}, erf, h=500: "
          f"{result.status} after {result.evaluations} evaluations")
    print(f"    one solve              {solve:8.3f} s")
    print(f"    one evaluation         {one:8.3f} s   solve = {solve / one:6.1f} evaluations")
    print(f"    one autograd eval      {auto:8.3f} s   analytic speed-up {auto / one:6.2f}x  "
          f"(max difference {gap:.1e})")
    if not math.isfinite(result.width_reached):
        print("    (the solve failed at the first width)")


if __name__ == "__main__":
    main()
