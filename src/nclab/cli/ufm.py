"""``nclab ufm``: solve an unconstrained features model from many random starts."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nclab.cli.app import app, console
from nclab.cli.options import Runtime, integer, real, runtime_options, text_parser
from nclab.core.distributed import resolve_device
from nclab.core.errors import NCInputError
from nclab.data.imbalance import Imbalance
from nclab.studies.deep_ufm import build_deep_ufm, solve_deep_ufm
from nclab.studies.ufm import (
    DEFAULT_DECAY,
    DEFAULT_TAU,
    RESULT_JSON,
    SHOWN_METRICS,
    build_ufm,
    fmt,
    solve_ufm,
)
from nclab.ufm.classification import LOSSES
from nclab.ufm.layer_peeled import DEFAULT_ENERGY_H, DEFAULT_ENERGY_W


@app.command("ufm")
@runtime_options()
def ufm_command(
    *,
    runtime: Runtime,
    classes: int = typer.Option(10, "--classes", help="Number of classes K.",
                                **integer("--classes")),
    dim: int = typer.Option(16, "--dim", help="Feature dimension d.", **integer("--dim")),
    per_class: int = typer.Option(5, "--per-class", help="Features per class n (with "
                                  "--imbalance: n_max, the largest class).",
                                  **integer("--per-class")),
    imbalance: str = typer.Option(
        None, "--imbalance", parser=text_parser("imbalance", "--imbalance"), metavar="TEXT",
        help="Class counts n_c of a long tail instead of n each: step:R,K (the last K classes "
             "hold round(R n)) or exp:R (class c holds round(n R^(c/(C-1)))) (docs/imbalance.md)."),
    model_name: str | None = typer.Option(
        None, "--model", show_default="layer-peeled with --imbalance and no --lambda-*, else "
        "regularized", help="regularized (weight decay on W, H, b) or layer-peeled (norm "
        "budgets E_W, E_H, no bias: Fang et al., 2021; docs/imbalance.md)."),
    energy_w: float | None = typer.Option(
        None, show_default=f"{DEFAULT_ENERGY_W:g}", help="(--model layer-peeled) Budget E_W of "
        "(1/K) sum_k ||w_k||^2.", **real("--energy-w", low=0, low_open=True)),
    energy_h: float | None = typer.Option(
        None, show_default=f"{DEFAULT_ENERGY_H:g}", help="(--model layer-peeled) Budget E_H of "
        "(1/K) sum_k (1/n_k) sum_i ||h_ki||^2.", **real("--energy-h", low=0, low_open=True)),
    loss: str = typer.Option(None, show_default="ce (mse with --layers)",
                             help=f"Loss of the regularized model: {', '.join(LOSSES)}."),
    layers: int | None = typer.Option(
        None, "--layers", help="The deep UFM of L layers (squared error, no bias; docs/ufm.md).",
        **integer("--layers")),
    activation: str = typer.Option("relu", help="(--layers) Between layers: relu or linear."),
    anneal: int | None = typer.Option(
        None, "--anneal", show_default="4",
        help="(--layers, relu) Smoothing stages of widths 1e-1..1e-A before the true ReLU; "
             "0: plain descent at the ReLU.", **integer("--anneal", low=0, high=12)),
    normalized: bool = typer.Option(
        False, "--normalized", help="Unit-norm features and classifiers (docs/ufm.md)."),
    tau: float | None = typer.Option(None, show_default=f"{DEFAULT_TAU:g}",
                                     help="Inverse temperature (--normalized).",
                                     **real("--tau", low=0, low_open=True)),
    lambda_w: float | None = typer.Option(None, show_default=f"{DEFAULT_DECAY:g}",
                                          help="Weight decay on W.",
                                          **real("--lambda-w", low=0, low_open=True)),
    lambda_h: float | None = typer.Option(None, show_default=f"{DEFAULT_DECAY:g}",
                                          help="Weight decay on H.",
                                          **real("--lambda-h", low=0, low_open=True)),
    lambda_b: float | None = typer.Option(None, show_default=f"{DEFAULT_DECAY:g}",
                                          help="Weight decay on b.", **real("--lambda-b", low=0)),
    steps: int = typer.Option(5000, help="Maximum gradient steps.", **integer("--steps")),
    lr: float = typer.Option(1.0, help="Initial step size (adapted per run by backtracking).",
                             **real("--lr", low=0, low_open=True)),
    grad_tol: float = typer.Option(1e-10, help="Stop when every run's gradient norm is below.",
                                   **real("--grad-tol", low=0)),
    seeds: int = typer.Option(1, help="Number of random starts (seeds 0..S-1), run as a batch.",
                              **integer("--seeds")),
    tol: float = typer.Option(1e-6, help="A run reaches f* when f - f* <= tol.",
                              **real("--tol", low=0, low_open=True)),
    probe_hessian: bool = typer.Option(
        False, "--probe", help="(--normalized) Hessian spectrum at every solution."),
    out: Path = typer.Option(Path("runs/ufm"), "--out",
                             help="Folder for ufm.json and convergence.png."),
) -> None:
    """Solve a UFM from random starts: objective, gap to f*, collapse metrics, figure."""
    if layers is not None:
        given = [name for name, v in (("--model", model_name), ("--energy-w", energy_w),
                                      ("--energy-h", energy_h)) if v is not None]
        if given:
            raise NCInputError(f"{', '.join(given)}: --layers is the deep UFM of its own")
        _deep(runtime, classes, dim, per_class, layers, activation, loss=loss,
              normalized=normalized, imbalance=imbalance, tau=tau, lambda_w=lambda_w,
              lambda_h=lambda_h, lambda_b=lambda_b, seeds=seeds, steps=steps, lr=lr,
              grad_tol=grad_tol, out=out, anneal=anneal)
        return
    if anneal is not None:
        raise NCInputError("--anneal: only with --layers (the deep ReLU UFM)")
    loss = "ce" if loss is None else loss
    profile = None if imbalance is None else Imbalance.parse(imbalance, "--imbalance")
    model = build_ufm(classes, dim, per_class, loss, normalized, tau, lambda_w, lambda_h,
                      lambda_b, profile, model=model_name, energy_w=energy_w,
                      energy_h=energy_h)
    torch_device = resolve_device(runtime.device)
    runtime.apply_threads(console)
    console.print(f"{model}: {seeds} random starts on {torch_device}", highlight=False)
    with Progress(TextColumn("descent"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not runtime.progress) as bar:
        task = bar.add_task("descent", total=steps)
        result = solve_ufm(model, out, seeds=seeds, steps=steps, lr=lr, grad_tol=grad_tol,
                           tol=tol, device=torch_device, probe_hessian=probe_hessian,
                           imbalance=profile, callback=lambda i: bar.update(task, completed=i))
    for table in _tables(result["runs"]):
        console.print(table)
    for line in result["lines"]:
        console.print(line, highlight=False)
    if profile is not None:
        value = result["json"]["minority_collapse_weights"]
        console.print(f"{profile.text}: counts {result['json']['imbalance']['counts']}; "
                      f"minority_collapse_weights of the best start {fmt(value)} (simplex ETF: "
                      f"{-1 / (classes - 1):.4f}; 1: the minority rows merged)",
                      highlight=False)
    console.print(f"wrote {out / RESULT_JSON} and {result['figure']}")


def _deep(runtime: Runtime, classes: int, dim: int, per_class: int, layers: int,
          activation: str, *, seeds: int, steps: int, lr: float, grad_tol: float, out: Path,
          anneal: int | None, **options) -> None:
    """``--layers L``: the deep UFM, its starts and the metrics of every layer."""
    model = build_deep_ufm(classes, dim, per_class, layers, activation, **options)
    torch_device = resolve_device(runtime.device)
    runtime.apply_threads(console)
    console.print(f"{model}: {seeds} random starts on {torch_device}", highlight=False)
    document = solve_deep_ufm(model, out, seeds=seeds, steps=steps, lr=lr, grad_tol=grad_tol,
                              device=torch_device, anneal=anneal)
    runs = _new_table("final point of each run", ["seed", "objective", "grad", "kinks",
                                                   "kink slope", "certified"],
                      "kinks: pre-activations at 0; kink slope: the smallest slope of f off "
                      "them; certified: grad and -slope <= 1e-6")
    for run in document["runs"]:
        runs.add_row(str(run["seed"]), f"{run['objective']:.12f}", f"{run['grad_norm']:.1e}",
                     str(run["kinks"]), f"{run['kink_slope']:.1e}",
                     "yes" if run["certified"] else "no")
    console.print(runs)
    table = _new_table(f"collapse metrics of each layer (seed {document['best_seed']}, the "
                       "best start)", ["layer", "nc1", "etf_error_means", "equinorm_means"])
    for row in document["layers"]:
        table.add_row(str(row["layer"]), *(fmt(row.get(key)) for key in
                                           ("nc1", "etf_error_means", "equinorm_means")))
    console.print(table)
    if document["vanishing"]:
        console.print("the outputs of the best start vanish (W_L H_L = 0 to 1e-6): the weight "
                      "decay is too heavy for a nonzero minimizer; the metrics above describe "
                      "a vanishing point", highlight=False)
    console.print(f"wrote {out / RESULT_JSON}")


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
        row = [str(run["seed"]), f"{run['objective']:.12f}", fmt(run["gap"]),
               f"{run['grad_norm']:.1e}", fmt(run["iterations_to_tol"])]
        if "probe" in run:
            row += [f"{run['probe']['min_eigenvalue']:.2e}",
                    f"{run['probe']['zero_modes']}/{run['probe']['symmetry_modes']}"]
        tables[0].add_row(*row)
    if any(run["metrics"] is not None for run in runs):
        tables.append(_new_table("collapse metrics of each run", ["seed", *SHOWN_METRICS]))
        for run in runs:
            metrics = run["metrics"] or {}
            tables[1].add_row(str(run["seed"]), *(fmt(metrics.get(m)) for m in SHOWN_METRICS))
    return tables


def _new_table(title: str, columns: list[str], caption: str | None = None) -> Table:
    table = Table(title=title, caption=caption, caption_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for name in columns:
        table.add_column(name, justify="right")
    return table
