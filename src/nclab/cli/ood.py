"""``nclab ood``: out-of-distribution detection scores of feature files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from nclab.cli.app import app, console, short, warn
from nclab.cli.options import array_keys, integer, list_parser, read_arrays, real
from nclab.core.errors import NCInputError
from nclab.core.io import write_json
from nclab.ood import METHODS, NCI_ALPHA, OODResult, evaluate


@app.command("ood")
@array_keys("features", "labels", "weight", "bias")
def ood_command(
    *,
    keys: dict[str, str],
    id_file: Path = typer.Argument(..., metavar="ID", help="The in-distribution .npz, as "
                                   "nclab measure reads it: 'features' (N x d), 'labels' (N,), "
                                   "'weight' (C x d) and 'bias' (C,) for the logit scores."),
    ood_files: list[Path] = typer.Argument(..., metavar="OOD...", help="One .npz per OOD set, "
                                           "each with 'features' (N_ood x d) only."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results as JSON here."),
    fit: Path | None = typer.Option(
        None, "--fit", help="A .npz of in-distribution training features and labels to fit "
                            "the scores on (default: the ID file itself)."),
    methods: str | None = typer.Option(
        None, "--methods", parser=list_parser(str, None, "--methods"), metavar="LIST",
        help=f"Comma-separated scores among {', '.join(METHODS)} (default: all that the "
             "files allow)."),
    neco_k: int | None = typer.Option(
        None, "--neco-k", **integer("--neco-k"), help="NECO's subspace dimension (default: "
                                                      "the fewest axes holding 90% of the "
                                                      "ID variance)."),
    nci_alpha: float = typer.Option(NCI_ALPHA, "--nci-alpha", **real("--nci-alpha", low=0),
                                    help="Weight of NCI's L1-norm filter term."),
    neco_plain: bool = typer.Option(
        False, "--neco-plain",
        help="NECO's PCA of the centred features without standardizing each coordinate "
             "(by default standardized, as the authors' code does)."),
    num_classes: int | None = typer.Option(
        None, "--num-classes", **integer("--num-classes"),
        help="Number of classes C (default: the rows of 'weight', else the largest label + 1)."),
) -> None:
    """Detect OOD samples with NECO, NCI, MSP, energy and Mahalanobis scores."""
    names = [str(path) for path in ood_files]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise NCInputError(f"OOD file {repeated[0]} is given twice")
    arrays = read_arrays(id_file, keys, required=("features", "labels"))
    fit_arrays = None if fit is None else read_arrays(fit, keys, ("features", "labels"))
    ood = {name: read_arrays(path, keys, ("features",))["features"]
           for name, path in zip(names, ood_files, strict=True)}
    result = evaluate(
        arrays["features"], arrays["labels"], arrays.get("weight"), arrays.get("bias"), ood=ood,
        fit_features=None if fit_arrays is None else fit_arrays["features"],
        fit_labels=None if fit_arrays is None else fit_arrays["labels"],
        num_classes=num_classes, methods=methods, neco_k=neco_k, nci_alpha=nci_alpha,
        neco_standardize=not neco_plain)
    console.print(result_table(result, str(id_file)))
    for note in result.warnings:
        warn(note)
    if json_out is not None:
        write_json(json_out, {"id_file": str(id_file),
                              "fit_file": None if fit is None else str(fit),
                              **result.to_dict()})
        console.print(f"wrote {json_out}")


def result_table(result: OODResult, title: str = "") -> Table:
    """One row per (OOD set, method): AUROC, AUPR, FPR95."""
    k = "" if result.k is None else f", NECO k={result.k}"
    table = Table(title=f"{title}  (N={result.num_id}, C={result.num_classes}, "
                        f"d={result.dim}{k})")
    for name, justify in (("OOD set", "left"), ("method", "left"), ("AUROC", "right"),
                          ("AUPR", "right"), ("FPR95", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name, by_method in result.metrics.items():
        for method, values in by_method.items():
            table.add_row(name, method, *(short(values[m], 4) for m in ("auroc", "aupr",
                                                                          "fpr95")))
    return table
