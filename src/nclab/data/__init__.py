"""Data sets, all offline: generated ones and loaders for files the user already has.

``load_dataset(name, root=None, classes=None, per_class=None, **options)`` is the one
entry point; ``DATASETS`` (in :mod:`nclab.data.registry`) lists every name, for
classification and regression alike, and every loader returns ``DatasetSplits``.
"""

from nclab.data.base import ArrayDataset, DatasetSplits, from_numpy, targets_from_numpy
from nclab.data.registry import (
    CLASSIFICATION,
    DATASETS,
    REGRESSION,
    DatasetEntry,
    dataset_names,
    load_dataset,
    resolve_dataset,
)

__all__ = ["CLASSIFICATION", "DATASETS", "REGRESSION", "ArrayDataset", "DatasetEntry",
           "DatasetSplits", "dataset_names", "from_numpy", "load_dataset", "resolve_dataset",
           "targets_from_numpy"]
