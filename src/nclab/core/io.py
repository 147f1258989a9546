"""Safe reading and writing of the files nclab exchanges with its users."""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from nclab.core.errors import NCInputError


def load_npz(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Read every array of a .npz file, refusing pickled objects.

    Raises NCInputError naming the file when it is missing, not a .npz, holds pickled
    objects, or lacks one of the ``required`` arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise NCInputError(f"{path}: no such file")
    with open(path, "rb") as handle:
        if handle.read(4) != b"PK\x03\x04":
            raise NCInputError(f"{path}: not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise NCInputError(
                f"{path} holds pickled objects; refusing to load it (allow_pickle=False)"
            ) from None
        raise NCInputError(f"{path}: not a readable .npz file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise NCInputError(f"{path}: not a readable .npz file ({exc})") from None
    missing = [key for key in required if key not in arrays]
    if missing:
        raise NCInputError(
            f"{path} has no array named {', '.join(repr(k) for k in missing)} "
            f"(found: {', '.join(sorted(arrays)) or 'nothing'})"
        )
    return arrays


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    A reader (or a resumed run after a crash) sees either the old file or the new one,
    never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; give the file the mode open() would (0666 less umask)
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def json_ready(result: Any) -> dict[str, Any]:
    """A result dataclass as plain JSON data: tuples become lists, NaN and inf become None."""
    out = json.loads(json.dumps(asdict(result), allow_nan=True))
    return {key: _finite_or_none(value) for key, value in out.items()}


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as strict JSON (no NaN or Infinity)."""
    write_atomic(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")
