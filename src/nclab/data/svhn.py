"""SVHN, cropped digits (Netzer et al. 2011), from its MATLAB ``.mat`` files.

Each file holds ``X``, uint8 of shape (32, 32, 3, N) = (row, column, channel, sample),
and ``y`` of shape (N, 1) with labels 1..10, where 10 stands for the digit 0.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from nclab.core.errors import NCInputError
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
    labels = labels.reshape(-1)
    if not np.array_equal(labels, np.round(labels)):
        raise NCInputError(f"{path}: y holds non-integer labels")
    labels = labels.astype(np.int64)
    check_labels(path, labels, 0, 10)
    if path.name in IMAGES:
        require_count(path, len(labels), IMAGES[path.name], f"the standard {path.name}")
    labels[labels == 10] = 0
    return images.transpose(3, 2, 0, 1), labels


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
