"""Safe reading and writing of the files nclab exchanges with its users."""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
import tokenize
import zipfile
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from nclab.core.errors import NCInputError, first_line


def load_npz(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Read every array of a .npz file, refusing pickled objects.

    Raises NCInputError naming the file when it is missing, not a .npz, holds pickled
    objects or something else than numpy arrays, lacks one of the ``required`` arrays,
    declares arrays larger than its own bytes can hold, or compressed arrays that would
    expand beyond :func:`check_expansion` (every member's header is read and checked
    before any array is allocated).
    """
    path = Path(path)
    require_file(path)
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise file_error(path, exc, "cannot read") from None
    if magic != b"PK\x03\x04":
        raise NCInputError(f"{shown(path)}: not a readable .npz file (not a zip archive)")
    try:
        check_npz_sizes(path)
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except NCInputError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise NCInputError(
                f"{shown(path)} holds pickled objects; refusing to load it (allow_pickle=False)"
            ) from None
        raise NCInputError(f"{shown(path)}: not a readable .npz file ({first_line(exc)})") from None
    except _UNREADABLE as exc:
        raise NCInputError(f"{shown(path)}: not a readable .npz file ({first_line(exc)})") from None
    missing = [key for key in required if key not in arrays]
    if missing:
        raise NCInputError(
            f"{shown(path)} has no array named {', '.join(repr(k) for k in missing)} "
            f"(found: {', '.join(sorted(arrays)) or 'nothing'})"
        )
    return arrays


# What a damaged or hostile zip raises while it is read (RuntimeError: encrypted members,
# NotImplementedError: an unknown compression method, MemoryError: a last resort).
_UNREADABLE = (OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError,
               NotImplementedError, MemoryError)
# Deflate cannot expand data by more than about 1032:1; np.savez stores or deflates.
_MAX_DEFLATE_RATIO = 1032
_NPY_MAGIC = b"\x93NUMPY"
# What a damaged .npy header raises while numpy parses it (an unterminated literal is a
# tokenize.TokenError, deep nesting a RecursionError).
_BAD_HEADER = (ValueError, SyntaxError, TypeError, tokenize.TokenError, RecursionError,
               MemoryError, EOFError)

#: Compressed data may expand to at most this many bytes of memory per compressed byte,
#: counted as the float arrays nclab computes in (so that a small file of booleans cannot
#: become a huge float64 array). Features stay far below: normal float32 draws compress
#: 1.08:1 with np.savez_compressed (docs/datasets.md).
MAX_EXPANSION = 200
#: Below this many bytes in memory, any expansion is accepted: very regular arrays, such
#: as repeating integer labels, compress beyond 200:1.
FREE_EXPANSION = 256 * 2**20


def shown(path: str | bytes | os.PathLike) -> str:
    """``path`` as a message prints it: bytes that are not UTF-8 and control characters
    are escaped (``caf\\xe9``), so that printing the message cannot fail and stays on one
    line."""
    text = os.fsdecode(path)
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no file name decodes to
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def expansion_cap(compressed: int) -> int:
    """The most bytes of memory that ``compressed`` bytes of compressed data may take."""
    return max(FREE_EXPANSION, MAX_EXPANSION * compressed)


def check_expansion(path: str | os.PathLike, what: str, in_memory: int, compressed: int) -> None:
    """Refuse compressed data that declares more memory than ``MAX_EXPANSION`` times its
    ``compressed`` bytes (above ``FREE_EXPANSION``), before anything is decompressed.

    ``in_memory`` counts the bytes the data will take once converted for computing;
    ``what`` names the member or array, with its declared size.
    """
    if in_memory > expansion_cap(compressed):
        raise NCInputError(
            f"{shown(path)}: {what} would take {in_memory:,} bytes of memory from "
            f"{compressed:,} compressed bytes (more than {MAX_EXPANSION}:1): refused as a "
            "possible decompression bomb; store it uncompressed if it is meant")


def check_npz_sizes(path: Path) -> None:
    """Refuse a .npz whose members declare more bytes than the file can hold.

    Each member's .npy header is read (a few hundred bytes) and its shape x itemsize
    compared with the member's stored size, which is in turn bounded by the compressed
    size and the size of the file, so that no header can make the reader allocate
    memory that the file does not justify. A compressed member must also pass
    :func:`check_expansion`, counted as float64 values.
    """
    on_disk = path.stat().st_size
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if sum(info.compress_size for info in members) > on_disk:
            raise NCInputError(f"{shown(path)}: its zip directory declares more bytes than "
                               "the file has")
        for info in members:
            _check_stored_size(path, info)
            with archive.open(info) as member:
                _check_declared_array(path, info, member)


def _check_stored_size(path: Path, info: zipfile.ZipInfo) -> None:
    if info.compress_type == zipfile.ZIP_STORED:
        limit = info.compress_size
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        limit = _MAX_DEFLATE_RATIO * info.compress_size + 1024
    else:
        raise NCInputError(f"{shown(path)}: '{info.filename}' uses zip compression method "
                           f"{info.compress_type}; save with numpy.savez or savez_compressed")
    if info.file_size > limit:
        raise NCInputError(f"{shown(path)}: '{info.filename}' declares {info.file_size} bytes "
                           f"but holds {info.compress_size} compressed: the archive is damaged")


def _check_declared_array(path: Path, info: zipfile.ZipInfo, member: Any) -> None:
    name = info.filename.removesuffix(".npy")
    if member.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
        raise NCInputError(f"{shown(path)}: '{name}' is not a numpy array (.npy member)")
    member.seek(0)
    try:
        version = np.lib.format.read_magic(member)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(member)
    except _BAD_HEADER as exc:
        raise NCInputError(f"{shown(path)}: not a readable .npz file (array '{name}' has a "
                           f"damaged .npy header: {type(exc).__name__}: {first_line(exc)})"
                           ) from None
    if dtype.hasobject:
        return  # refused as pickled by np.load
    count = math.prod(shape)
    declared = count * dtype.itemsize
    available = info.file_size - member.tell()
    if declared > available:
        raise NCInputError(
            f"{shown(path)}: array '{name}' declares shape {shape} of {dtype} "
            f"({declared:,} bytes) but the file holds {max(available, 0):,} bytes of it"
        )
    if info.compress_type != zipfile.ZIP_STORED:
        check_expansion(path, f"array '{name}' (shape {shape} of {dtype}, {declared:,} bytes)",
                        count * max(dtype.itemsize, 8), info.compress_size)


class FileWriteError(NCInputError):
    """A file could not be written (disk full, read-only, no permission, a path that is
    not a folder): the message names the path and the cause."""


def file_error(path: str | os.PathLike, exc: OSError, doing: str = "cannot write") -> NCInputError:
    """One line naming ``path`` and the cause of ``exc``, for example
    ``runs/a/checkpoint.pt: cannot write (No space left on device)``."""
    cause = exc.strerror or type(exc).__name__
    return FileWriteError(f"{shown(path)}: {doing} ({cause})")


def file_kind(path: str | os.PathLike, doing: str = "cannot read",
              named: str | os.PathLike | None = None) -> int | None:
    """The ``st_mode`` of ``path`` (links followed), None when nothing is there.

    A name too long, a loop of links or a folder that cannot be searched is one
    FileWriteError line naming ``named`` (default ``path``), where ``doing`` says what
    failed, instead of an OSError.
    """
    try:
        return os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise file_error(path if named is None else named, exc, doing) from None


def require_file(path: str | os.PathLike) -> None:
    """Raise one NCInputError line unless ``path`` is a regular file (links followed)."""
    mode = file_kind(path)
    if mode is None:
        raise NCInputError(f"{shown(path)}: no such file")
    if not stat.S_ISREG(mode):
        raise NCInputError(f"{shown(path)} is {_kind_name(mode)}, not a file")


def _kind_name(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISFIFO, "a named pipe"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def make_dirs(path: str | os.PathLike) -> list[Path]:
    """Create the folder ``path`` and its missing parents; return those created, the
    outermost first (so that a caller can remove exactly them again).

    Raises FileWriteError naming the path when a part of it is a file or the folder
    cannot be created (a name too long, no permission, a full disk).
    """
    path = Path(path)
    missing: list[Path] = []
    for part in (path, *path.parents):
        mode = file_kind(part, "cannot create the folder")
        if mode is None:
            missing.insert(0, part)
            continue
        if not stat.S_ISDIR(mode):
            inside = "" if part == path else f" (cannot create {shown(path)})"
            raise FileWriteError(f"{shown(part)} is a file, not a folder{inside}")
        break
    made: list[Path] = []
    for part in missing:
        try:
            part.mkdir()
        except FileExistsError:  # made by another process meanwhile
            continue
        except OSError as exc:
            remove_dirs(made)
            raise file_error(part, exc, "cannot create the folder") from None
        made.append(part)
    return made


def remove_dirs(made: list[Path]) -> None:
    """Remove the folders :func:`make_dirs` created, innermost first, while they are empty."""
    for part in reversed(made):
        try:
            part.rmdir()
        except OSError:  # something was put there meanwhile: leave it
            return


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    A reader (or a resumed run after a crash) sees either the old file or the new one,
    never half of one. A failed write (disk full, read-only file system, no permission)
    leaves the old file and no temporary, and raises FileWriteError naming the path and
    the cause.

    Only a regular file (or nothing) at ``path`` is replaced. A link is followed: its
    target is replaced and the link stays. A character device or a named pipe
    (``/dev/null``, ``/dev/stdout``, a FIFO) is written through, never renamed over;
    anything else (a folder, a socket, a block device) is refused in one line. Text is
    written as UTF-8, with undecodable file-name bytes escaped (``\\xe9``).
    """
    path = Path(path)
    payload = data.encode("utf-8", "backslashreplace") if isinstance(data, str) else data
    target = Path(os.path.realpath(path))
    mode = file_kind(target, "cannot write", named=path)
    if mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        _write_through(path, target, payload)
        return
    if mode is not None and not stat.S_ISREG(mode):
        raise FileWriteError(f"{shown(path)}: cannot write ({_kind_name(mode)}, not a file)")
    make_dirs(target.parent)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        # mkstemp creates 0600; give the file the mode open() would (0666 less umask)
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        _discard(tmp)
        raise file_error(path, exc) from None
    except BaseException:
        _discard(tmp)
        raise


def _write_through(path: Path, target: Path, payload: bytes) -> None:
    """Write ``payload`` into the stream ``target`` (a device or a pipe), opened for
    writing without being created or truncated."""
    try:
        fd = os.open(target, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise file_error(path, exc) from None
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):  # replaced since it was looked at
            raise FileWriteError(f"{shown(path)}: cannot write (it changed while being opened)")
        with os.fdopen(fd, "wb", closefd=False) as handle:
            handle.write(payload)
    except OSError as exc:
        raise file_error(path, exc) from None
    finally:
        os.close(fd)


def _discard(tmp: str | None) -> None:
    if tmp is not None:
        Path(tmp).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN and infinity, at any depth of lists, tuples and dicts,
    replaced by None (tuples become lists): strict JSON can hold the result."""
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def json_ready(result: Any) -> dict[str, Any]:
    """A result dataclass as plain JSON data: tuples become lists, NaN and inf become None."""
    return finite_or_none(json.loads(json.dumps(asdict(result), allow_nan=True)))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as strict JSON; NaN and infinities, at any depth, are
    written as null."""
    write_atomic(path, json.dumps(finite_or_none(obj), indent=2, allow_nan=False) + "\n")
