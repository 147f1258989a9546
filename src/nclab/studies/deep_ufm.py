"""The deep UFM from many random starts (``nclab ufm --layers L``): ufm.json with the
collapse metrics of every layer of the best start (definitions §15)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nclab.core.errors import NCInputError
from nclab.core.io import make_dirs, write_json
from nclab.ufm.deep import DeepUFM, forward, kink_report

#: Weight decay of every W_l and of H_1 when none is given (as the shallow model's).
DEFAULT_DECAY = 5e-3
#: Outputs of RMS norm below this count as zero: the start ended at (or near) W = H = 0.
VANISHING = 1e-6
#: An end is reported certified when its gradient norm is at most this and no kink has a
#: slope below minus this (DeepUFMSolution.certified).
CERTIFY_TOL = 1e-6


def build_deep_ufm(classes: int, dim: int, per_class: int, layers: int, activation: str, *,
                   loss: str | None, normalized: bool, imbalance: Any, tau: float | None,
                   lambda_w: float | None, lambda_h: float | None, lambda_b: float | None
                   ) -> DeepUFM:
    """The deep model of the command line's settings; one NCInputError line for an option
    it has no use for."""
    unused = [name for name, given in (
        ("--normalized", normalized), ("--imbalance", imbalance is not None),
        ("--tau", tau is not None), ("--lambda-b", lambda_b is not None)) if given]
    if unused:
        raise NCInputError(f"{', '.join(unused)}: not available with --layers (the deep UFM "
                           "has squared error, weight decay on W_l and H_1, no bias)")
    if loss not in (None, "mse"):
        raise NCInputError(f"--layers: the deep UFM uses the squared error (--loss mse); got "
                           f"--loss {loss}")
    return DeepUFM(classes, dim, per_class, layers=layers, activation=activation,
                   lambda_w=DEFAULT_DECAY if lambda_w is None else lambda_w,
                   lambda_h=DEFAULT_DECAY if lambda_h is None else lambda_h)


def solve_deep_ufm(model: DeepUFM, out: Path, *, seeds: int, steps: int, lr: float,
                   grad_tol: float, device: torch.device, anneal: int | None = None
                   ) -> dict[str, Any]:
    """Solve from seeds 0..seeds-1 and write ``out/ufm.json``.

    Returns
    -------
    dict
        The content of ufm.json: ``config``, ``runs`` (seed, objective, gradient norm of
        every start, with its pre-activations at the kink, the smallest slope off them
        and ``certified``, the first-order test of ``DeepUFMSolution.certified`` at
        1e-6), ``anneal`` and ``widths`` (the smoothing stages), ``best_seed`` and
        ``layers``: one entry per layer l = 1..L of the best start,
        ``{"layer": l, "nc1": ..., ...}`` with every metric of definitions §1;
        ``vanishing`` is true when the best start's outputs W_L H_L have an RMS norm below
        1e-6 (heavy weight decay: the minimizer is then zero and the layer metrics describe
        rounding noise).
    """
    if seeds < 1:
        raise NCInputError(f"--seeds must be >= 1; got {seeds}")
    model.smoothing_widths(anneal)  # a bad value stops here, before anything is written
    solution = model.solve(range(seeds), steps=steps, lr=lr, grad_tol=grad_tol, device=device,
                           anneal=anneal)
    certified = solution.certified(CERTIFY_TOL)
    kinks, kink_slope = kink_report(model, solution.params)
    best = solution.best
    outputs = forward(tuple(p[best:best + 1] for p in solution.params), model.activation)[-1]
    vanishing = float(outputs.square().mean().sqrt()) < VANISHING
    layers = [{"layer": index + 1, **metrics.to_dict()}
              for index, metrics in enumerate(solution.layer_metrics(best))]
    document = {
        "model": "DeepUFM",
        "config": {"num_classes": model.num_classes, "dim": model.dim,
                   "per_class": model.per_class, "layers": model.layers,
                   "activation": model.activation, "loss": "mse",
                   "lambda_w": model.lambda_w, "lambda_h": model.lambda_h},
        "steps": steps, "lr": lr, "grad_tol": grad_tol, "device": str(device),
        "anneal": len(solution.widths), "widths": solution.widths,
        "iterations": solution.trace.iterations, "best_seed": solution.seeds[best],
        "best_objective": float(solution.objective[best]), "vanishing": vanishing,
        "runs": [{"seed": seed, "objective": float(solution.objective[i]),
                  "grad_norm": float(solution.grad_norm[i]),
                  "kinks": int(kinks[i]), "kink_slope": float(kink_slope[i]),
                  "certified": bool(certified[i])}
                 for i, seed in enumerate(solution.seeds)],
        "layers": layers}
    make_dirs(out)
    write_json(out / "ufm.json", document)
    return document
