"""The normalized UFM's classifier margin against the softmax code (K = 10, n = 1).

Run:  python experiments/ufm_softmax_code.py [--dims 2 3 5] [--taus 4 16]

For each d and tau, SphereUFM(10, d, per_class=1, tau) is solved from 10 random starts
(5000 steps each); the one-vs-rest margin of the classifier of the run with the lowest
objective is printed beside the softmax code's value (closed form) or bracket (the best
of 8 seeded ascents, and the proven upper bound).
"""

import argparse

import numpy as np

from nclab.core.margins import ovr_margin
from nclab.ufm import SphereUFM
from nclab.ufm.softmax_code import softmax_code

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--dims", type=int, nargs="+", default=[2, 3, 5])
parser.add_argument("--taus", type=float, nargs="+", default=[4.0, 16.0])
args = parser.parse_args()
print(f"{'d':>2} {'tau':>4} {'ovr_margin_weights (best f run)':>32} "
      f"{'softmax code [lower, upper]':>30}  method")
for dim in args.dims:
    code = softmax_code(10, dim)
    for tau in args.taus:
        sol = SphereUFM(10, dim, per_class=1, tau=tau).solve(seeds=range(10), steps=5000)
        best = int(np.argmin(sol.objective.numpy()))
        margin = ovr_margin(sol.weight[best].numpy())
        bracket = f"[{code.lower:.6f}, {code.upper:.6f}]"
        print(f"{dim:>2} {tau:>4g} {margin:>32.6f} {bracket:>30}  {code.method}", flush=True)
