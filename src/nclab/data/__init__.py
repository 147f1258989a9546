"""Data sets, all offline: generated ones and loaders for files the user already has.

``load_dataset(name, root=None, classes=None, per_class=None, **options)`` is the one
entry point; ``DATASETS`` lists the names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nclab.core.errors import NCInputError
from nclab.data import hierarchical, synthetic
from nclab.data.base import ArrayDataset, DatasetSplits, from_numpy
from nclab.data.cifar import cifar10, cifar100
from nclab.data.idx import fashionmnist, kmnist, mnist
from nclab.data.npz import npz
from nclab.data.stl10 import stl10
from nclab.data.svhn import svhn

#: name -> (builder, needs_root). Builders with needs_root read files under ``root``.
DATASETS: dict[str, tuple[Callable[..., DatasetSplits], bool]] = {
    "mnist1d": (synthetic.mnist1d, False),
    "digits": (synthetic.digits, False),
    "gaussian": (synthetic.gaussian, False),
    "hierarchical": (hierarchical.hierarchical, False),
    "mnist": (mnist, True),
    "fashionmnist": (fashionmnist, True),
    "kmnist": (kmnist, True),
    "cifar10": (cifar10, True),
    "cifar100": (cifar100, True),
    "svhn": (svhn, True),
    "stl10": (stl10, True),
    "npz": (npz, True),
}


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    classes: list[int] | None = None,
    per_class: int | None = None,
    per_class_test: int | None = None,
    seed: int = 0,
    **options: Any,
) -> DatasetSplits:
    """Load a data set by name, optionally restricted to some classes and sizes.

    Parameters
    ----------
    name : str
        One of ``DATASETS``.
    root : path, optional
        Folder holding the files, for the data sets read from disk.
    classes : list of int, optional
        Keep these classes, relabelled 0..k-1 in this order.
    per_class, per_class_test : int, optional
        At most this many training / test samples per class (a seeded random draw).
    **options
        Passed to the builder (for example ``num_samples`` for mnist1d).
    """
    if name not in DATASETS:
        raise NCInputError(f"unknown dataset '{name}'; choose from: {', '.join(sorted(DATASETS))}")
    builder, needs_root = DATASETS[name]
    accepted = list(inspect.signature(builder).parameters)[1 if needs_root else 0:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise NCInputError(
            f"dataset '{name}' has no option {', '.join(unknown)}; its options: "
            f"{', '.join(accepted) or 'none'}"
        )
    if needs_root:
        if root is None:
            raise NCInputError(f"dataset '{name}' is read from files: give its folder (--root)")
        splits = builder(Path(root).expanduser(), **options)
    else:
        splits = builder(**options)
    if classes is not None or per_class is not None or per_class_test is not None:
        splits = splits.subset(classes, per_class, per_class_test, seed)
    return splits


__all__ = ["DATASETS", "ArrayDataset", "DatasetSplits", "from_numpy", "load_dataset"]
