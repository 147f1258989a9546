"""``nclab regress``: neural regression collapse (definitions §5).

Sub-commands: ``ufm`` (closed form against the gradient solver, per regime), ``data``
(make a regression data set: MuJoCo imitation learning or a teacher network) and
``measure`` (NRC metrics of a feature file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich import box
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nclab.cli.app import console, err_console, regress_app, short, show_result, value_table
from nclab.cli.options import array_keys, integer, list_parser, read_arrays, real
from nclab.core.errors import NCInputError
from nclab.core.io import write_atomic, write_json
from nclab.core.measure import measure_regression
from nclab.core.regression_metrics import RegressionMetrics
from nclab.core.validation import check_memory
from nclab.train.config import Setting

SPECTRUM = {"parser": list_parser(float, Setting(help="", low=0, low_open=True), "--spectrum"),
            "metavar": "LIST"}


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
                    console=err_console, transient=True, disable=not err_console.is_terminal)


def _parse_gamma(gamma: str) -> float | str | None:
    if gamma in ("search", "none"):
        return None if gamma == "none" else "search"
    try:
        return float(gamma)
    except ValueError:
        raise NCInputError(f"--gamma must be a number, 'search' or 'none'; got '{gamma}'") from None


# ---------------------------------------------------------------------------- ufm
@regress_app.command("ufm")
def ufm_command(
    lambdas: list[str] = typer.Option(
        ["0.1,0.1", "0.5,0.5", "1,1.5", "3,3", "0,0"], "--lambdas",
        help="lambda_H,lambda_W pairs to solve (repeat the option)."),
    target_dim: int = typer.Option(3, "--target-dim", help="Target dimension n.",
                                   **integer("--target-dim")),
    dim: int = typer.Option(16, "--dim", help="Feature dimension d.", **integer("--dim")),
    samples: int = typer.Option(200, "--samples", help="Number of samples M.",
                                **integer("--samples", 2)),
    spectrum: str = typer.Option("2,1,0.5", help="Eigenvalues of the target covariance "
                                                  "(comma separated, n of them).", **SPECTRUM),
    seed: int = typer.Option(0, help="Seed of the targets and of the solver's start.",
                             **integer("--seed", 0)),
    steps: int = typer.Option(50_000, help="Most gradient steps per solve.",
                              **integer("--steps")),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results as JSON."),
    save: Path | None = typer.Option(
        None, help="Folder to write each solution to, as ufm_<lH>_<lW>.npz with features, "
                   "targets, weight, bias (readable by 'nclab regress measure')."),
) -> None:
    """Solve the regression UFM by gradient descent and compare with its closed form."""
    from nclab.ufm.regression import (
        gram_error,
        optimal_loss,
        solve,
        solve_bytes,
        targets_with_spectrum,
    )

    eigenvalues = np.array(spectrum, dtype=float)
    if len(eigenvalues) != target_dim:
        raise NCInputError(f"--spectrum needs --target-dim={target_dim} positive eigenvalues; "
                           f"got {len(eigenvalues)}")
    check_memory(solve_bytes(samples, target_dim, dim), "cpu",
                 f"--samples {samples} --target-dim {target_dim} --dim {dim}")
    targets = targets_with_spectrum(samples, eigenvalues, seed)
    table = Table(title=f"regression UFM  (M={samples}, n={target_dim}, d={dim}, Sigma "
                        f"eigenvalues {', '.join(f'{v:g}' for v in eigenvalues)})",
                  box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, pad_edge=False)
    for column in ("lH,lW", "c", "regime", "WW^T err", "L - L*", "nrc1", "nrc2", "nrc3",
                   "gamma"):
        table.add_column(column, justify="right", no_wrap=True)
    rows = []
    for pair in lambdas:
        lambda_h, lambda_w = _parse_pair(pair)
        with _progress() as bar:
            task = bar.add_task(f"solve {pair}", total=steps, note="")
            solution = solve(targets, lambda_h, lambda_w, dim, seed=seed, steps=steps,
                             progress=lambda s, loss, t=task: bar.update(
                                 t, completed=s, note=f"loss {loss:.6g}"))
        best = optimal_loss(targets, lambda_h, lambda_w, dim)
        gap = gram_error(solution, targets, lambda_h, lambda_w, dim)
        if save is not None:
            _save_solution(save / f"ufm_{lambda_h:g}_{lambda_w:g}.npz", solution, targets)
        gamma = solution.c if solution.regime == "collapse" else "search"
        metrics = solution.metrics(targets, gamma=gamma)
        rows.append({"lambda_H": lambda_h, "lambda_W": lambda_w, "c": solution.c,
                     "regime": solution.regime, "steps": solution.steps,
                     "converged": solution.converged, "gram_error": gap,
                     "loss": solution.loss, "optimal_loss": best, **metrics.to_dict()})
        table.add_row(f"{lambda_h:g},{lambda_w:g}", f"{solution.c:g}", solution.regime,
                      short(gap, 2), short(solution.loss - best, 2),
                      short(metrics.nrc1, 2), short(metrics.nrc2, 2), short(metrics.nrc3, 2),
                      short(metrics.gamma, 2))
    console.print(table)
    console.print("WW^T err: ||WW^T - closed form||_F / ||closed form||_F (absolute when "
                  "W* = 0). gamma = c in the collapse regime, else the best in (0, lambda_min).")
    if json_out is not None:
        write_json(json_out, {"eigenvalues": eigenvalues.tolist(), "dim": dim,
                              "samples": samples, "results": rows})
        console.print(f"wrote {json_out}")


def _save_solution(path: Path, solution, targets: np.ndarray) -> None:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, features=solution.features, targets=targets, weight=solution.weight,
             bias=solution.bias)
    write_atomic(path, buffer.getvalue())


def _parse_pair(pair: str) -> tuple[float, float]:
    try:
        lambda_h, lambda_w = (float(v) for v in pair.split(","))
    except ValueError:
        raise NCInputError(f"--lambdas takes 'lambda_H,lambda_W'; got '{pair}'") from None
    return lambda_h, lambda_w


# ---------------------------------------------------------------------------- data
@regress_app.command("data")
def data_command(
    task: str = typer.Argument(..., help="reacher, swimmer, hopper or teacher."),
    out: Path = typer.Option(None, "--out", "-o", show_default="data/TASK.npz",
                             help="Where to write the .npz (x, y, x_test, y_test)."),
    samples: int | None = typer.Option(None, "--samples", help="Train + test samples.",
                                       show_default="teacher 1000, Reacher/Swimmer 1k, "
                                                    "Hopper 10k", **integer("--samples", 2)),
    test_fraction: float = typer.Option(0.2, help="Fraction held out as the test set.",
                                        **real("--test-fraction", low=0, high=1,
                                                low_open=True, high_open=True)),
    noise: float = typer.Option(0.1, help="MuJoCo: exploration noise on executed actions; "
                                          "teacher: target noise.", **real("--noise", low=0)),
    episodes: int = typer.Option(5, help="MuJoCo: episodes scoring the expert and random.",
                                 **integer("--episodes")),
    policy: Path | None = typer.Option(None, help="Hopper: the expert's linear policy .npz, "
                                                  "read if it exists, else written there."),
    search_iterations: int = typer.Option(100, help="Hopper: most random-search iterations.",
                                          **integer("--search-iterations")),
    target_dim: int = typer.Option(3, "--target-dim", help="Teacher: target dimension n.",
                                   **integer("--target-dim")),
    input_dim: int = typer.Option(16, help="Teacher: input dimension.", **integer("--input-dim")),
    spectrum: str | None = typer.Option(None, help="Teacher: eigenvalues of the target "
                                                   "covariance, comma separated.", **SPECTRUM),
    seed: int = typer.Option(0, help="Seed.", **integer("--seed", 0)),
) -> None:
    """Make a regression data set offline and save it as .npz."""
    out = out or Path("data") / f"{task}.npz"
    if task == "teacher":
        from nclab.data.teacher import teacher

        cov = None if spectrum is None else list(spectrum)
        data = teacher(samples or 1000, input_dim, target_dim, cov, noise=noise,
                       test_fraction=test_fraction, seed=seed)
    else:
        data = _imitation(task, samples, test_fraction, noise, episodes, policy,
                          search_iterations, seed)
    data.save(out)
    write_json(out.with_suffix(".json"), {"file": str(out), **data.info})
    shapes = {"x": data.train.x, "y": data.train.y, "x_test": data.test.x, "y_test": data.test.y}
    console.print(f"wrote {out}: " + ", ".join(f"{key} {tuple(a.shape)}" for key, a in
                                               shapes.items())
                  + f" (and {out.with_suffix('.json')})")


def _imitation(task, samples, test_fraction, noise, episodes, policy, iterations, seed):
    from nclab.data.imitation import ENVIRONMENTS, imitation_data

    if task not in ENVIRONMENTS:
        raise NCInputError(f"unknown task '{task}'; choose from: {', '.join(ENVIRONMENTS)}, "
                           "teacher")
    total = samples or ENVIRONMENTS[task].num_samples
    with _progress() as bar:
        search = bar.add_task("expert: random search", total=iterations, note="", visible=False)
        gather = bar.add_task("collect (state, action)", total=total, note="")

        def searched(it: int, score: float) -> None:
            bar.update(search, completed=it, note=f"return {score:.0f}", visible=True)

        data = imitation_data(
            task, samples, test_fraction=test_fraction, noise=noise, eval_episodes=episodes,
            seed=seed, policy_file=policy, search_iterations=iterations,
            search_progress=searched, collect_progress=lambda n: bar.update(gather, completed=n))
    info = data.info
    table = Table(title=f"{task} ({info['env_id']}): return over {episodes} episodes")
    table.add_column("policy")
    table.add_column("mean return", justify="right")
    table.add_column("std", justify="right")
    table.add_row("expert", f"{info['expert_return']:.2f}", f"{info['expert_return_std']:.2f}")
    table.add_row("random", f"{info['random_return']:.2f}", f"{info['random_return_std']:.2f}")
    console.print(table)
    return data


# ---------------------------------------------------------------------------- measure
@regress_app.command("measure")
@array_keys("features", "targets", "weight", "bias")
def measure_command(
    *,
    keys: dict[str, str],
    file: Path = typer.Argument(..., help="A .npz with 'features' (M x d), 'targets' (M x n), "
                                          "and optionally 'weight' (n x d) and 'bias' (n,) "
                                          "(other names: --features-key, ...)."),
    gamma: str = typer.Option("search", help="NRC3's gamma: a number in (0, lambda_min), "
                                             "'search' or 'none'."),
    uncentred_pca: bool = typer.Option(False, "--uncentred-pca",
                                       help="PCA of the uncentred features."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the metrics as JSON here."),
) -> None:
    """Print the neural regression collapse metrics of a feature file."""
    arrays = read_arrays(file, keys, required=("features", "targets"))
    result = measure_regression(arrays["features"], arrays["targets"], arrays.get("weight"),
                                arrays.get("bias"), gamma=_parse_gamma(gamma),
                                centred_pca=not uncentred_pca)
    show_result(regression_table(result, title=str(file)), result, file, json_out)


def regression_table(result: RegressionMetrics, title: str = "") -> Table:
    """A two-column table of the NRC metrics, the fit and the explained variance."""
    names = ("nrc1", "nrc2", "nrc3", "gamma", "mse", "r2", "top_n_explained",
             "lambda_min", "lambda_max")
    table = value_table(f"{title}  (M={result.num_samples}, d={result.dim}, "
                        f"n={result.target_dim})",
                        ((name, getattr(result, name)) for name in names))
    ratios = ", ".join(f"{r:.3g}" for r in result.explained_variance_ratio[:6])
    table.add_row("explained variance (top)", ratios)
    return table
