"""Reading a run directory back: its config, metric rows and summary."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nclab.errors import NCInputError
from nclab.train.rundir import METRICS_JSONL, RunDir


@dataclass
class RunRecord:
    """The logged history of one run.

    Attributes
    ----------
    path : Path
    label : str
        Name shown in legends (the folder name by default).
    config : dict
    rows : list of dict
        One per logged epoch, in order.
    summary : dict, optional
        Present once the run has ended.
    """

    path: Path
    label: str
    config: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None

    @property
    def tpt_onset(self) -> int | None:
        """First epoch with zero training error, if reached."""
        return self.rows[-1].get("tpt_onset") if self.rows else None

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(epochs, values) of one column; missing and null values are left out."""
        pairs = [(row["epoch"], row[key]) for row in self.rows if row.get(key) is not None]
        if not pairs:
            return np.empty(0), np.empty(0)
        epochs, values = zip(*pairs, strict=True)
        return np.asarray(epochs, dtype=float), np.asarray(values, dtype=float)

    def value_at(self, key: str, epoch: int | None) -> float | None:
        for row in self.rows:
            if row["epoch"] == epoch:
                return row.get(key)
        return None


def load_run(path: str | os.PathLike, label: str | None = None) -> RunRecord:
    """Read a run directory written by the trainer (complete or not)."""
    run = RunDir(path)
    if not run.path.is_dir():
        raise NCInputError(f"{run.path}: no such run directory")
    rows = run.read_rows()
    if not rows:
        raise NCInputError(f"{run.path} has no logged epochs yet ({METRICS_JSONL} is missing "
                           "or empty): is it an nclab run directory?")
    return RunRecord(run.path, label or run.path.resolve().name, run.read_config() or {},
                     rows, run.read_summary())
