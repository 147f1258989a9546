"""Safe reading and writing of the files nclab exchanges with its users."""

from __future__ import annotations

import json
import math
import os
import tempfile
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
    or declares arrays larger than its own bytes can hold (every member's header is read
    and checked before any array is allocated).
    """
    path = Path(path)
    if not path.is_file():
        raise NCInputError(f"{path}: no such file")
    with open(path, "rb") as handle:
        if handle.read(4) != b"PK\x03\x04":
            raise NCInputError(f"{path}: not a readable .npz file (not a zip archive)")
    try:
        check_npz_sizes(path)
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except NCInputError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise NCInputError(
                f"{path} holds pickled objects; refusing to load it (allow_pickle=False)"
            ) from None
        raise NCInputError(f"{path}: not a readable .npz file ({first_line(exc)})") from None
    except _UNREADABLE as exc:
        raise NCInputError(f"{path}: not a readable .npz file ({first_line(exc)})") from None
    missing = [key for key in required if key not in arrays]
    if missing:
        raise NCInputError(
            f"{path} has no array named {', '.join(repr(k) for k in missing)} "
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


def check_npz_sizes(path: Path) -> None:
    """Refuse a .npz whose members declare more bytes than the file can hold.

    Each member's .npy header is read (a few hundred bytes) and its shape x itemsize
    compared with the member's stored size, which is in turn bounded by the compressed
    size and the size of the file, so that no header can make the reader allocate
    memory that the file does not justify.
    """
    on_disk = path.stat().st_size
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if sum(info.compress_size for info in members) > on_disk:
            raise NCInputError(f"{path}: its zip directory declares more bytes than the file has")
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
        raise NCInputError(f"{path}: '{info.filename}' uses zip compression method "
                           f"{info.compress_type}; save with numpy.savez or savez_compressed")
    if info.file_size > limit:
        raise NCInputError(f"{path}: '{info.filename}' declares {info.file_size} bytes but "
                           f"holds {info.compress_size} compressed: the archive is damaged")


def _check_declared_array(path: Path, info: zipfile.ZipInfo, member: Any) -> None:
    name = info.filename.removesuffix(".npy")
    if member.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
        raise NCInputError(f"{path}: '{name}' is not a numpy array (.npy member)")
    member.seek(0)
    version = np.lib.format.read_magic(member)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read_header(member)
    if dtype.hasobject:
        return  # refused as pickled by np.load
    declared = math.prod(shape) * dtype.itemsize
    available = info.file_size - member.tell()
    if declared > available:
        raise NCInputError(
            f"{path}: array '{name}' declares shape {shape} of {dtype} ({declared:,} bytes) "
            f"but the file holds {max(available, 0):,} bytes of it"
        )


class FileWriteError(NCInputError):
    """A file could not be written (disk full, read-only, no permission, a path that is
    not a folder): the message names the path and the cause."""


def file_error(path: str | os.PathLike, exc: OSError, doing: str = "cannot write") -> NCInputError:
    """One line naming ``path`` and the cause of ``exc``, for example
    ``runs/a/checkpoint.pt: cannot write (No space left on device)``."""
    cause = exc.strerror or type(exc).__name__
    return FileWriteError(f"{path}: {doing} ({cause})")


def make_dirs(path: str | os.PathLike) -> list[Path]:
    """Create the folder ``path`` and its missing parents; return those created, the
    outermost first (so that a caller can remove exactly them again).

    Raises FileWriteError naming the path when a part of it is a file or the folder
    cannot be created.
    """
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()][::-1]
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            inside = "" if part == path else f" (cannot create {path})"
            raise FileWriteError(f"{part} is a file, not a folder{inside}")
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
    """
    path = Path(path)
    make_dirs(path.parent)
    payload = data.encode() if isinstance(data, str) else data
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        # mkstemp creates 0600; give the file the mode open() would (0666 less umask)
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise file_error(path, exc) from None
    except BaseException:
        _discard(tmp)
        raise


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
