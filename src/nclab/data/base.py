"""In-memory classification data sets: the one type every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from nclab.core.errors import NCInputError


@dataclass(frozen=True)
class ArrayDataset:
    """Samples and labels held in memory.

    Attributes
    ----------
    x : Tensor of shape (N, *input_shape), float32
    y : Tensor of shape (N,), int64, values in 0..num_classes-1
    num_classes : int
    name : str
    class_names : tuple of str, optional
    """

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    name: str = ""
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise NCInputError(f"{self.name}: {len(self.x)} samples but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def class_counts(self) -> np.ndarray:
        return torch.bincount(self.y, minlength=self.num_classes).numpy()

    def subset(
        self, classes: list[int] | None = None, per_class: int | None = None, seed: int = 0
    ) -> ArrayDataset:
        """Keep some classes (relabelled 0..k-1 in the given order) and at most
        ``per_class`` samples of each, drawn at random under ``seed``: Papyan's balanced
        subsets.
        """
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
    """A train and a test split of one data set."""

    train: ArrayDataset
    test: ArrayDataset

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

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
        )


def from_numpy(
    x: np.ndarray, y: np.ndarray, name: str, num_classes: int | None = None,
    class_names: tuple[str, ...] | None = None,
) -> ArrayDataset:
    """Build an ArrayDataset from numpy arrays (float32 samples, int64 labels)."""
    y = np.asarray(y).astype(np.int64)
    return ArrayDataset(
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        torch.from_numpy(y),
        int(num_classes if num_classes is not None else y.max() + 1),
        name,
        class_names,
    )
