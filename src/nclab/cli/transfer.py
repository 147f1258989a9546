"""``nclab transfer``: few-shot nearest-class-centre episodes on novel-class features."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import typer
from rich.table import Table

from nclab.cli.app import app, console, short
from nclab.cli.options import array_keys, integer, list_parser, read_arrays
from nclab.core.io import write_json
from nclab.transfer import FewShotResult, few_shot


@app.command("transfer")
@array_keys("features", "labels")
def transfer_command(
    *,
    keys: dict[str, str],
    features_file: Path = typer.Argument(..., metavar="FEATURES", help="A .npz with "
                                         "'features' (N x d) and 'labels' (N,) of classes "
                                         "the model never trained on."),
    ways: int = typer.Option(5, "--ways", **integer("--ways", low=2),
                             help="Classes per episode (n)."),
    shots: str = typer.Option("1,5", "--shots", parser=list_parser(int, None, "--shots"),
                              metavar="LIST", help="Support samples per class (k), "
                                                   "comma-separated: one result each."),
    queries: int = typer.Option(15, "--queries", **integer("--queries"),
                                help="Query samples per class (q)."),
    episodes: int = typer.Option(1000, "--episodes", **integer("--episodes"),
                                 help="Episodes per value of --shots."),
    seed: int = typer.Option(0, "--seed", **integer("--seed", low=0),
                             help="Seed of the episodes."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results as JSON here."),
) -> None:
    """Few-shot NCC error on novel classes beside their CDNV and its bound."""
    arrays = read_arrays(features_file, keys, required=("features", "labels"))
    # typer reads the annotation as text; the list parser gives a tuple of integers
    results = few_shot(arrays["features"], arrays["labels"], ways=ways,
                       shots=cast(tuple[int, ...], shots),
                       queries=queries, episodes=episodes, seed=seed)
    console.print(result_table(results, str(features_file)))
    if json_out is not None:
        write_json(json_out, {"features_file": str(features_file),
                              "results": [result.to_dict() for result in results]})
        console.print(f"wrote {json_out}")


def result_table(results: list[FewShotResult], title: str = "") -> Table:
    """One row per number of shots: error, its 95% interval, CDNV and the bound."""
    first = results[0]
    table = Table(title=f"{title}  ({first.ways}-way, {first.queries} queries, "
                        f"{first.episodes} episodes, {first.num_classes} classes, "
                        f"d={first.dim}, seed {first.seed})")
    for name in ("shots", "NCC error", "95% interval", "CDNV", "bound"):
        table.add_column(name, justify="right")
    for result in results:
        low, high = result.interval
        table.add_row(str(result.shots), short(result.error, 4),
                      f"[{short(low, 4)}, {short(high, 4)}]", short(result.cdnv, 4),
                      short(result.bound, 4))
    return table
