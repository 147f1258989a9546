"""First and last NRC values of regression runs, as the markdown rows of docs/regression.md.

Each argument is a run directory (``nclab regress train``) or a sweep folder (``nclab
regress sweep``: every ``wd_*`` run in it). Prints one row per run: NRC1 and NRC2 of
h/||h|| (definitions) and of the centred features, NRC3 at the gamma searched on the final W,
each as first -> last (÷ first/last), then gamma and the train / test R^2. ``--json FILE``
also writes the numbers.

    python experiments/regression_outcomes.py RUN_OR_SWEEP [...] [--json FILE]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from nclab.core.io import write_json
from nclab.report.regression import regression_outcome
from nclab.runs import load_run

COLUMNS = (("nrc1", "train_nrc1"), ("nrc2", "train_nrc2"), ("nrc3", "nrc3"),
           ("nrc1_centred", "train_nrc1_centred"), ("nrc2_centred", "train_nrc2_centred"))


def run_dirs(paths: list[str]) -> list[Path]:
    """The run directories named, a sweep folder standing for its ``wd_*`` runs."""
    found: list[Path] = []
    for path in map(Path, paths):
        runs = sorted(path.glob("wd_*/config.json"), key=lambda p: float(p.parent.name[3:]))
        found += [p.parent for p in runs] if runs else [path]
    return found


def _g(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "∞" if value == float("inf") else f"{value:.2g}"


def row(run_dir: Path) -> tuple[str, dict[str, Any]]:
    run = load_run(run_dir)
    out = regression_outcome(run)
    cfg = run.config
    cells = [str(run_dir), f"{cfg['weight_decay']:g}"]
    for name, key in COLUMNS:
        first, last, drop = out["first"][key], out["last"][key], out["drop"][name]
        if drop is None and first and last == 0:
            drop = float("inf")  # fell to exactly 0 (features of rank <= n)
        cells.append(f"{_g(first)} → {_g(last)} (÷{_g(drop)})")
    cells += [_g(out["gamma"]),
              f"{out['last']['train_r2']:.2f} / {out['last']['test_r2']:.2f}"]
    record = {"run_dir": str(run_dir), "config": cfg, **out}
    return "| " + " | ".join(cells) + " |", record


def main(argv: list[str]) -> None:
    json_out = None
    if "--json" in argv:
        at = argv.index("--json")
        json_out, argv = argv[at + 1], argv[:at] + argv[at + 2:]
    print("| run | weight decay | NRC1 defined | NRC2 defined | NRC3 | NRC1 centred | NRC2 centred "
          "| γ | train / test R² |")
    print("|---" * 9 + "|")
    records = []
    for run_dir in run_dirs(argv):
        line, record = row(run_dir)
        print(line)
        records.append(record)
    if json_out:
        write_json(json_out, {"runs": records})


if __name__ == "__main__":
    main(sys.argv[1:])
