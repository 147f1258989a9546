"""``nclab ufm``: solve an unconstrained features model from many random starts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nclab.cli.app import app, console
from nclab.core.errors import NCInputError
from nclab.core.io import write_json
from nclab.report.ufm import plot_convergence
from nclab.ufm import RegularizedUFM, SphereUFM, UFMSolution, probe
from nclab.ufm.classification import LOSSES

#: Collapse metrics shown in the table (the JSON has all of them).
SHOWN_METRICS = ("nc1", "etf_error_means", "etf_error_weights", "wh_duality")
DEFAULT_DECAY = 5e-3


@app.command("ufm")
def ufm_command(
    classes: int = typer.Option(10, "--classes", "-K", help="Number of classes K."),
    dim: int = typer.Option(16, "--dim", "-d", help="Feature dimension d."),
    per_class: int = typer.Option(5, "--per-class", "-n", help="Features per class n."),
    loss: str = typer.Option("ce", help=f"Loss of the regularized model: {', '.join(LOSSES)}."),
    normalized: bool = typer.Option(
        False, "--normalized", help="Unit-norm features and classifiers (SPEC section 4)."),
    tau: float | None = typer.Option(None, help="Inverse temperature (--normalized; default 4)."),
    lambda_w: float | None = typer.Option(
        None, help=f"Weight decay on W (default {DEFAULT_DECAY})."),
    lambda_h: float | None = typer.Option(
        None, help=f"Weight decay on H (default {DEFAULT_DECAY})."),
    lambda_b: float | None = typer.Option(
        None, help=f"Weight decay on b (default {DEFAULT_DECAY})."),
    steps: int = typer.Option(5000, help="Maximum gradient steps."),
    lr: float = typer.Option(1.0, help="Initial step size (adapted per run by backtracking)."),
    grad_tol: float = typer.Option(1e-10, help="Stop when every run's gradient norm is below."),
    seeds: int = typer.Option(1, help="Number of random starts (seeds 0..S-1), run as a batch."),
    tol: float = typer.Option(1e-6, help="A run reaches f* when f - f* <= tol."),
    device: str = typer.Option("cpu", help="torch device, e.g. cpu or cuda."),
    probe_hessian: bool = typer.Option(
        False, "--probe", help="(--normalized) Hessian spectrum at every solution."),
    out: Path = typer.Option(Path("ufm_out"), help="Folder for ufm.json and convergence.png."),
) -> None:
    """Solve a UFM from random starts: objective, gap to f*, collapse metrics, figure."""
    model = _build_model(classes, dim, per_class, loss, normalized, tau, lambda_w, lambda_h,
                         lambda_b)
    if probe_hessian and not normalized:
        raise NCInputError("--probe needs --normalized (the probe is for the sphere model)")
    if seeds < 1:
        raise NCInputError(f"--seeds must be >= 1; got {seeds}")
    torch_device = _device(device)
    console.print(f"{model}: {seeds} random starts on {torch_device}", highlight=False)
    with Progress(TextColumn("descent"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("descent", total=steps)
        solution = model.solve(range(seeds), steps=steps, lr=lr, grad_tol=grad_tol,
                               device=torch_device,
                               callback=lambda i: bar.update(task, completed=i))
    runs = _runs(model, solution, tol, probe_hessian)
    for table in _tables(runs):
        console.print(table)
    summary = _summary(model, solution, runs, tol)
    for line in summary["lines"]:
        console.print(line, highlight=False)
    out.mkdir(parents=True, exist_ok=True)
    figure = plot_convergence(solution, out / "convergence.png", tol=tol, title=repr(model),
                              riemannian=normalized)
    write_json(out / "ufm.json", {
        "model": type(model).__name__, "config": _config(model), "steps": steps, "lr": lr,
        "grad_tol": grad_tol, "tol": tol, "device": str(torch_device),
        "iterations": solution.trace.iterations, **summary["json"], "runs": runs})
    console.print(f"wrote {out / 'ufm.json'} and {figure}")


def _build_model(classes, dim, per_class, loss, normalized, tau, lambda_w, lambda_h, lambda_b):
    if normalized:
        given = [name for name, v in (("--lambda-w", lambda_w), ("--lambda-h", lambda_h),
                                      ("--lambda-b", lambda_b)) if v is not None]
        if given:
            raise NCInputError(f"{', '.join(given)}: the normalized model has no weight decay")
        if loss != "ce":
            raise NCInputError("the normalized model uses cross-entropy; drop --loss or use ce")
        return SphereUFM(classes, dim, per_class, tau=4.0 if tau is None else tau)
    if tau is not None:
        raise NCInputError("--tau applies to --normalized only")
    return RegularizedUFM(
        classes, dim, per_class, loss=loss,
        lambda_w=DEFAULT_DECAY if lambda_w is None else lambda_w,
        lambda_h=DEFAULT_DECAY if lambda_h is None else lambda_h,
        lambda_b=DEFAULT_DECAY if lambda_b is None else lambda_b)


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise NCInputError(f"--device {name!r} is not a torch device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NCInputError("--device cuda: no CUDA device is available")
    return device


def _config(model) -> dict:
    keys = ("num_classes", "dim", "per_class", "tau", "loss", "lambda_w", "lambda_h",
            "lambda_b")
    return {key: getattr(model, key) for key in keys if hasattr(model, key)}


def _runs(model, solution: UFMSolution, tol: float, probe_hessian: bool) -> list[dict]:
    """One JSON-ready record per seed."""
    gap = solution.gap
    reached = solution.iterations_to(tol) if gap is not None else [None] * len(solution.seeds)
    runs = []
    for i, seed in enumerate(solution.seeds):
        cos = classifier_cosines(solution.weight[i])
        record = {
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


def _tables(runs: list[dict]) -> list[Table]:
    """Optimization results per run, then the collapse metrics per run (two narrow tables)."""
    columns = ["seed", "objective", "f - f*", "grad", "iters"]
    caption = "grad: gradient norm; iters: first iteration with f - f* <= tol"
    if "probe" in runs[0]:
        columns += ["min eig", "zero modes"]
        caption += ("; min eig: smallest Hessian eigenvalue; zero modes: |eigenvalue| <= 1e-8"
                    " / dimension of the rotation orbit")
    tables = [_new_table("final point of each run", columns, caption)]
    for run in runs:
        row = [str(run["seed"]), f"{run['objective']:.12f}", _fmt(run["gap"]),
               f"{run['grad_norm']:.1e}", _fmt(run["iterations_to_tol"])]
        if "probe" in run:
            row += [f"{run['probe']['min_eigenvalue']:.2e}",
                    f"{run['probe']['zero_modes']}/{run['probe']['symmetry_modes']}"]
        tables[0].add_row(*row)
    if any(run["metrics"] is not None for run in runs):
        tables.append(_new_table("collapse metrics of each run", ["seed", *SHOWN_METRICS]))
        for run in runs:
            metrics = run["metrics"] or {}
            tables[1].add_row(str(run["seed"]), *(_fmt(metrics.get(m)) for m in SHOWN_METRICS))
    return tables


def _new_table(title: str, columns: list[str], caption: str | None = None) -> Table:
    table = Table(title=title, caption=caption, caption_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for name in columns:
        table.add_column(name, justify="right")
    return table


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    return str(value) if isinstance(value, int) else f"{value:.2e}"


def _summary(model, solution: UFMSolution, runs: list[dict], tol: float) -> dict:
    """Printed lines and JSON fields: fraction at f* (or at the best run), geometry."""
    objective = solution.objective
    best = int(objective.argmin())
    lines, fields = [], {"f_star": solution.optimal_value}
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
    if isinstance(model, RegularizedUFM) and model.num_classes * model.gamma >= 1:
        lines.append(f"K sqrt(n lambda_W lambda_H) = {model.num_classes * model.gamma:.3g} >= 1: "
                     "the minimizer is W = H = 0; the metrics below describe a vanishing point")
    measured = [run["metrics"] for run in runs if run["metrics"] is not None]
    if measured:
        worst = {name: max((m[name] for m in measured if m[name] is not None), default=None)
                 for name in SHOWN_METRICS}
        lines.append("largest over the runs: " + ", ".join(
            f"{name} {_fmt(value)}" for name, value in worst.items()))
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

