"""MNIST, Fashion-MNIST and KMNIST from their IDX files (plain or ``.gz``).

The IDX format (LeCun et al.): a 4-byte magic number ``0x0000 08 NN`` (``08`` = unsigned
bytes, ``NN`` = number of dimensions), ``NN`` big-endian uint32 sizes, then the values in
row-major order. Images are ``(N, rows, cols)``, labels ``(N,)``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nclab.core.errors import NCInputError
from nclab.data.base import ArrayDataset, DatasetSplits, from_numpy
from nclab.data.files import (
    check_gzip_size,
    check_labels,
    locate,
    read_bytes,
    read_head,
    require_size,
    to_unit_float,
)

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
UBYTE = 0x08

MNIST_NAMES = tuple(str(i) for i in range(10))
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot")
KMNIST_NAMES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes with ``ndim`` dimensions.

    Returns
    -------
    ndarray of uint8, shape given by the file's header
        A view of the file (memory-mapped when the file is not compressed).

    Raises NCInputError naming the file for a wrong magic number, a header with a zero
    size (no samples, or empty images) or a size that does not match the header. A
    ``.gz`` file is decompressed only once its header has passed ``check_gzip_size``, and
    never beyond the size the header gives.
    """
    header = 4 + 4 * ndim
    head = read_head(path, header)
    require_size(path, len(head), minimum=header, what=f"the {header}-byte IDX header")
    expected_magic = (UBYTE << 8) | ndim
    magic = int.from_bytes(head[:4], "big")
    if magic != expected_magic:
        raise NCInputError(
            f"{path}: not an IDX file of unsigned bytes with {ndim} dimension(s): magic "
            f"number 0x{magic:08x}, expected 0x{expected_magic:08x}"
        )
    shape = tuple(int.from_bytes(head[i:i + 4], "big") for i in range(4, header, 4))
    body = " x ".join(f"{d:,}" for d in shape)
    if 0 in shape:
        raise NCInputError(f"{path}: holds no data (its header gives {body} values)")
    size = header + math.prod(shape)
    # the bytes become float32 pixels: checked before a .gz is decompressed
    check_gzip_size(path, size, 4 * math.prod(shape), f"{body} values")
    data = read_bytes(path, limit=size)
    require_size(path, data.size, exact=size,
                 what=f"{header}-byte header + {body} values, from the header")
    return data[header:].reshape(shape)


def _split(files: dict[str, Path], split: str, name: str, names: tuple[str, ...]) -> ArrayDataset:
    image_file, label_file = (files[f] for f in SPLIT_FILES[split])
    images, labels = read_idx(image_file, 3), read_idx(label_file, 1)
    if len(images) != len(labels):
        raise NCInputError(
            f"{name}: {image_file} holds {len(images):,} images but {label_file} holds "
            f"{len(labels):,} labels"
        )
    check_labels(label_file, labels, 0, len(names) - 1)
    x = to_unit_float(images)[:, None]  # (N, 1, rows, cols)
    return from_numpy(x, labels, name, len(names), names)


def load_idx(root: Path, name: str, folder: str, names: tuple[str, ...]) -> DatasetSplits:
    """Read the four IDX files of an MNIST-like data set from ``root``.

    They may lie in ``root``, ``root/raw``, ``root/<folder>`` or ``root/<folder>/raw``
    (torchvision's layout), each plain or gzip-compressed.
    """
    required = [f for pair in SPLIT_FILES.values() for f in pair]
    files = locate(name, root, required, ("", "raw", folder, f"{folder}/raw"), ("", ".gz"))
    train, test = _split(files, "train", name, names), _split(files, "test", name, names)
    if train.input_shape != test.input_shape:
        raise NCInputError(
            f"{name}: training images are {train.input_shape[1:]}, test images "
            f"{test.input_shape[1:]} ({files['t10k-images-idx3-ubyte']})"
        )
    return DatasetSplits(train, test)


def mnist(root: Path) -> DatasetSplits:
    """MNIST: 60,000 + 10,000 handwritten digits, (1, 28, 28) in [0, 1], 10 classes."""
    return load_idx(root, "mnist", "MNIST", MNIST_NAMES)


def fashionmnist(root: Path) -> DatasetSplits:
    """Fashion-MNIST: 60,000 + 10,000 clothing images, (1, 28, 28) in [0, 1], 10 classes."""
    return load_idx(root, "fashionmnist", "FashionMNIST", FASHION_NAMES)


def kmnist(root: Path) -> DatasetSplits:
    """Kuzushiji-MNIST: 60,000 + 10,000 cursive Japanese characters, (1, 28, 28), 10 classes."""
    return load_idx(root, "kmnist", "KMNIST", KMNIST_NAMES)
