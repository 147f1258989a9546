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

import codecs
import csv
import io
import json
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
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
from nclab.core.metric_info import METRICS
from nclab.core.tables import data_frame, metrics_html

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
    def read_config(self, strict: bool = True) -> dict[str, Any] | None:
        """The stored config (a JSON object), None when config.json is absent.

        ``strict``: a NaN, an Infinity or a number beyond the float range is refused in one
        line (the trainer never writes one); otherwise each becomes None, with a
        RunLogWarning (what a report does: it shows the rest).
        """
        return self._read_object(CONFIG, "a JSON object of settings", strict)

    def write_config(self, config: dict[str, Any]) -> None:
        self._touch(CONFIG)
        write_json(self.file(CONFIG), config)

    def _read_object(self, name: str, expected: str, strict: bool) -> dict[str, Any] | None:
        """The JSON object in file ``name`` (None when absent); any other JSON value is
        refused in one line that says what was ``expected``."""
        value = self._read_json(name, strict)
        if value is not None and not isinstance(value, dict):
            raise NCInputError(f"{shown_path(self.file(name))}: expected {expected}, found "
                               f"{_json_kind(value)}")
        return value

    def _read_json(self, name: str, strict: bool) -> Any:
        path = self.file(name)
        if not path.is_file():
            return None
        try:
            value, dropped = parse_json(self._read_bytes(path))
        except JsonError as exc:
            raise NCInputError(f"{shown_path(path)} is {exc}") from None
        if dropped and strict:
            raise NCInputError(f"{shown_path(path)} holds {_numbers(dropped)}: not strict JSON")
        if dropped:
            warnings.warn(f"{shown_path(path)}: {_numbers(dropped)} read as missing",
                          RunLogWarning, stacklevel=4)
        return value

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
        lines = _text_lines(self._read_bytes(path))
        half_written = lines[-1] != b""  # the last line has no newline: cut by a crash
        rows: list[dict[str, Any]] = []
        dropped = 0
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row, count = parse_json(line)
            except JsonError as exc:  # not JSON, not UTF-8, nested too deep
                if not (half_written and number == len(lines)):
                    _skip(path, number, f"is {exc.kind}")
                continue
            dropped += count if _keep_row(rows, row, path, number) else 0
        _warn_dropped(path, dropped)
        return rows

    def _read_csv(self, path: Path) -> list[dict[str, Any]]:
        try:
            text = _decode(self._read_bytes(path))
        except UnicodeDecodeError:
            raise NCInputError(f"{shown_path(path)} is not UTF-8 text") from None
        records = [record for record in _csv_records(text, path) if record[1]]
        if not records:
            return []
        (_, header), *records = records
        cut = not text.endswith(("\n", "\r"))  # the last line has no line end: a crash?
        rows: list[dict[str, Any]] = []
        dropped = 0
        for number, (line, cells) in enumerate(records, start=1):
            if len(cells) > len(header):
                _skip(path, line, "has more cells than the header")
            elif cut and number == len(records) and len(cells) < len(header):
                _skip(path, line, "is cut short (fewer cells than the header, no line end)")
            else:
                counter = _Numbers()
                row = {key: counter.cell(value) for key, value in zip(header, cells, strict=False)}
                row |= dict.fromkeys(header[len(cells):])
                if _keep_row(rows, row, path, line):
                    dropped += counter.dropped
        _warn_dropped(path, dropped)
        return rows

    def _read_bytes(self, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise file_error(shown_path(path), exc, "cannot read") from None

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
    def read_summary(self, strict: bool = True) -> dict[str, Any] | None:
        """summary.json (None when absent); ``strict`` as for :meth:`read_config`."""
        return self._read_object(SUMMARY, "a JSON object", strict)

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
    warnings.warn(f"{shown_path(path)} line {line} {why}: skipped", RunLogWarning, stacklevel=4)


def _warn_dropped(path: Path, dropped: int) -> None:
    if dropped:
        warnings.warn(f"{shown_path(path)}: {_numbers(dropped)} read as missing", RunLogWarning,
                      stacklevel=4)


def _numbers(count: int) -> str:
    return (f"{count} value{'s' if count > 1 else ''} that {'are' if count > 1 else 'is'} "
            "NaN, Infinity or beyond the float range")


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool): a value that can be drawn and computed with."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the float range
        return False


def _keep_row(rows: list[dict[str, Any]], row: Any, path: Path, line: int) -> bool:
    """Append ``row`` to ``rows`` if it is a row of a later epoch (True), else warn."""
    if not isinstance(row, dict):
        _skip(path, line, f"is {_json_kind(row)}, not an object")
    elif not is_number(row.get("epoch")):
        _skip(path, line, "has no numeric 'epoch'")
    elif rows and row["epoch"] <= rows[-1]["epoch"]:
        _skip(path, line, f"repeats or goes back to epoch {row['epoch']} after epoch "
                          f"{rows[-1]['epoch']}")
    else:
        rows.append(row)
        return True
    return False


# ---------------------------------------------------------------------- reading helpers

#: Lists and objects nested deeper than this are refused (the trainer writes 3 levels):
#: deeper data would exhaust the recursion of the code that prints or compares it.
MAX_DEPTH = 32
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
         (codecs.BOM_UTF8, "utf-8-sig"))


class JsonError(ValueError):
    """Why a JSON text could not be read: ``kind`` (not valid JSON, not UTF-8 text, nested
    too deep) and the parser's ``detail``."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind} ({detail})" if detail else kind)
        self.kind = kind


class _Numbers:
    """Number readers of JSON and CSV text: every number becomes a finite int or float;
    NaN, Infinity and numbers beyond the float range (``1e999``, ``10**400``) become None,
    counted in ``dropped`` (no later computation can then overflow)."""

    def __init__(self) -> None:
        self.dropped = 0

    def number(self, text: str) -> int | float | None:
        value = float(text)  # never raises on digits: too large reads as inf
        if not math.isfinite(value):
            self.constant(text)
            return None
        try:
            return int(text)
        except ValueError:  # 1.5, 1e3
            return value

    def constant(self, text: str) -> None:
        self.dropped += 1
        return None

    def cell(self, text: str) -> Any:
        """A CSV cell: a number when it reads as one, None when empty, else the text."""
        if text == "":
            return None
        try:
            return self.number(text)
        except ValueError:
            return text


def parse_json(data: bytes | str) -> tuple[Any, int]:
    """One JSON text as nclab reads it: (value, count of the numbers read as None).

    Every number is a finite int or float; NaN, Infinity and numbers beyond the float
    range become None (and are counted). Bytes may be UTF-8 (with or without a BOM),
    UTF-16 or UTF-32. Raises :class:`JsonError` when the text is not JSON, not text, or
    nested deeper than ``MAX_DEPTH``.
    """
    numbers = _Numbers()
    try:
        value = json.loads(data, parse_int=numbers.number, parse_float=numbers.number,
                           parse_constant=numbers.constant)
    except json.JSONDecodeError as exc:
        raise JsonError("not valid JSON", exc.msg) from None
    except UnicodeDecodeError:
        raise JsonError("not UTF-8 text") from None
    except RecursionError:
        raise JsonError(f"nested deeper than {MAX_DEPTH} levels") from None
    if not _within_depth(value, MAX_DEPTH):
        raise JsonError(f"nested deeper than {MAX_DEPTH} levels")
    return value, numbers.dropped


def _within_depth(value: Any, depth: int) -> bool:
    """Whether ``value`` nests lists and objects at most ``depth`` levels deep (the
    recursion stops there, so it is bounded too)."""
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, list):
        return True
    return depth > 0 and all(_within_depth(item, depth - 1) for item in value)


def _csv_records(text: str, path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each record of a CSV text; a record the csv module refuses
    (a field over ``csv.field_size_limit()``, ...) is skipped with a RunLogWarning."""
    # newline="": the csv module reads quoted line breaks and \r line ends itself
    reader = csv.reader(io.StringIO(text, newline=""))
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            warnings.warn(f"{shown_path(path)} line {reader.line_num} is not a CSV row ({exc}): "
                          "skipped", RunLogWarning, stacklevel=4)
            continue
        yield reader.line_num, cells


def _decode(data: bytes, errors: str = "strict") -> str:
    """The text of a file: UTF-8, or UTF-16 or UTF-32 starting with a BOM."""
    codec = next((codec for bom, codec in _BOMS if data.startswith(bom)), "utf-8")
    return data.decode(codec, errors)


def _text_lines(data: bytes) -> list[bytes]:
    """The lines of a log as UTF-8 bytes, so that a bad byte costs one line only (a UTF-16
    or UTF-32 file is re-encoded first; a UTF-8 BOM is dropped)."""
    if any(data.startswith(bom) for bom, _ in _BOMS[:4]):
        data = _decode(data, "replace").encode()
    return data.removeprefix(codecs.BOM_UTF8).split(b"\n")


def shown_text(text: str) -> str:
    """``text`` as one printable line: the bytes of a file name that are not UTF-8 (which
    Python holds as lone surrogates) as ``\\xff``; other lone surrogates, line breaks and
    control characters as backslash escapes."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable()
                   else f"\\x{ord(char) - 0xDC00:02x}" if "\udc80" <= char <= "\udcff"
                   else char.encode("unicode_escape").decode("ascii") for char in text)


def shown_path(path: str | os.PathLike) -> str:
    """A path as one printable line (:func:`shown_text`)."""
    return shown_text(os.fspath(path))


def skipped_line(notes: Sequence[str], shown: int = 3) -> str:
    """Notes of what was skipped as one line: the first ``shown`` and how many more."""
    more = len(notes) - shown
    return "; ".join(notes[:shown]) + (f"; and {more} more" if more > 0 else "")


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
        return onset if is_number(onset) else None

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(epochs, values) of one column; missing, null, non-numeric and non-finite values
        are left out."""
        pairs = [(row["epoch"], row[key]) for row in self.rows if is_number(row.get(key))]
        if not pairs:
            return np.empty(0), np.empty(0)
        epochs, values = zip(*pairs, strict=True)
        return np.asarray(epochs, dtype=float), np.asarray(values, dtype=float)

    def value_at(self, key: str, epoch: float | None) -> float | None:
        """The number in column ``key`` at ``epoch``; None if not logged or not a number."""
        for row in self.rows:
            if row["epoch"] == epoch:
                value = row.get(key)
                return value if is_number(value) else None
        return None

    @property
    def status(self) -> str:
        """How the run stands, from its summary (or its absence) and its last logged epoch."""
        done = self.rows[-1]["epoch"]
        epochs = self.config.get("epochs")
        if self.summary is None:
            if not self.config:
                return (f"last logged epoch {done} (no config.json or summary.json: the "
                        "planned epochs and the outcome are unknown)")
            planned = f" of {epochs}" if epochs is not None else ""
            return f"in progress or interrupted: last logged epoch {done}{planned}"
        status = self.summary.get("status")
        if status == "diverged":
            epoch = self.summary.get("diverged_epoch")
            return f"diverged in epoch {epoch}" if epoch is not None else "diverged"
        if status == "complete":
            ran = self.summary.get("epochs_done")
            ran = done if ran is None else ran  # absent, or unreadable (load_run said so)
            if self.summary.get("stopped_early"):
                planned = f" of {epochs}" if epochs is not None else ""
                return (f"complete: stopped at epoch {ran}{planned}, where its stop condition "
                        "held")
            return f"complete: {ran} epochs"
        return f"last logged epoch {done} (summary.json gives no status)"

    def to_pandas(self) -> Any:
        """The logged rows as a ``pandas.DataFrame``, one row per logged epoch and one
        column per key of the rows (in order of appearance; a value a row lacks is
        missing). Needs the ``pandas`` extra."""
        return data_frame(self.rows, self.columns)

    def plot(self, ax: Any = None, **options: Any) -> tuple[Any, Any]:
        """The papers' panels of collapse against the epoch (Papyan et al.'s figure).

        Parameters
        ----------
        ax : matplotlib Axes or sequence of Axes, optional
            One per panel; default: a new figure (pyplot, so a notebook shows it).
        **options
            ``panels=("nc1", "self_duality", ...)`` chooses panels (default: all of
            :data:`nclab.report.figures.PANELS`); see
            :meth:`nclab.report.displays.HistoryDisplay.from_runs`.

        Returns
        -------
        (Figure, Axes or ndarray of Axes)
        """
        from nclab.report.displays import HistoryDisplay  # layer 2, drawn on demand

        return HistoryDisplay.from_runs([self], **options).plot(ax=ax)

    def _repr_html_(self) -> str:
        last = self.rows[-1]
        columns = {split: {name: last.get(f"{split}_{name}") for name in METRICS}
                   for split in ("train", "test")}
        onset = self.tpt_onset
        notes = [f"TPT onset (first epoch with zero training error): epoch {onset}"
                 if onset is not None else "", *self.notes]
        return metrics_html(f"run {self.label}: {self.status}; metrics at epoch "
                            f"{last['epoch']} ({len(self.rows)} logged epochs)", columns,
                            [note for note in notes if note])


def _is_count(value: Any) -> bool:
    return is_number(value) and value == int(value) and value >= 0


def _is_positive(value: Any) -> bool:
    return is_number(value) and value > 0


def _are_fractions(value: Any) -> bool:
    return isinstance(value, list) and all(is_number(f) and 0 < f < 1 for f in value)


def _is_name(value: Any) -> bool:
    return isinstance(value, str)


def _is_flag(value: Any) -> bool:
    return isinstance(value, bool)


#: The settings of config.json that reports compute with, and what each must be: a value
#: of another kind (``"epochs": "ten"``) is left out of the record, with a note.
CONFIG_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs": (_is_count, "a whole number"),
    "lr_milestones": (_are_fractions, "a list of fractions in (0, 1)"),
    "lr_gamma": (_is_positive, "a positive number"),
    "loss": (_is_name, "a name"),
    "task": (_is_name, "a name"),
}
#: The same for summary.json.
SUMMARY_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "status": (_is_name, "a name"),
    "epochs_done": (_is_count, "a whole number"),
    "diverged_epoch": (_is_count, "a whole number"),
    "stopped_early": (_is_flag, "true or false"),
}


def load_run(path: str | os.PathLike, label: str | None = None, *,
             warn: bool = True) -> RunRecord:
    """Read a run directory written by the trainer (complete or not), or any folder with
    a metrics log in the format of the module docstring.

    What cannot be read is left out and listed in ``notes``: unreadable lines of the log,
    a config.json or summary.json that is not a JSON object, settings of the wrong kind
    (``CONFIG_KINDS``, ``SUMMARY_KINDS``), NaN, Infinity and numbers beyond the float
    range (read as missing). With ``warn``, the notes are issued as ONE RunLogWarning
    (:func:`skipped_line`). Names that are not printable (bytes of a folder name that are
    not UTF-8, line breaks) are shown escaped in the label and the messages.
    """
    run = RunDir(path)
    if not run.path.is_dir():
        raise NCInputError(f"{shown_path(run.path)}: no such run directory")
    with collect_notes() as notes:
        rows = run.read_rows()
        config = _checked(_optional(run.read_config), CONFIG_KINDS, run.file(CONFIG))
        summary = _checked(_optional(run.read_summary), SUMMARY_KINDS, run.file(SUMMARY))
    if not rows:
        skipped = f" ({skipped_line(notes)})" if notes else ""
        raise NCInputError(f"{shown_path(run.path)} has no logged epochs yet ({METRICS_JSONL} "
                           "is missing or empty, or none of its rows has an epoch): is it an "
                           f"nclab run directory?{skipped}")
    if warn and notes:
        warnings.warn(skipped_line(notes), RunLogWarning, stacklevel=2)
    return RunRecord(run.path, shown_text(label or run.path.resolve().name), config or {}, rows,
                     summary, notes)


@contextmanager
def collect_notes() -> Iterator[list[str]]:
    """Inside the block, each RunLogWarning is caught and its message appended to the list
    this yields; other warnings pass on when the block ends."""
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunLogWarning)
        try:
            yield notes
        finally:
            notes += [str(w.message) for w in caught if issubclass(w.category, RunLogWarning)]
    for other in caught:
        if not issubclass(other.category, RunLogWarning):
            warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)


def _optional(read: Callable[..., dict[str, Any] | None]) -> dict[str, Any] | None:
    """``read(strict=False)``, or None with a RunLogWarning when the file is unreadable."""
    try:
        return read(strict=False)
    except NCInputError as exc:
        warnings.warn(f"{exc}: ignored", RunLogWarning, stacklevel=3)
        return None


def _checked(document: dict[str, Any] | None, kinds: dict[str, tuple[Callable[[Any], bool], str]],
             path: Path) -> dict[str, Any] | None:
    """``document`` without the values of ``kinds`` that are not of their kind (warned)."""
    if document is None:
        return None
    wrong = [key for key, (test, _) in kinds.items()
             if document.get(key) is not None and not test(document[key])]
    for key in wrong:
        warnings.warn(f"{shown_path(path)}: '{key}' is {_brief(document[key])}, not "
                      f"{kinds[key][1]}: ignored", RunLogWarning, stacklevel=3)
    return {key: value for key, value in document.items() if key not in wrong}


def _brief(value: Any, limit: int = 40) -> str:
    """A short printable repr of ``value`` (its depth is bounded by MAX_DEPTH)."""
    text = shown_text(repr(value))
    return text if len(text) <= limit else text[:limit - 3] + "..."
