"""A run directory: the files the trainer writes and what reports read back.

Each file is written so that a crash never leaves half of one.

    config.json      the TrainConfig (compared on --resume)
    checkpoint.pt    model, optimizer, progress and every row logged so far; replaced
                     atomically (and flushed to disk) at each checkpoint
    metrics.jsonl    one JSON object per logged epoch
    metrics.csv      the same rows as a table
    summary.json     written when the run ends (complete, or diverged)
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.io import write_atomic, write_json

CONFIG, CHECKPOINT, METRICS_JSONL, METRICS_CSV, SUMMARY = (
    "config.json", "checkpoint.pt", "metrics.jsonl", "metrics.csv", "summary.json")


def _clean(value: Any) -> Any:
    """NaN and inf become None: the logs are strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _csv_row(row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    return {key: "" if row.get(key) is None else row[key] for key in columns}


class RunDir:
    """Reads and writes the files of one run directory.

    Parameters
    ----------
    path : path
        Created on the first write.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    # ------------------------------------------------------------------ config
    def read_config(self) -> dict[str, Any] | None:
        path = self.file(CONFIG)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise NCInputError(f"{path} is not valid JSON ({exc.msg})") from None

    def write_config(self, config: dict[str, Any]) -> None:
        write_json(self.file(CONFIG), config)

    # ------------------------------------------------------------------ checkpoint
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_atomic(self.file(CHECKPOINT), buffer.getvalue())

    def load_checkpoint(self, map_location: torch.device | str = "cpu") -> dict[str, Any] | None:
        path = self.file(CHECKPOINT)
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # a foreign or damaged file: say which, never unpickle
            raise NCInputError(f"{path} is not a readable nclab checkpoint "
                               f"({type(exc).__name__})") from None

    # ------------------------------------------------------------------ metrics
    def read_rows(self) -> list[dict[str, Any]]:
        """Every complete row of metrics.jsonl (a half-written last line is dropped)."""
        path = self.file(METRICS_JSONL)
        if not path.is_file():
            return []
        rows = []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return rows

    def append_row(self, row: dict[str, Any], previous: list[dict[str, Any]]) -> None:
        """Append ``row`` to metrics.jsonl and metrics.csv.

        No fsync: the checkpoint holds every row logged before it, and a resumed run
        rewrites both files from it, so these appends need not survive a crash.
        """
        row = {key: _clean(value) for key, value in row.items()}
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.file(METRICS_JSONL), "a") as handle:
            handle.write(json.dumps(row, allow_nan=False) + "\n")
        if previous and list(previous[0]) == list(row) and self.file(METRICS_CSV).is_file():
            with open(self.file(METRICS_CSV), "a") as handle:
                csv.DictWriter(handle, fieldnames=list(row), lineterminator="\n").writerow(
                    _csv_row(row, list(row)))
        else:  # first row, or new columns: write the whole table
            self._write_csv([*previous, row])

    def reset_rows(self, rows: list[dict[str, Any]]) -> None:
        """Replace both logs by ``rows`` (on resume: the rows the checkpoint holds)."""
        rows = [{key: _clean(value) for key, value in row.items()} for row in rows]
        lines = "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows)
        write_atomic(self.file(METRICS_JSONL), lines)
        self._write_csv(rows)

    def _write_csv(self, rows: list[dict[str, Any]]) -> None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(_csv_row(row, columns))
        write_atomic(self.file(METRICS_CSV), text.getvalue())

    # ------------------------------------------------------------------ summary
    def read_summary(self) -> dict[str, Any] | None:
        path = self.file(SUMMARY)
        return json.loads(path.read_text()) if path.is_file() else None

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.file(SUMMARY), {k: _clean(v) for k, v in summary.items()})

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
