"""Finding and checking the files of the data sets read from disk.

Every loader goes through the same three steps: :func:`locate` finds the folder that
holds all the files of a data set (or says, in one line, which files to put where),
:func:`read_bytes` maps a file as unsigned bytes (decompressing ``.gz``), and
:func:`require_size` refuses a truncated file, naming it and the size it should have.
"""

from __future__ import annotations

import gzip
import stat
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nclab.core.errors import NCInputError, first_line
from nclab.core.io import check_expansion, file_error, file_kind, shown


def locate(
    dataset: str,
    root: Path,
    files: Sequence[str],
    folders: Sequence[str] = ("",),
    suffixes: Sequence[str] = ("",),
    note: str = "",
) -> dict[str, Path]:
    """Find the folder under ``root`` that holds every one of ``files``.

    Parameters
    ----------
    dataset : str
        Data set name, for the messages.
    root : Path
        The folder the user gave.
    files : sequence of str
        File names that must all be in one folder.
    folders : sequence of str
        Sub-folders of ``root`` to look in, in order (``""`` is ``root`` itself).
    suffixes : sequence of str
        Endings each file may carry, in order of preference (``("", ".gz")`` takes a
        plain file over its gzip-compressed copy).
    note : str
        Appended to the "put these files there" message (where the files come from);
        ``{root}`` in it stands for ``root``.

    Returns
    -------
    dict of str to Path
        Each name of ``files`` mapped to the file found.
    """
    names = [name + ("[" + "|".join(s for s in suffixes if s) + "]" if any(suffixes) else "")
             for name in files]
    places = " or ".join(shown(root / folder) for folder in folders)
    where = f"put {', '.join(names)} in {places}" + (
        f" ({note.format(root=shown(root))})" if note else "")
    mode = file_kind(root)
    if mode is None:
        raise NCInputError(f"{dataset}: folder {shown(root)} does not exist; {where}")
    if not stat.S_ISDIR(mode):
        raise NCInputError(f"{dataset}: {shown(root)} is a file, not a folder; {where}")
    best: tuple[Path, dict[str, Path]] | None = None
    for folder in folders:
        found = {name: path for name in files if (path := _find(root / folder, name, suffixes))}
        if len(found) == len(files):
            return found
        if found and (best is None or len(found) > len(best[1])):
            best = (root / folder, found)
    if best is None:
        raise NCInputError(f"{dataset}: no {dataset} files under {shown(root)}; {where}")
    folder, found = best
    missing = [s for name, s in zip(files, names, strict=True) if name not in found]
    raise NCInputError(
        f"{dataset}: {shown(folder)} lacks {', '.join(missing)} (it has {', '.join(found)}); "
        f"{where}"
    )


def _find(folder: Path, name: str, suffixes: Sequence[str]) -> Path | None:
    for suffix in suffixes:
        path = folder / (name + suffix)
        mode = file_kind(path)
        if mode is not None and stat.S_ISREG(mode):
            return path
    return None


def read_bytes(path: Path, limit: int | None = None) -> np.ndarray:
    """The contents of ``path`` as a 1-D uint8 array.

    A plain file is memory-mapped (nothing is copied until the pixels are converted); a
    ``.gz`` file is decompressed in memory, never beyond ``limit`` bytes: a stream that
    holds more raises NCInputError (give the size the file's header declares, after
    :func:`check_gzip_size`). A corrupt or cut gzip stream raises NCInputError naming the
    file.
    """
    if path.suffix == ".gz":
        data = _gunzip(path, -1 if limit is None else limit + 1)
        if limit is not None and len(data) > limit:
            raise NCInputError(f"{shown(path)}: decompresses to more than the {limit:,} bytes "
                               "its header declares: corrupt file")
        return np.frombuffer(data, dtype=np.uint8)
    try:
        if path.stat().st_size == 0:  # np.memmap refuses empty files
            return np.empty(0, dtype=np.uint8)
        return np.memmap(path, dtype=np.uint8, mode="r")
    except OSError as exc:
        raise file_error(path, exc, "cannot read") from None


def read_head(path: Path, size: int) -> bytes:
    """The first ``size`` bytes of ``path`` (decompressed for ``.gz``; fewer when the file
    is shorter): a header, read without decompressing the rest."""
    if path.suffix == ".gz":
        return _gunzip(path, size)
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError as exc:
        raise file_error(path, exc, "cannot read") from None


def _gunzip(path: Path, size: int) -> bytes:
    """At most ``size`` decompressed bytes of the gzip file ``path`` (-1: all)."""
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read(size)
    except (EOFError, OSError, zlib.error) as exc:
        raise NCInputError(f"{shown(path)}: corrupt or truncated gzip file "
                           f"({first_line(exc)})") from None


def check_gzip_size(path: Path, declared: int, in_memory: int, what: str) -> None:
    """Before a ``.gz`` file is decompressed: refuse a header that declares more bytes
    than the compressed file can hold (``check_expansion`` on ``in_memory``, the bytes
    the data will take once converted). Plain files need no check: their size is exact."""
    if path.suffix == ".gz":
        try:
            compressed = path.stat().st_size
        except OSError as exc:
            raise file_error(path, exc, "cannot read") from None
        check_expansion(path, f"{what} ({declared:,} bytes, from its header)", in_memory,
                        compressed)


def require_size(
    path: Path, found: int, *, exact: int | None = None, minimum: int | None = None,
    multiple_of: int | None = None, what: str = "",
) -> None:
    """Raise NCInputError unless ``found`` bytes is ``exact``, at least ``minimum``, or a
    positive multiple of ``multiple_of`` (each check only when given).

    The message names the file, the size expected and the size found, for example
    ``train-images-idx3-ubyte: truncated or corrupt: expected 47,040,016 bytes (16-byte
    header + 60,000 x 28 x 28 values, from the header), found 1,000``.
    """
    if exact is not None and found != exact:
        expected = f"{exact:,} bytes"
    elif minimum is not None and found < minimum:
        expected = f"at least {minimum:,} bytes"
    elif multiple_of is not None and (found == 0 or found % multiple_of):
        expected = f"a positive multiple of {multiple_of:,} bytes"
    else:
        return
    unpacked = " after decompression" if path.suffix == ".gz" else ""
    detail = f" ({what})" if what else ""
    raise NCInputError(
        f"{path}: truncated or corrupt: expected {expected}{unpacked}{detail}, found {found:,}"
    )


def to_unit_float(pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """8-bit pixels as float32 in [0, 1] (``pixels / 255``), written into ``out`` if given."""
    return np.divide(pixels, np.float32(255), out=out, dtype=np.float32)


def check_labels(path: Path, labels: np.ndarray, low: int, high: int) -> None:
    """Raise NCInputError naming ``path`` if a label lies outside ``low..high``."""
    if labels.size and (labels.min() < low or labels.max() > high):
        bad = labels[(labels < low) | (labels > high)][0]
        raise NCInputError(
            f"{path}: label {bad} outside {low}..{high}: corrupt file or wrong layout"
        )


def read_names(path: Path, count: int) -> tuple[str, ...] | None:
    """Class names, one per line (blank lines ignored), or None if ``path`` is absent.

    Raises NCInputError when the file is not UTF-8 text or lists a number of names other
    than ``count``.
    """
    mode = file_kind(path)
    if mode is None or not stat.S_ISREG(mode):
        return None
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NCInputError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                           f"offset {exc.start:,}); expected one class name per line") from None
    except OSError as exc:
        raise NCInputError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != count:
        raise NCInputError(f"{path}: lists {len(names)} class names, expected {count}")
    return names


def require_count(path: Path, found: int, expected: int, what: str) -> None:
    """Raise NCInputError unless ``path`` holds the ``expected`` number of records.

    The standard files have fixed sizes: a file cut at a record boundary is a whole
    number of records, and only its count shows that it is short.
    """
    if found != expected:
        state = "truncated" if found < expected else "too long"
        raise NCInputError(f"{path}: {state}: holds {found:,} records, {what} holds "
                           f"{expected:,}")
