"""SVHN, cropped digits (Netzer et al. 2011), from its MATLAB ``.mat`` files.

Each file holds ``X``, uint8 of shape (32, 32, 3, N) = (row, column, channel, sample),
and ``y`` of shape (N, 1) with labels 1..10, where 10 stands for the digit 0.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from nclab.core.errors import NCInputError
from nclab.core.io import check_expansion, expansion_cap
from nclab.data.base import ArrayDataset, DatasetSplits, from_numpy
from nclab.data.files import check_labels, locate, require_count, to_unit_float

NAMES = tuple(str(i) for i in range(10))
#: Images of each standard file.
IMAGES = {"train_32x32.mat": 73_257, "test_32x32.mat": 26_032, "extra_32x32.mat": 531_131}


def read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 in 0..9 from one file.

    Raises NCInputError naming the file when it is unreadable, cut short, lacks the arrays
    and shapes above, or (a standard file) does not hold its number of images (``IMAGES``).
    """
    import scipy.io  # here, not at the top: it takes a third of a second to import
    from scipy.io.matlab import MatReadError

    check_mat_expansion(path)
    unreadable = (MatReadError, ValueError, OSError, EOFError, IndexError, TypeError, zlib.error)
    try:
        arrays = scipy.io.loadmat(path, variable_names=["X", "y"])
    except NotImplementedError:  # scipy's answer to MATLAB v7.3 (HDF5) files
        raise NCInputError(
            f"{path}: MATLAB v7.3 (HDF5) file; expected the original SVHN file (MATLAB v5)"
        ) from None
    except unreadable as exc:
        raise NCInputError(
            f"{path}: truncated or corrupt MATLAB file ({exc}); expected X (32x32x3xN uint8) "
            "and y (Nx1)"
        ) from None
    if "X" not in arrays or "y" not in arrays:
        found = ", ".join(name for name, _, _ in scipy.io.whosmat(path)) or "none"
        raise NCInputError(f"{path}: expected arrays X and y; found {found}")
    images, labels = arrays["X"], arrays["y"]
    if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.dtype != np.uint8:
        raise NCInputError(
            f"{path}: X has shape {images.shape} and type {images.dtype}; expected "
            "(32, 32, 3, N) uint8"
        )
    if labels.size != images.shape[3] or not np.issubdtype(labels.dtype, np.number):
        raise NCInputError(
            f"{path}: y holds {labels.size:,} values ({labels.dtype}) for "
            f"{images.shape[3]:,} images"
        )
    if np.iscomplexobj(labels):  # a cast to integers would drop the imaginary parts
        raise NCInputError(f"{path}: y holds complex numbers ({labels.dtype}); expected real "
                           "labels 1..10")
    labels = labels.reshape(-1)
    if not np.array_equal(labels, np.round(labels)):
        raise NCInputError(f"{path}: y holds non-integer labels")
    check_labels(path, labels, 0, 10)  # before the cast, which would wrap huge labels
    labels = labels.astype(np.int64)
    if path.name in IMAGES:
        require_count(path, len(labels), IMAGES[path.name], f"the standard {path.name}")
    labels[labels == 10] = 0
    return images.transpose(3, 2, 0, 1), labels


# Top-level data element types of a MATLAB v5 file (the MAT-file format, table 1-1).
_MI_COMPRESSED = 15
_CHUNK = 1 << 20


def check_mat_expansion(path: Path) -> None:
    """Refuse a MATLAB v5 file whose compressed variables inflate beyond what its size
    justifies (``check_expansion``, counting each byte as a float32 pixel), before scipy
    inflates them: each compressed element is streamed through zlib with a hard cap."""
    from scipy.io.matlab import matfile_version

    try:
        if matfile_version(path)[0] != 1:  # v4 has no compression; v7.3 is refused later
            return
        size = path.stat().st_size
        with open(path, "rb") as handle:
            header = handle.read(128)
            order = "<" if header[126:128] == b"IM" else ">"
            cap = expansion_cap(size) // 4  # each byte becomes a float32 pixel
            inflated = 0
            while inflated <= cap and len(tag := handle.read(8)) == 8:
                mdtype, nbytes = struct.unpack(order + "II", tag)
                if mdtype >> 16:  # a small element: all of it is in the tag
                    continue
                if mdtype == _MI_COMPRESSED:
                    inflated += _inflated_size(handle, nbytes, cap - inflated)
                else:
                    handle.seek(nbytes, 1)
    except (OSError, ValueError, EOFError, IndexError, TypeError, zlib.error):
        return  # unreadable: scipy says how, in the reader's one line
    if inflated > cap:
        check_expansion(path, f"its compressed variables (more than {inflated:,} bytes "
                        "inflated)", 4 * inflated, size)


def _inflated_size(handle: BinaryIO, nbytes: int, cap: int) -> int:
    """Bytes the zlib stream of ``nbytes`` at the handle's position inflates to, counted
    without keeping them, stopping once past ``cap``."""
    inflater = zlib.decompressobj()
    total, left = 0, nbytes
    while left > 0 and not inflater.eof:
        data = handle.read(min(left, _CHUNK))
        if not data:
            break
        left -= len(data)
        while data and total <= cap:
            total += len(inflater.decompress(data, _CHUNK))
            data = inflater.unconsumed_tail
        if total > cap:
            break
    handle.seek(left, 1)
    return total


def _split(paths: list[Path]) -> ArrayDataset:
    parts = [read_mat(path) for path in paths]
    x = np.empty((sum(len(y) for _, y in parts), 3, 32, 32), dtype=np.float32)
    start = 0
    for images, labels in parts:
        to_unit_float(images, out=x[start:start + len(labels)])
        start += len(labels)
    return from_numpy(x, np.concatenate([y for _, y in parts]), "svhn", 10, NAMES)


def svhn(root: Path, extra: bool = False) -> DatasetSplits:
    """SVHN cropped digits: 73,257 + 26,032 images, (3, 32, 32) in [0, 1], 10 classes.

    Parameters
    ----------
    root : Path
        Folder holding ``train_32x32.mat`` and ``test_32x32.mat`` (or ``root/svhn``).
    extra : bool
        Append the 531,131 images of ``extra_32x32.mat`` to the training split.
    """
    required = ("train_32x32.mat", "test_32x32.mat") + (("extra_32x32.mat",) if extra else ())
    files = locate("svhn", root, required, ("", "svhn"),
                   note="the cropped-digits Format 2 files")
    train = [files["train_32x32.mat"]] + ([files["extra_32x32.mat"]] if extra else [])
    return DatasetSplits(_split(train), _split([files["test_32x32.mat"]]))
