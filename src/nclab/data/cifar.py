"""CIFAR-10 and CIFAR-100, binary versions (Krizhevsky 2009).

Each record is its label byte(s) followed by 3,072 pixel bytes: the 1,024 red values of
the 32x32 image in row-major order, then green, then blue, so a record's pixels are
already channels-first ``(3, 32, 32)``. CIFAR-10 records have one label byte; CIFAR-100
records have two, the coarse (superclass) label then the fine one.

The Python (pickle) versions are not read: unpickling runs code from the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nclab.core.errors import NCInputError
from nclab.data.base import ArrayDataset, DatasetSplits, from_numpy
from nclab.data.files import (
    check_labels,
    locate,
    read_bytes,
    read_names,
    require_count,
    require_size,
    to_unit_float,
)

PIXELS = 3 * 32 * 32
CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck")
CIFAR100_LABELS = {"coarse": (0, 20), "fine": (1, 100)}  # label byte, number of classes
#: Records in each standard file: one cut at a record boundary is only seen by its count.
RECORDS = {**{name: 10_000 for name in CIFAR10_TRAIN}, "test_batch.bin": 10_000,
           "train.bin": 50_000, "test.bin": 10_000}


def read_records(path: Path, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a CIFAR binary file into labels ``(N, label_bytes)`` and pixels ``(N, 3, 32, 32)``.

    Both are uint8 views of the memory-mapped file. Raises NCInputError naming the file
    when its size is not a whole number of records, or when a standard file (``RECORDS``)
    does not hold its standard number of records.
    """
    record = label_bytes + PIXELS
    data = read_bytes(path)
    require_size(path, data.size, multiple_of=record,
                 what=f"records of {label_bytes} label byte(s) + {PIXELS:,} pixel bytes")
    if path.name in RECORDS:
        require_count(path, data.size // record, RECORDS[path.name], f"the standard {path.name}")
    rows = data.reshape(-1, record)
    return rows[:, :label_bytes], rows[:, label_bytes:].reshape(-1, 3, 32, 32)


def _stack(
    paths: list[Path], label_bytes: int, label_index: int, num_classes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels as float32 in [0, 1] and int64 labels of several record files, in order."""
    parts = [read_records(path, label_bytes) for path in paths]
    counts = [len(pixels) for _, pixels in parts]
    x = np.empty((sum(counts), 3, 32, 32), dtype=np.float32)
    start = 0
    for path, (labels, pixels) in zip(paths, parts, strict=True):
        check_labels(path, labels[:, label_index], 0, num_classes - 1)
        to_unit_float(pixels, out=x[start:start + len(pixels)])
        start += len(pixels)
    y = np.concatenate([labels[:, label_index] for labels, _ in parts]).astype(np.int64)
    return x, y


def _splits(
    name: str, train: list[Path], test: list[Path], label_bytes: int, label_index: int,
    num_classes: int, names: tuple[str, ...] | None,
) -> DatasetSplits:
    def split(paths: list[Path]) -> ArrayDataset:
        x, y = _stack(paths, label_bytes, label_index, num_classes)
        return from_numpy(x, y, name, num_classes, names)

    return DatasetSplits(split(train), split(test))


def cifar10(root: Path) -> DatasetSplits:
    """CIFAR-10 binary: 50,000 + 10,000 images, (3, 32, 32) in [0, 1], 10 classes.

    Reads ``data_batch_1.bin`` ... ``data_batch_5.bin`` and ``test_batch.bin`` from
    ``root/cifar-10-batches-bin`` or ``root``; class names from ``batches.meta.txt`` when
    present, else the standard ones.
    """
    files = locate("cifar10", root, CIFAR10_TRAIN + ("test_batch.bin",),
                   ("cifar-10-batches-bin", ""),
                   note="the binary version: tar xzf cifar-10-binary.tar.gz -C {root}")
    folder = files["test_batch.bin"].parent
    names = read_names(folder / "batches.meta.txt", 10) or CIFAR10_NAMES
    train = [files[f] for f in CIFAR10_TRAIN]
    return _splits("cifar10", train, [files["test_batch.bin"]], 1, 0, 10, names)


def cifar100(root: Path, label: str = "fine") -> DatasetSplits:
    """CIFAR-100 binary: 50,000 + 10,000 images, (3, 32, 32) in [0, 1].

    Parameters
    ----------
    root : Path
        Folder holding ``cifar-100-binary/`` (or its files ``train.bin``, ``test.bin``).
    label : {"fine", "coarse"}
        The 100 fine classes, or the 20 coarse superclasses. Names come from
        ``fine_label_names.txt`` / ``coarse_label_names.txt`` when present.
    """
    if label not in CIFAR100_LABELS:
        raise NCInputError(f"cifar100: label must be 'fine' or 'coarse'; got {label!r}")
    files = locate("cifar100", root, ("train.bin", "test.bin"), ("cifar-100-binary", ""),
                   note="the binary version: tar xzf cifar-100-binary.tar.gz -C {root}")
    index, num_classes = CIFAR100_LABELS[label]
    names = read_names(files["train.bin"].parent / f"{label}_label_names.txt", num_classes)
    return _splits("cifar100", [files["train.bin"]], [files["test.bin"]], 2, index,
                   num_classes, names)
