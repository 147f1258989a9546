"""STL-10, binary version (Coates, Lee & Ng 2011).

``*_X.bin`` holds uint8 images of 3x96x96, one channel after the other, each channel in
column-major order (MATLAB's): byte ``c * 9216 + col * 96 + row``. ``*_y.bin`` holds one
label byte per image, 1..10. The 100,000 unlabelled images are not read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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

SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
NAMES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
FILES = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")
#: Labelled images of each standard split (a label file cut short is seen by its count).
IMAGES = {"train_y.bin": 5_000, "test_y.bin": 8_000}


def read_split(images: Path, labels: Path, names: tuple[str, ...]) -> ArrayDataset:
    """One split as (N, 3, 96, 96) float32 in [0, 1] and labels 0..9.

    Raises NCInputError naming the file when a standard label file does not hold its
    number of labels (``IMAGES``) or the image file does not hold exactly one image per
    label.
    """
    y = read_bytes(labels)
    if labels.name in IMAGES:
        require_count(labels, len(y), IMAGES[labels.name], f"the standard {labels.name}")
    check_labels(labels, y, 1, 10)
    pixels = read_bytes(images)
    require_size(images, pixels.size, exact=len(y) * IMAGE_BYTES,
                 what=f"{IMAGE_BYTES:,} per image for the {len(y):,} labels of {labels.name}")
    # (N, channel, col, row) as stored; swapping the last two axes gives rows first
    stored = pixels.reshape(-1, 3, SIDE, SIDE).transpose(0, 1, 3, 2)
    x = to_unit_float(stored, out=np.empty(stored.shape, dtype=np.float32))
    return from_numpy(x, y.astype(np.int64) - 1, "stl10", 10, names)


def stl10(root: Path) -> DatasetSplits:
    """STL-10 labelled images: 5,000 + 8,000 of (3, 96, 96) in [0, 1], 10 classes.

    Reads ``train_X.bin``, ``train_y.bin``, ``test_X.bin``, ``test_y.bin`` from
    ``root/stl10_binary`` or ``root``; class names from ``class_names.txt`` when present.
    """
    files = locate("stl10", root, FILES, ("stl10_binary", ""),
                   note="tar xzf stl10_binary.tar.gz -C {root}")
    names = read_names(files["train_y.bin"].parent / "class_names.txt", 10) or NAMES
    return DatasetSplits(
        read_split(files["train_X.bin"], files["train_y.bin"], names),
        read_split(files["test_X.bin"], files["test_y.bin"], names),
    )
