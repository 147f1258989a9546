"""Coarse labelings: which fine classes make each superclass, and coarse data sets."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.validation import as_labels
from nclab.data.base import ArrayDataset, DatasetSplits

PAIRINGS = ("mod", "random", "explicit")


@dataclass(frozen=True)
class CoarseLabeling:
    """A map from K fine classes onto K' superclasses, every superclass non-empty.

    Build it with ``CoarseLabeling.mod``, ``.random``, ``.from_map`` or ``.create``.

    Attributes
    ----------
    fine_to_coarse : tuple of int, length K
        The superclass of each fine class.
    num_coarse : int
        K'.
    pairing : str
        How it was made: ``"mod"``, ``"random"`` or ``"explicit"``.
    """

    fine_to_coarse: tuple[int, ...]
    num_coarse: int
    pairing: str = "explicit"
    _table: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        table = np.asarray(self.fine_to_coarse, dtype=np.int64)
        _check_sizes(len(table), self.num_coarse)
        outside = sorted({s for s in table.tolist() if not 0 <= s < self.num_coarse})
        if outside:
            raise NCInputError(f"the coarse map uses superclasses {short_list(outside)} outside "
                               f"0..{self.num_coarse - 1}")
        empty = sorted(set(range(self.num_coarse)) - set(table.tolist()))
        if empty:
            raise NCInputError(f"superclasses {empty} have no fine classes "
                               f"(num_coarse={self.num_coarse})")
        object.__setattr__(self, "_table", table)

    # ---- constructors
    @classmethod
    def mod(cls, num_fine: int, num_coarse: int) -> CoarseLabeling:
        """Fine class y -> superclass y mod K'."""
        _check_sizes(num_fine, num_coarse)
        return cls(tuple(y % num_coarse for y in range(num_fine)), num_coarse, "mod")

    @classmethod
    def random(cls, num_fine: int, num_coarse: int, seed: int = 0) -> CoarseLabeling:
        """A seeded random partition into K' groups whose sizes differ by at most one."""
        _check_sizes(num_fine, num_coarse)
        order = np.random.default_rng(seed).permutation(num_fine)
        table = np.empty(num_fine, dtype=np.int64)
        table[order] = np.arange(num_fine) % num_coarse  # deal the shuffled classes round-robin
        return cls(tuple(table.tolist()), num_coarse, "random")

    @classmethod
    def from_map(
        cls, mapping: Mapping[int, int] | Sequence[int] | np.ndarray, num_fine: int | None = None,
        num_coarse: int | None = None,
    ) -> CoarseLabeling:
        """An explicit map: ``{fine: superclass}`` or a sequence whose entry y is y's superclass.

        ``num_fine`` (K) defaults to the largest fine class + 1, ``num_coarse`` (K') to the
        largest superclass + 1. Every fine class 0..K-1 must be mapped: the missing ones are
        named in the error.
        """
        pairs = _map_pairs(mapping)
        if not pairs:
            raise NCInputError("the coarse map is empty")
        num_fine = max(pairs) + 1 if num_fine is None else num_fine
        num_coarse = max(pairs.values()) + 1 if num_coarse is None else num_coarse
        _check_sizes(num_fine, num_coarse)
        missing = [y for y in range(num_fine) if y not in pairs]
        if missing:
            raise NCInputError(f"the coarse map does not cover fine classes {short_list(missing)} "
                               f"(it must map every class 0..{num_fine - 1})")
        extra = sorted(y for y in pairs if not 0 <= y < num_fine)
        if extra:
            raise NCInputError(f"the coarse map names fine classes {short_list(extra)} outside "
                               f"0..{num_fine - 1}")
        return cls(tuple(pairs[y] for y in range(num_fine)), num_coarse, "explicit")

    @classmethod
    def create(
        cls, pairing: str, num_fine: int, num_coarse: int | None = None, *, seed: int = 0,
        mapping: Mapping[int, int] | Sequence[int] | str | None = None,
    ) -> CoarseLabeling:
        """One entry point for a command line: ``pairing`` is one of ``PAIRINGS``.

        ``mapping`` (explicit only) may be a string, see ``parse_coarse_map``.
        """
        if pairing not in PAIRINGS:
            raise NCInputError(f"unknown pairing '{pairing}'; choose from: {', '.join(PAIRINGS)}")
        if (pairing == "explicit") != (mapping is not None):
            raise NCInputError("give a coarse map exactly when the pairing is 'explicit'")
        if pairing == "explicit":
            if isinstance(mapping, str):
                mapping = parse_coarse_map(mapping)
            return cls.from_map(mapping, num_fine, num_coarse)
        if num_coarse is None:
            raise NCInputError(f"pairing '{pairing}' needs the number of superclasses")
        if pairing == "mod":
            return cls.mod(num_fine, num_coarse)
        return cls.random(num_fine, num_coarse, seed)

    # ---- queries
    @property
    def num_fine(self) -> int:
        """K, the number of fine classes."""
        return len(self.fine_to_coarse)

    def coarse(self, y_fine: Any) -> Any:
        """Superclass of each fine label; a tensor for a tensor, else a numpy array.

        Parameters
        ----------
        y_fine : array or tensor of shape (N,), int, values in 0..K-1
        """
        y = as_labels(y_fine, len(y_fine), self.num_fine)
        if torch.is_tensor(y_fine):
            return torch.from_numpy(self._table).to(y.device)[y]
        return self._table[y.numpy()]

    def members(self, superclass: int) -> tuple[int, ...]:
        """The fine classes of ``superclass``, in increasing order."""
        if not 0 <= superclass < self.num_coarse:
            raise NCInputError(f"superclass {superclass} out of range 0..{self.num_coarse - 1}")
        return tuple(int(y) for y in np.flatnonzero(self._table == superclass))

    def coarsen(self, dataset: ArrayDataset) -> ArrayDataset:
        """The same samples (shared, not copied) with superclass labels.

        The fine labels stay in ``dataset.y``, in the same order. Class names, when the
        data set has them, are the joined fine names (``"0+5"``).
        """
        if dataset.num_classes != self.num_fine:
            raise NCInputError(f"{dataset.name}: the coarse map is for {self.num_fine} fine "
                               f"classes; the data set has {dataset.num_classes}")
        names = None
        if dataset.class_names:
            names = tuple("+".join(dataset.class_names[y] for y in self.members(s))
                          for s in range(self.num_coarse))
        return replace(dataset, y=self.coarse(dataset.y), num_classes=self.num_coarse,
                       name=f"{dataset.name}/coarse{self.num_coarse}", class_names=names)

    def to_dict(self) -> dict[str, Any]:
        return {"pairing": self.pairing, "num_fine": self.num_fine,
                "num_coarse": self.num_coarse, "fine_to_coarse": list(self.fine_to_coarse)}


@dataclass(frozen=True)
class CoarseSplits(DatasetSplits):
    """Train and test splits with superclass labels; ``fine`` keeps the fine-labelled ones.

    ``train`` / ``test`` are the coarse data sets (what a coarse model trains on); the
    samples are the same objects, in the same order, as in ``fine.train`` / ``fine.test``.
    """

    fine: DatasetSplits
    labeling: CoarseLabeling


def coarsen_splits(splits: DatasetSplits, labeling: CoarseLabeling) -> CoarseSplits:
    """Relabel both splits with ``labeling``; the fine splits stay reachable as ``.fine``."""
    return CoarseSplits(labeling.coarsen(splits.train), labeling.coarsen(splits.test),
                        fine=splits, labeling=labeling)


def parse_coarse_map(text: str) -> dict[int, int]:
    """Parse ``"0:0,1:0,2:1,3:1"`` (fine:superclass pairs) or ``"0,0,1,1"`` (by position)."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise NCInputError(f"cannot read coarse map '{text}': use '0:0,1:0,2:1' or '0,0,1'")
    if all(re.fullmatch(r"\d+", item) for item in items):
        return {y: int(s) for y, s in enumerate(items)}
    pairs: dict[int, int] = {}
    for item in items:
        match = re.fullmatch(r"(\d+)\s*:\s*(\d+)", item)
        if match is None:
            raise NCInputError(f"cannot read '{item}' in the coarse map: expected fine:superclass")
        fine, coarse = int(match[1]), int(match[2])
        if fine in pairs:
            raise NCInputError(f"fine class {fine} appears twice in the coarse map")
        pairs[fine] = coarse
    return pairs


def _map_pairs(mapping: Mapping[int, int] | Sequence[int] | np.ndarray) -> dict[int, int]:
    items = mapping.items() if isinstance(mapping, Mapping) else enumerate(np.asarray(mapping))
    pairs = {}
    for fine, coarse in items:
        if int(fine) != fine or int(coarse) != coarse:
            raise NCInputError(f"the coarse map must hold integers; got {fine}: {coarse}")
        pairs[int(fine)] = int(coarse)
    return pairs


def _check_sizes(num_fine: int, num_coarse: int) -> None:
    if num_coarse < 1 or num_fine < num_coarse:
        raise NCInputError(f"need 1 <= num_coarse <= num_fine; got num_coarse={num_coarse}, "
                           f"num_fine={num_fine}")


def short_list(values: list[int], limit: int = 20) -> str:
    """``[1, 2, 3]``, cut after ``limit`` values so that a message stays one short line."""
    if len(values) <= limit:
        return f"[{', '.join(str(v) for v in values)}]"
    return f"[{', '.join(str(v) for v in values[:limit])}, ...] ({len(values)} in all)"
