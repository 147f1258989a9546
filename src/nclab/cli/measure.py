"""``nclab measure``: collapse metrics of a feature file."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from nclab.cli.app import app, show_result, value_table
from nclab.cli.options import array_keys, integer, read_arrays
from nclab.core.measure import measure
from nclab.core.metrics import MARGIN_NAMES, METRIC_NAMES, SPECTRAL_NAMES, CollapseMetrics


@app.command("measure")
@array_keys("features", "labels", "weight", "bias")
def measure_command(
    *,
    keys: dict[str, str],
    file: Path = typer.Argument(..., help="A .npz with 'features' (N x d), 'labels' (N,), "
                                          "and optionally 'weight' (C x d) and 'bias' (C,) "
                                          "(other names: --features-key, ...)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the metrics as JSON here."),
    weighted_mean: bool = typer.Option(
        False, "--weighted-mean", help="Use the sample-weighted global mean instead of the "
                                       "average of class means."),
    num_classes: int | None = typer.Option(
        None, "--num-classes", help="Number of classes C.",
        show_default="the rows of 'weight', else the largest label + 1",
        **integer("--num-classes")),
    ood: Path | None = typer.Option(
        None, "--ood", help="A .npz whose features (N_ood x d, --features-key) are "
                            "out-of-distribution samples, for nc5_ood_orthogonality."),
    spectral: bool = typer.Option(
        False, "--spectral", help="Also RankMe, alpha-ReQ, LiDAR and the explained-variance "
                                  "curve (definitions §8)."),
    margins: bool = typer.Option(
        False, "--margins", help="Also the one-vs-rest margins of the class means and of W "
                                 "and the best achievable one (definitions §10)."),
) -> None:
    """Print every Neural Collapse metric of a feature file."""
    arrays = read_arrays(file, keys, required=("features", "labels"))
    ood_features = None if ood is None else read_arrays(ood, keys, ("features",))["features"]
    result = measure(arrays["features"], arrays["labels"], arrays.get("weight"),
                     arrays.get("bias"), num_classes=num_classes, weighted_mean=weighted_mean,
                     ood_features=ood_features, spectral=spectral,
                     margins=margins)
    show_result(metrics_table(result, title=str(file)), result, file, json_out)


def metrics_table(result: CollapseMetrics, title: str = "") -> Table:
    """A two-column rich table of the metric values (n/a where not computed)."""
    return value_table(f"{title}  (N={result.num_samples}, C={result.num_classes}, "
                       f"d={result.dim})",
                       ((name, getattr(result, name)) for name in METRIC_NAMES
                        + (SPECTRAL_NAMES if result.rankme is not None else ())
                        + (MARGIN_NAMES if result.ovr_margin_means is not None else ())))
