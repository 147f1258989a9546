"""A run directory: the files the trainer writes and what reports read back.

Each file is written so that a crash never leaves half of one.

    config.json      the TrainConfig (compared on --resume)
    checkpoint.pt    model, optimizer, progress and every row logged so far; replaced
                     atomically (and flushed to disk) at each checkpoint
    metrics.jsonl    one JSON object per logged epoch
    metrics.csv      the same rows as a table
    summary.json     written when the run ends (complete, or diverged)
    .lock            present while a process writes the run (see :meth:`RunDir.lock`)

A metrics log written by other code can be reported too: ``metrics.jsonl`` (one JSON
object per line) or, without it, ``metrics.csv`` (a header line, then one row per
line), where each row has an ``epoch`` (a number) and any metric columns, named as
nclab names them (``train_nc1``, ``test_error``, ...; docs/training.md lists them).
config.json and summary.json are optional; the report says what it lacks.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.io import (
    file_error,
    finite_or_none,
    make_dirs,
    remove_dirs,
    shown,
    write_atomic,
    write_json,
)

try:  # POSIX; elsewhere a run directory is not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

CONFIG, CHECKPOINT, METRICS_JSONL, METRICS_CSV, SUMMARY = (
    "config.json", "checkpoint.pt", "metrics.jsonl", "metrics.csv", "summary.json")
LOCK = ".lock"
#: Files of a run besides its config (a start over them without config.json is refused).
RUN_FILES = (CHECKPOINT, METRICS_JSONL, METRICS_CSV, SUMMARY)


class RunLogWarning(UserWarning):
    """A line of a metrics log that could not be read and was skipped."""


def _csv_row(row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """Cells of one row: null is empty, lists and dicts are JSON text."""
    return {key: _csv_cell(row.get(key)) for key in columns}


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    return json.dumps(value, allow_nan=False) if isinstance(value, (list, dict)) else value


class RunDir:
    """Reads and writes the files of one run directory.

    Parameters
    ----------
    path : path
        Created on the first write (or by :meth:`lock`).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        #: True once this object has written (or removed) a file of the run.
        self.touched = False
        #: True once a row, a checkpoint or a summary was written: the run has begun.
        self.progressed = False
        #: Files of the run that this object created while setting it up (config and
        #: empty logs): removed again if the start fails before the run has begun.
        self.created: set[str] = set()

    def file(self, name: str) -> Path:
        return self.path / name

    def existing_files(self) -> list[str]:
        """The names of RUN_FILES present."""
        return [name for name in RUN_FILES if self.file(name).exists()]

    # ------------------------------------------------------------------ lock
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the run directory (``fcntl.flock`` of ``.lock``).

        The operating system releases the lock when the process ends, however it ends,
        so a ``kill -9`` never leaves a stale lock. A second process that asks for it
        while it is held gets one NCInputError line, and so does a file system that
        cannot hold the lock (full, read-only). On leaving, ``.lock`` is removed; if the
        run has not begun (a start that failed its checks, or could not write its
        config), the files and folders this start created are removed too: the
        directory is left as it was found.
        """
        made = make_dirs(self.path)
        try:
            fd, created = self._acquire()
        except BaseException:
            remove_dirs(made)
            raise
        try:
            yield
        except BaseException:
            if not self.progressed:
                self._remove_created()
            raise
        finally:
            if created or (self.touched and self.progressed):  # else: as it was found
                # a process that opened the file before this unlink finds, once it gets
                # the lock, that the path no longer names it, and tries again
                self.file(LOCK).unlink(missing_ok=True)
            os.close(fd)  # releases the lock
            remove_dirs(made)  # only while empty: a run that wrote files keeps them

    def _remove_created(self) -> None:
        """Delete the files this object created while setting up the run."""
        for name in self.created:
            self.file(name).unlink(missing_ok=True)
        self.created.clear()

    def _acquire(self) -> tuple[int, bool]:
        """Open and lock ``.lock``; return (descriptor, whether this call created it)."""
        path = self.file(LOCK)
        while True:
            fd, created = self._open_lock(path)
            try:
                if self._hold(fd, path):
                    return fd, created
            except BaseException:
                os.close(fd)
                if created:
                    path.unlink(missing_ok=True)
                raise
            os.close(fd)  # removed by the previous holder after we opened it

    def _hold(self, fd: int, path: Path) -> bool:
        """Lock ``fd`` and write this process's id into it; False when ``path`` no
        longer names the file ``fd`` (removed by the previous holder meanwhile)."""
        if fcntl is None:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NCInputError(
                f"{shown(self.path)} is in use by another nclab process{_read_pid(fd)}: wait "
                "for it to end (or stop it), or choose another --out") from None
        except OSError as exc:  # no locks on this file system
            raise file_error(path, exc, "cannot lock the run directory") from None
        try:
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                return False
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except FileNotFoundError:
            return False
        except OSError as exc:  # a full disk cannot hold even the process id
            raise file_error(path, exc, "cannot lock the run directory") from None
        return True

    def _open_lock(self, path: Path) -> tuple[int, bool]:
        try:
            while True:
                try:
                    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666), True
                except FileExistsError:
                    pass
                try:
                    return os.open(path, os.O_RDWR), False
                except FileNotFoundError:  # removed between the two opens: create it
                    continue
        except OSError as exc:
            raise file_error(path, exc, "cannot lock the run directory") from None

    def remove_stale_temporaries(self) -> list[str]:
        """Delete the ``.<file>.*.tmp`` left by writes that were killed mid-way.

        Call it only while holding :meth:`lock`: then no write of this run is under way.
        """
        removed = []
        for name in (CONFIG, CHECKPOINT, METRICS_JSONL, METRICS_CSV, SUMMARY):
            for tmp in self.path.glob(f".{name}.*.tmp"):
                tmp.unlink(missing_ok=True)
                removed.append(tmp.name)
        self.touched = self.touched or bool(removed)
        return removed

    # ------------------------------------------------------------------ config
    def read_config(self) -> dict[str, Any] | None:
        """The stored config (a JSON object), None when config.json is absent."""
        return self._read_object(CONFIG, "a JSON object of settings")

    def write_config(self, config: dict[str, Any]) -> None:
        self._touch(CONFIG)
        write_json(self.file(CONFIG), config)

    def _read_object(self, name: str, expected: str) -> dict[str, Any] | None:
        """The JSON object in file ``name`` (None when absent); any other JSON value is
        refused in one line that says what was ``expected``."""
        value = self._read_json(name)
        if value is not None and not isinstance(value, dict):
            raise NCInputError(f"{self.file(name)}: expected {expected}, found "
                               f"{_json_kind(value)}")
        return value

    def _read_json(self, name: str) -> Any:
        path = self.file(name)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
            raise NCInputError(f"{path} is not valid JSON ({reason})") from None
        except OSError as exc:
            raise file_error(path, exc, "cannot read") from None

    # ------------------------------------------------------------------ checkpoint
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self._touch()
        write_atomic(self.file(CHECKPOINT), buffer.getvalue())
        self.progressed = True

    def load_checkpoint(self, map_location: torch.device | str = "cpu") -> Any:
        """What checkpoint.pt holds (None when absent), read with ``weights_only=True``:
        the caller checks that it is what it should be."""
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
        """Every readable row of metrics.jsonl (or, without it, of metrics.csv).

        A half-written last line (a crash mid-write) is dropped silently; any other line
        that is not a JSON object with a numeric ``epoch`` larger than the one before is
        skipped with a RunLogWarning naming its line number.
        """
        if self.file(METRICS_JSONL).is_file():
            return self._read_jsonl(self.file(METRICS_JSONL))
        if self.file(METRICS_CSV).is_file():
            return self._read_csv(self.file(METRICS_CSV))
        return []

    def _read_jsonl(self, path: Path) -> list[dict[str, Any]]:
        data = self._read_bytes(path)
        lines = data.split(b"\n")
        half_written = lines[-1] != b""  # the last line has no newline: cut by a crash
        rows: list[dict[str, Any]] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):  # not JSON, or not UTF-8
                if not (half_written and number == len(lines)):
                    _skip(path, number, "is not valid JSON")
                continue
            _keep_row(rows, row, path, number)
        return rows

    def _read_csv(self, path: Path) -> list[dict[str, Any]]:
        try:
            text = self._read_bytes(path).decode()
        except UnicodeDecodeError:
            raise NCInputError(f"{path} is not UTF-8 text") from None
        rows: list[dict[str, Any]] = []
        reader = csv.DictReader(io.StringIO(text))
        for record in reader:
            if None in record:  # more cells than header columns
                _skip(path, reader.line_num, "has more cells than the header")
                continue
            _keep_row(rows, {k: _csv_value(v) for k, v in record.items()}, path,
                      reader.line_num)
        return rows

    def _read_bytes(self, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise file_error(path, exc, "cannot read") from None

    def append_row(self, row: dict[str, Any], previous: list[dict[str, Any]]) -> None:
        """Append ``row`` to metrics.jsonl and metrics.csv.

        No fsync: the checkpoint holds every row logged before it, and a resumed run
        rewrites both files from it, so these appends need not survive a crash.
        """
        row = finite_or_none(row)
        self._touch(METRICS_JSONL, METRICS_CSV)
        make_dirs(self.path)
        self._append(row, previous)
        self.progressed = True

    def _append(self, row: dict[str, Any], previous: list[dict[str, Any]]) -> None:
        path = self.file(METRICS_JSONL)
        try:
            with open(path, "a") as handle:
                handle.write(json.dumps(row, allow_nan=False) + "\n")
            if previous and list(previous[0]) == list(row) and self.file(METRICS_CSV).is_file():
                path = self.file(METRICS_CSV)
                with open(path, "a") as handle:
                    csv.DictWriter(handle, fieldnames=list(row), lineterminator="\n").writerow(
                        _csv_row(row, list(row)))
                return
        except OSError as exc:
            raise file_error(path, exc) from None
        self._write_csv([*previous, row])  # first row, or new columns: the whole table

    def reset_rows(self, rows: list[dict[str, Any]]) -> None:
        """Replace both logs by ``rows`` (on resume: the rows the checkpoint holds)."""
        rows = finite_or_none(rows)
        lines = "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows)
        self._touch(METRICS_JSONL, METRICS_CSV)
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
        return self._read_object(SUMMARY, "a JSON object")

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write summary.json; NaN and infinities, at any depth, become null."""
        self._touch()
        write_json(self.file(SUMMARY), summary)
        self.progressed = True

    def _touch(self, *names: str) -> None:
        """Note a write (of the files ``names``: those absent until now are created by
        the set-up of the run, see :attr:`created`)."""
        self.touched = True
        if not self.progressed:
            self.created.update(name for name in names if not self.file(name).exists())


def _read_pid(fd: int) -> str:
    """`` (pid N)`` from the lock file's content, or nothing when it holds none."""
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {text})" if text.isdigit() else ""


def _json_kind(value: Any) -> str:
    kinds = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


def _skip(path: Path, line: int, why: str) -> None:
    warnings.warn(f"{path} line {line} {why}: skipped", RunLogWarning, stacklevel=4)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _keep_row(rows: list[dict[str, Any]], row: Any, path: Path, line: int) -> None:
    """Append ``row`` to ``rows`` if it is a row of a later epoch, else warn."""
    if not isinstance(row, dict):
        _skip(path, line, f"is {_json_kind(row)}, not an object")
    elif not _is_number(row.get("epoch")) or not math.isfinite(row["epoch"]):
        _skip(path, line, "has no numeric 'epoch'")
    elif rows and row["epoch"] <= rows[-1]["epoch"]:
        _skip(path, line, f"repeats or goes back to epoch {row['epoch']} after epoch "
                          f"{rows[-1]['epoch']}")
    else:
        rows.append(row)


def _csv_value(text: str | None) -> Any:
    """A CSV cell as a number when it reads as one; empty cells are None."""
    if text is None or text == "":
        return None
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        return finite_or_none(value)
    return text


@dataclass
class RunRecord:
    """The logged history of one run.

    Attributes
    ----------
    path : Path
    label : str
        Name shown in legends (the folder name by default).
    config : dict
        Empty when the run has no (readable) config.json.
    rows : list of dict
        One per logged epoch, in order.
    summary : dict, optional
        Present once the run has ended.
    notes : list of str
        What could not be read (also issued as RunLogWarning).
    """

    path: Path
    label: str
    config: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """Every column of the rows, in order of appearance."""
        return list(dict.fromkeys(key for row in self.rows for key in row))

    @property
    def tpt_onset(self) -> int | None:
        """First epoch with zero training error, if reached (and logged)."""
        onset = self.rows[-1].get("tpt_onset") if self.rows else None
        return onset if _is_number(onset) else None

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(epochs, values) of one column; missing, null and non-numeric values are left out."""
        pairs = [(row["epoch"], row[key]) for row in self.rows if _is_number(row.get(key))]
        if not pairs:
            return np.empty(0), np.empty(0)
        epochs, values = zip(*pairs, strict=True)
        return np.asarray(epochs, dtype=float), np.asarray(values, dtype=float)

    def value_at(self, key: str, epoch: int | None) -> float | None:
        """The number in column ``key`` at ``epoch``; None if not logged or not a number."""
        for row in self.rows:
            if row["epoch"] == epoch:
                value = row.get(key)
                return value if _is_number(value) else None
        return None


def load_run(path: str | os.PathLike, label: str | None = None) -> RunRecord:
    """Read a run directory written by the trainer (complete or not), or any folder with
    a metrics log in the format of the module docstring.

    Unreadable lines of the log, and a config.json or summary.json that is not a JSON
    object, are skipped with a RunLogWarning (and listed in ``notes``).
    """
    run = RunDir(path)
    if not run.path.is_dir():
        raise NCInputError(f"{run.path}: no such run directory")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunLogWarning)
        rows = run.read_rows()
        config = _optional(run.read_config)
        summary = _optional(run.read_summary)
    notes = [str(w.message) for w in caught if issubclass(w.category, RunLogWarning)]
    for caught_warning in caught:  # pass every warning on, now that the notes are kept
        warnings.warn(caught_warning.message, stacklevel=2)
    if not rows:
        raise NCInputError(f"{run.path} has no logged epochs yet ({METRICS_JSONL} is missing "
                           "or empty, or none of its rows has an epoch): is it an nclab run "
                           "directory?")
    return RunRecord(run.path, label or run.path.resolve().name, config or {}, rows, summary,
                     notes)


def _optional(read: Any) -> dict[str, Any] | None:
    """``read()``, or None with a RunLogWarning when the file is unreadable."""
    try:
        return read()
    except NCInputError as exc:
        warnings.warn(f"{exc}: ignored", RunLogWarning, stacklevel=3)
        return None
