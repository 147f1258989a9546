"""In-memory data sets: the one splits type every loader returns.

A classification set has integer labels ``y`` (N,) and ``num_classes``; a regression
set has real targets ``y`` (N, n) and ``num_classes=None``. Both come as
:class:`DatasetSplits` (a train and a test :class:`ArrayDataset`).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.io import write_atomic


@dataclass(frozen=True)
class ArrayDataset:
    """Samples with labels (classification) or real targets (regression), in memory.

    Attributes
    ----------
    x : Tensor of shape (N, *input_shape), float32
    y : Tensor
        Classification: shape (N,), int64, values in 0..num_classes-1. Regression:
        shape (N, n), float32.
    num_classes : int or None
        None for regression targets.
    name : str
    class_names : tuple of str, optional
    """

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int | None = None
    name: str = ""
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            what = "targets" if self.is_regression else "labels"
            raise NCInputError(f"{self.name}: {len(self.x)} samples but {len(self.y)} {what}")
        if self.is_regression and self.y.ndim != 2:
            raise NCInputError(f"{self.name}: targets must be 2-D (N, n)")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def is_regression(self) -> bool:
        """True for real targets (``num_classes`` is None)."""
        return self.num_classes is None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def target_dim(self) -> int:
        """n, the number of target columns (regression only)."""
        self._require_regression("target_dim")
        return self.y.shape[1]

    def class_counts(self) -> np.ndarray:
        self._require_classification("class counts")
        return torch.bincount(self.y, minlength=self.num_classes).numpy()

    def _require_classification(self, what: str) -> None:
        if self.is_regression:
            raise NCInputError(f"{self.name}: {what} need class labels; this data set has "
                               "real targets")

    def _require_regression(self, what: str) -> None:
        if not self.is_regression:
            raise NCInputError(f"{self.name}: {what} is defined for real targets; this data "
                               "set has class labels")

    def subset(
        self, classes: list[int] | None = None, per_class: int | None = None, seed: int = 0
    ) -> ArrayDataset:
        """Keep some classes (relabelled 0..k-1 in the given order) and at most
        ``per_class`` samples of each, drawn at random under ``seed``: Papyan's balanced
        subsets.
        """
        self._require_classification("classes and per-class limits")
        x, y, names, num_classes = self.x, self.y, self.class_names, self.num_classes
        if classes is not None:
            bad = [c for c in classes if not 0 <= c < self.num_classes]
            if bad:
                raise NCInputError(f"{self.name}: classes {bad} out of range 0..{num_classes - 1}")
            if len(set(classes)) != len(classes):
                raise NCInputError(f"{self.name}: repeated classes in {classes}")
            relabel = torch.full((self.num_classes,), -1, dtype=torch.int64)
            relabel[torch.tensor(classes)] = torch.arange(len(classes))
            keep = relabel[y] >= 0
            x, y = x[keep], relabel[y[keep]]
            names = tuple(names[c] for c in classes) if names else None
            num_classes = len(classes)
        if per_class is not None:
            if per_class < 1:
                raise NCInputError(f"per_class must be >= 1; got {per_class}")
            generator = torch.Generator().manual_seed(seed)
            order = torch.randperm(len(y), generator=generator)
            rank = torch.zeros(len(y), dtype=torch.int64)
            seen = torch.zeros(num_classes, dtype=torch.int64)
            for i in order.tolist():  # O(N) once per data set, clear beats clever here
                rank[i] = seen[y[i]]
                seen[y[i]] += 1
            keep = rank < per_class
            x, y = x[keep], y[keep]
        return replace(self, x=x, y=y, num_classes=num_classes, class_names=names)


@dataclass(frozen=True)
class DatasetSplits:
    """A train and a test split of one data set (classification or regression).

    Attributes
    ----------
    train, test : ArrayDataset
        Same input shape; same number of classes, or of target columns.
    info : dict
        How the data were made (sizes, seeds, returns of the policies, ...), JSON-ready;
        keyword only.
    """

    train: ArrayDataset
    test: ArrayDataset
    info: dict[str, Any] = field(default_factory=dict, kw_only=True)

    def __post_init__(self) -> None:
        train, test = self.train, self.test
        if train.is_regression != test.is_regression:
            raise NCInputError(f"{train.name}: one split has labels, the other targets")
        if train.input_shape != test.input_shape or (
                train.is_regression and train.target_dim != test.target_dim):
            raise NCInputError(f"{train.name}: train and test shapes differ")

    @property
    def is_regression(self) -> bool:
        return self.train.is_regression

    @property
    def num_classes(self) -> int | None:
        """C for classification, None for regression."""
        return self.train.num_classes

    @property
    def target_dim(self) -> int:
        """n, the number of target columns (regression only)."""
        return self.train.target_dim

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.train.input_shape

    def subset(
        self, classes: list[int] | None = None, per_class: int | None = None,
        per_class_test: int | None = None, seed: int = 0,
    ) -> DatasetSplits:
        return DatasetSplits(
            self.train.subset(classes, per_class, seed),
            self.test.subset(classes, per_class_test, seed),
            info=self.info,
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write a regression set as ``x, y, x_test, y_test`` to a .npz, atomically.

        The file reads back with the ``npz_targets`` loader.
        """
        self.train._require_regression("saving as x, y, x_test, y_test")
        buffer = io.BytesIO()
        np.savez(buffer, x=self.train.x.numpy(), y=self.train.y.numpy(),
                 x_test=self.test.x.numpy(), y_test=self.test.y.numpy())
        write_atomic(path, buffer.getvalue())


def from_numpy(
    x: np.ndarray, y: np.ndarray, name: str, num_classes: int | None = None,
    class_names: tuple[str, ...] | None = None,
) -> ArrayDataset:
    """A classification ArrayDataset from numpy arrays (float32 samples, int64 labels).

    ``num_classes`` defaults to the largest label + 1.
    """
    y = np.asarray(y).astype(np.int64)
    return ArrayDataset(
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        torch.from_numpy(y),
        int(num_classes if num_classes is not None else y.max() + 1),
        name,
        class_names,
    )


def targets_from_numpy(x: np.ndarray, y: np.ndarray, name: str) -> ArrayDataset:
    """A regression ArrayDataset from numpy arrays: float32 inputs (N, ...) and targets (N, n)."""
    return ArrayDataset(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                        torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)),
                        None, name)
