"""Unconstrained features models solved from many random starts: the UFM study.

:func:`build_ufm` makes the model from the command line's settings, :func:`solve_ufm`
runs every random start as one batch, measures each final point (objective, gap to f*,
collapse metrics, the classifier's geometry, optionally the Hessian probe) and writes
``ufm.json`` and ``convergence.png``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.imbalance import imbalance_metrics
from nclab.core.io import make_dirs, write_json
from nclab.core.validation import check_memory
from nclab.data.imbalance import Imbalance
from nclab.report.ufm import plot_convergence
from nclab.ufm import LayerPeeledUFM, RegularizedUFM, SphereUFM, UFMSolution, probe
from nclab.ufm.layer_peeled import DEFAULT_ENERGY_H, DEFAULT_ENERGY_W

#: Collapse metrics shown in the table (the JSON has all of them).
SHOWN_METRICS = ("nc1", "etf_error_means", "etf_error_weights", "wh_duality")
#: Weight decay of W, H and b when none is given.
DEFAULT_DECAY = 5e-3
#: Inverse temperature of the model on the sphere when none is given.
DEFAULT_TAU = 4.0
RESULT_JSON, FIGURE_PNG = "ufm.json", "convergence.png"


#: The models of :func:`build_ufm` (``--model``); ``--normalized`` is the sphere model.
MODELS = ("regularized", "layer-peeled")


def build_ufm(classes: int, dim: int, per_class: int, loss: str, normalized: bool,
              tau: float | None, lambda_w: float | None, lambda_h: float | None,
              lambda_b: float | None, imbalance: Imbalance | None = None, *,
              model: str | None = None, energy_w: float | None = None,
              energy_h: float | None = None) -> RegularizedUFM | SphereUFM | LayerPeeledUFM:
    """The model of the settings; None takes the default (weight decays, tau, budgets).

    ``imbalance`` gives the class counts of the profile with n_max = ``per_class``
    (the regularized model and the Layer-Peeled Model). ``model`` None picks the
    Layer-Peeled Model when ``imbalance`` or a budget is given and no weight decay is
    (its minority rows merge and stay nonzero: docs/imbalance.md), the regularized model
    otherwise.
    """
    decays = [name for name, v in (("--lambda-w", lambda_w), ("--lambda-h", lambda_h),
                                   ("--lambda-b", lambda_b)) if v is not None]
    budgets = [name for name, v in (("--energy-w", energy_w), ("--energy-h", energy_h))
               if v is not None]
    model = _model_name(model, normalized, bool(decays), bool(budgets), imbalance)
    counts = None if imbalance is None else imbalance.counts(per_class, classes).tolist()
    if model == "layer-peeled":
        wrong = decays + (["--tau"] if tau is not None else [])
        if wrong:
            raise NCInputError(f"{', '.join(wrong)}: the Layer-Peeled Model has norm budgets "
                               "(--energy-w, --energy-h), no weight decay or temperature")
        if loss != "ce":
            raise NCInputError("the Layer-Peeled Model uses cross-entropy; drop --loss or use ce")
        return LayerPeeledUFM(
            classes, dim, per_class, counts=counts,
            energy_w=DEFAULT_ENERGY_W if energy_w is None else energy_w,
            energy_h=DEFAULT_ENERGY_H if energy_h is None else energy_h)
    if budgets:
        raise NCInputError(f"{', '.join(budgets)} apply to --model layer-peeled only")
    if normalized:
        if imbalance is not None:
            raise NCInputError("--imbalance applies to the regularized model or the "
                               "Layer-Peeled Model, not --normalized")
        if decays:
            raise NCInputError(f"{', '.join(decays)}: the normalized model has no weight decay")
        if loss != "ce":
            raise NCInputError("the normalized model uses cross-entropy; drop --loss or use ce")
        return SphereUFM(classes, dim, per_class, tau=DEFAULT_TAU if tau is None else tau)
    if tau is not None:
        raise NCInputError("--tau applies to --normalized only")
    return RegularizedUFM(
        classes, dim, per_class, loss=loss,
        lambda_w=DEFAULT_DECAY if lambda_w is None else lambda_w,
        lambda_h=DEFAULT_DECAY if lambda_h is None else lambda_h,
        lambda_b=DEFAULT_DECAY if lambda_b is None else lambda_b, counts=counts)


def _model_name(model: str | None, normalized: bool, decays: bool, budgets: bool,
                imbalance: Imbalance | None) -> str:
    """``--model`` resolved: an explicit name checked, None by the options given."""
    if model is not None:
        if model not in MODELS:
            raise NCInputError(f"--model must be one of {', '.join(MODELS)}; got {model!r}")
        if normalized:
            raise NCInputError("--normalized is a model of its own; drop --model")
        return model
    if normalized or decays:
        return "regularized"
    return "layer-peeled" if budgets or imbalance is not None else "regularized"


def solve_ufm(model: RegularizedUFM | SphereUFM | LayerPeeledUFM, out: Path, *, seeds: int,
              steps: int, lr: float, grad_tol: float, tol: float, device: torch.device,
              probe_hessian: bool = False, imbalance: Imbalance | None = None,
              callback: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Solve ``model`` from seeds 0..seeds-1, write ``out/ufm.json`` and the figure.

    Parameters
    ----------
    model : RegularizedUFM or SphereUFM
    out : Path
        Output folder (created).
    seeds, steps, lr, grad_tol
        Random starts and the descent's settings (see ``model.solve``).
    tol : float
        A run reaches f* when f - f* <= tol.
    device : torch.device
    probe_hessian : bool
        The Hessian spectrum at every solution (the model on the sphere only).
    imbalance : Imbalance, optional
        The profile the model's counts follow: its minority classes, for the metrics of
        definitions §12 of every run (``imbalance`` of each run; the best run's
        ``minority_collapse_weights`` at the top level).
    callback : callable, optional
        Called with the iteration count during the descent (for a progress bar).

    Returns
    -------
    dict
        ``runs`` (one record per seed), ``lines`` (the summary in words), ``json`` (the
        content of ufm.json) and ``figure`` (its path).
    """
    if probe_hessian and not isinstance(model, SphereUFM):
        raise NCInputError("--probe needs --normalized (the probe is for the sphere model)")
    if imbalance is not None and isinstance(model, SphereUFM):
        raise NCInputError("--imbalance applies to the regularized model or the "
                           "Layer-Peeled Model, not --normalized")
    if seeds < 1:
        raise NCInputError(f"--seeds must be >= 1; got {seeds}")
    check_memory(solve_bytes(model, seeds), device,
                 f"--classes {model.num_classes} --dim {model.dim} --per-class "
                 f"{model.per_class} --seeds {seeds}")
    solution = model.solve(range(seeds), steps=steps, lr=lr, grad_tol=grad_tol, device=device,
                           callback=callback)
    runs = _runs(model, solution, tol, probe_hessian)
    summary = _summary(model, solution, runs, tol)
    if imbalance is not None and not isinstance(model, SphereUFM):  # (checked above)
        summary["json"].update(_imbalance(model, solution, runs, imbalance))
    if isinstance(model, LayerPeeledUFM):
        summary["lines"].append(_budgets(model, solution, runs))
    make_dirs(out)
    figure = plot_convergence(solution, out / FIGURE_PNG, tol=tol, title=repr(model),
                              riemannian=isinstance(model, SphereUFM | LayerPeeledUFM))
    document = {
        "model": type(model).__name__, "config": _config(model), "steps": steps, "lr": lr,
        "grad_tol": grad_tol, "tol": tol, "device": str(device),
        "iterations": solution.trace.iterations, **summary["json"], "runs": runs}
    write_json(out / RESULT_JSON, document)
    return {"runs": runs, "lines": summary["lines"], "json": document, "figure": figure}


def solve_bytes(model: RegularizedUFM | SphereUFM | LayerPeeledUFM, seeds: int) -> int:
    """Memory of one solve, in bytes: float64 W (S, K, d), H (S, K n, d) and logits
    (S, K n, K), each held about four times (values, gradients, the line search's trial
    point, temporaries)."""
    classes, dim, samples = model.num_classes, model.dim, model.num_samples
    values = seeds * (classes * dim + samples * dim + samples * classes)
    return 4 * 8 * values


def _config(model: RegularizedUFM | SphereUFM | LayerPeeledUFM) -> dict[str, Any]:
    keys = ("num_classes", "dim", "per_class", "counts", "tau", "loss", "lambda_w", "lambda_h",
            "lambda_b", "energy_w", "energy_h")
    values = {key: getattr(model, key) for key in keys if hasattr(model, key)}
    if values.get("counts") is not None:
        values["counts"] = list(values["counts"])
    return values


def _budgets(model: LayerPeeledUFM, solution: UFMSolution, runs: list[dict]) -> str:
    """The Lagrange multipliers of the two budgets of every run (added to its record),
    and a line: both positive means a KKT point of the inequality-constrained program."""
    mu_w, mu_h = model.multipliers(solution.weight, solution.features)
    for run, w, h in zip(runs, mu_w.tolist(), mu_h.tolist(), strict=True):
        run["multipliers"] = {"energy_w": w, "energy_h": h}
    low = float(torch.minimum(mu_w, mu_h).min())
    verdict = ("every run spends both budgets (a KKT point of the program with inequality "
               "budgets)" if low > 0 else "a run does not gain from its budgets: not a KKT "
               "point of the inequality-constrained program")
    return f"smallest Lagrange multiplier of the budgets over the runs {low:.3g}: {verdict}"


def _imbalance(model: RegularizedUFM | LayerPeeledUFM, solution: UFMSolution, runs: list[dict],
               imbalance: Imbalance) -> dict[str, Any]:
    """The §12 metrics of every run (added to its record) and the best run's, JSON-ready."""
    counts = np.asarray(model.counts if model.counts is not None
                        else [model.per_class] * model.num_classes)
    minority = imbalance.minority_classes(model.num_classes)
    labels = solution.labels.cpu().numpy()
    for i, run in enumerate(runs):
        features = solution.features[i].cpu().numpy()
        means = np.stack([features[labels == c].mean(axis=0) for c in range(len(counts))])
        run["imbalance"] = imbalance_metrics(solution.weight[i].cpu().numpy(), means, counts,
                                             minority)
    best = int(solution.objective.argmin())
    return {"imbalance": {"profile": imbalance.text, "counts": counts.tolist(),
                          "minority": minority},
            "minority_collapse_weights": runs[best]["imbalance"]["minority_collapse_weights"]}


def _runs(model, solution: UFMSolution, tol: float, probe_hessian: bool) -> list[dict]:
    """One JSON-ready record per seed."""
    gap = solution.gap
    reached = solution.iterations_to(tol) if gap is not None else [None] * len(solution.seeds)
    runs = []
    for i, seed in enumerate(solution.seeds):
        cos = classifier_cosines(solution.weight[i])
        record: dict[str, Any] = {
            "seed": seed, "objective": float(solution.objective[i]),
            "gap": None if gap is None else float(gap[i]),
            "grad_norm": float(solution.grad_norm[i]), "iterations_to_tol": reached[i],
            "classifier_cosine_min": float(cos.min()), "classifier_cosine_max": float(cos.max()),
            "metrics": None,
        }
        if model.per_class > 1:
            try:
                record["metrics"] = solution.metrics(i).to_dict()
            except NCInputError as exc:  # e.g. W = H = 0, the minimizer under heavy decay
                record["metrics_error"] = str(exc)
        if probe_hessian:
            result = probe(model, solution.weight[i], solution.features[i], k=200)
            record["probe"] = {**result.to_dict(), "zero_modes": result.zero_modes(1e-8)}
        runs.append(record)
    return runs


def classifier_cosines(weight: torch.Tensor) -> torch.Tensor:
    """Off-diagonal cosines cos(w_c, w_c') of the rows of W (K, d), flattened."""
    unit = weight / torch.linalg.vector_norm(weight, dim=1, keepdim=True)
    gram = unit @ unit.T
    return gram[~torch.eye(len(gram), dtype=torch.bool, device=gram.device)].cpu()


def fmt(value: float | int | None) -> str:
    """A metric for a table cell: n/a, an integer, or 3 significant digits."""
    if value is None:
        return "n/a"
    return str(value) if isinstance(value, int) else f"{value:.2e}"


def _summary(model, solution: UFMSolution, runs: list[dict], tol: float) -> dict:
    """Printed lines and JSON fields: fraction at f* (or at the best run), geometry."""
    objective = solution.objective
    # the first seed at the lowest objective: runs that reach it differ in their last bits,
    # and which of them is lowest differs between machines
    lowest = float(objective.min())
    best = int((objective <= lowest + 1e-12 * max(1.0, abs(lowest))).nonzero()[0][0])
    lines: list[str] = []
    fields: dict[str, Any] = {"f_star": solution.optimal_value}
    if solution.optimal_value is not None:
        count = int((solution.gap <= tol).sum())
        lines.append(f"f* = {solution.optimal_value:.12f}; reached within {tol:g} by "
                     f"{count}/{len(runs)} random starts ({100 * count / len(runs):.0f}%)")
        fields["fraction_reached"] = count / len(runs)
    else:
        count = int((objective - objective[best] <= tol).sum())
        bound = getattr(model, "etf_value", None)
        why = ("d < K - 1: no simplex ETF" if model.dim < model.num_classes - 1
               else "no closed form for these settings")
        lines.append(f"f* unknown ({why}). Best objective {float(objective[best]):.12f} "
                     f"(seed {best}); within {tol:g} of it: {count}/{len(runs)} random starts")
        if bound is not None:
            lines.append(f"the ETF value {bound:.12f} is a lower bound that no point attains")
        fields.update(best_objective=float(objective[best]), fraction_at_best=count / len(runs))
    if isinstance(model, RegularizedUFM) and model.balanced \
            and model.num_classes * model.gamma >= 1:
        lines.append(f"K sqrt(n lambda_W lambda_H) = {model.num_classes * model.gamma:.3g} >= 1: "
                     "the minimizer is W = H = 0; the metrics below describe a vanishing point")
    measured = [run["metrics"] for run in runs if run["metrics"] is not None]
    if measured:
        worst = {name: max((m[name] for m in measured if m[name] is not None), default=None)
                 for name in SHOWN_METRICS}
        lines.append("largest over the runs: " + ", ".join(
            f"{name} {fmt(value)}" for name, value in worst.items()))
        fields["largest_metrics"] = worst
    errors = sorted({run["metrics_error"] for run in runs if "metrics_error" in run})
    lines += [f"collapse metrics not computed: {message}" for message in errors]
    weight = solution.weight[best]
    cos = classifier_cosines(weight)
    distinct = np.unique(np.round(cos.numpy(), 6))
    # Nonzero eigenvalues of W^T W over their mean: all 1 for a tight frame on its span.
    rank = min(model.dim, model.num_classes - 1)
    frame = (torch.linalg.svdvals(weight)[:rank] ** 2 * rank / weight.square().sum()).cpu().numpy()
    lines.append(f"classifier of seed {best}: {len(distinct)} distinct cosines "
                 f"{_short(distinct)}; simplex ETF: {-1 / (model.num_classes - 1):.6f}")
    lines.append(f"  top {rank} eigenvalues of W^T W over their mean (all 1: a tight frame): "
                 f"{_short(frame)}")
    fields["best_geometry"] = {"seed": best, "distinct_cosines": distinct.tolist(),
                               "frame_eigenvalues": frame.tolist()}
    return {"lines": lines, "json": fields}


def _short(values: np.ndarray, limit: int = 8) -> str:
    text = ", ".join(f"{v:.4g}" for v in values[:limit])
    return f"[{text}{', ...' if len(values) > limit else ''}]"

