"""Seeded long-tailed subsampling of a classification training split.

Two profiles, written as text on the command line (``--imbalance``) and in a run's
config:

- ``step:R,K`` (Buda et al., 2018; Fang et al., 2021): the last K classes are the
  minority; each keeps round(R n_max) samples, the others n_max.
- ``exp:R`` (Cui et al., 2019): class c keeps round(n_max R^(c/(C-1))), from n_max for
  class 0 down to round(R n_max) for class C-1. The minority are the last ceil(C/2)
  classes (those with at most about sqrt(R) n_max samples).

n_max is the smallest class count of the split before subsampling, so that every class can
supply its share (the majority classes are cut to equal size). round is to the nearest
integer, halves up. Only the TRAINING split is subsampled: the test split stays as it was
(balanced for the bundled sets), so that per-class test accuracies are comparable.
A class that would keep no sample is refused (one line), never silently dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, overload

import numpy as np
import torch

from nclab.core.errors import NCInputError

PROFILES = ("step", "exp")
#: The option's syntax, for messages.
SYNTAX = "step:R,K (K minority classes at ratio R) or exp:R, with R in (0, 1]"


@dataclass(frozen=True)
class Imbalance:
    """A long-tail profile: ``step`` (K minority classes at ratio R) or ``exp``.

    Attributes
    ----------
    profile : {"step", "exp"}
    ratio : float
        R in (0, 1]: the smallest class keeps R times the largest.
    minority : int or None
        K, the number of minority classes (``step`` only).
    """

    profile: str
    ratio: float
    minority: int | None = None

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise NCInputError(f"unknown imbalance profile '{self.profile}'; use {SYNTAX}")
        if not (isinstance(self.ratio, (int, float)) and math.isfinite(self.ratio)
                and 0 < self.ratio <= 1):
            raise NCInputError(f"the imbalance ratio R must lie in (0, 1]; got {self.ratio}")
        if self.profile == "step":
            if not isinstance(self.minority, int) or self.minority < 1:
                raise NCInputError("step:R,K needs K >= 1 minority classes; got "
                                   f"{self.minority}")
        elif self.minority is not None:
            raise NCInputError("exp:R takes no number of minority classes")

    @classmethod
    def parse(cls, text: str, name: str = "imbalance") -> Imbalance:
        """``"step:0.1,5"`` or ``"exp:0.01"`` as an Imbalance; one NCInputError line
        naming ``name`` otherwise."""
        profile, _, rest = str(text).strip().partition(":")
        parts = [part.strip() for part in rest.split(",")] if rest else []
        profile = profile.strip()
        wanted = {"step": 2, "exp": 1}.get(profile)
        if wanted is None:
            raise NCInputError(f"{name}: unknown profile '{profile}' in '{text}'; use {SYNTAX}")
        if len(parts) != wanted:
            raise NCInputError(f"{name}: '{text}' is not {profile}:"
                               f"{'R,K' if wanted == 2 else 'R'}; use {SYNTAX}")
        try:
            ratio = float(parts[0])
        except ValueError:
            raise NCInputError(f"{name}: the ratio R must be a number; got '{parts[0]}'") from None
        if not (math.isfinite(ratio) and 0 < ratio <= 1):
            raise NCInputError(f"{name}: the ratio R must lie in (0, 1]; got '{parts[0]}'")
        minority = None
        if wanted == 2:
            try:
                minority = int(parts[1])
            except ValueError:
                raise NCInputError(f"{name}: K must be an integer number of minority classes; "
                                   f"got '{parts[1]}'") from None
            if minority < 1:
                raise NCInputError(f"{name}: K must be >= 1 minority classes; got {minority}")
        return cls(profile, ratio, minority)

    @property
    def text(self) -> str:
        """The canonical text: ``step:0.1,5``, ``exp:0.01``."""
        if self.profile == "step":
            return f"step:{self.ratio:g},{self.minority}"
        return f"exp:{self.ratio:g}"

    def minority_classes(self, num_classes: int) -> list[int]:
        """The minority classes among 0..C-1: the last K (step), the last ceil(C/2) (exp)."""
        self._check_classes(num_classes)
        # K is set exactly for a step profile (checked at construction)
        count = -(-num_classes // 2) if self.minority is None else self.minority
        return list(range(num_classes - count, num_classes))

    def counts(self, largest: int, num_classes: int) -> np.ndarray:
        """The class counts (C,) of the profile for ``largest`` = n_max samples.

        Raises one NCInputError line when a class would keep no sample.
        """
        self._check_classes(num_classes)
        if largest < 1:
            raise NCInputError(f"imbalance {self.text}: a class has no training sample to "
                               "subsample from")
        if self.profile == "step":
            shares = np.ones(num_classes)
            shares[self.minority_classes(num_classes)] = self.ratio
        else:
            shares = self.ratio ** (np.arange(num_classes) / max(num_classes - 1, 1))
        counts = np.floor(shares * largest + 0.5).astype(np.int64)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            least = math.ceil(0.5 / self.ratio)
            raise NCInputError(
                f"imbalance {self.text}: class {int(empty[0])} would keep 0 of {largest} "
                f"samples; raise R or use at least {least} samples per class")
        return counts

    def _check_classes(self, num_classes: int) -> None:
        if num_classes < 2:
            raise NCInputError(f"imbalance {self.text} needs at least 2 classes; got "
                               f"{num_classes}")
        if self.minority is not None and not self.minority < num_classes:  # step
            raise NCInputError(f"imbalance {self.text}: K = {self.minority} minority classes "
                               f"must lie in 1..C-1 = 1..{num_classes - 1}")


@overload
def as_imbalance(value: None, name: str = ...) -> None: ...


@overload
def as_imbalance(value: Imbalance | str, name: str = ...) -> Imbalance: ...


def as_imbalance(value: Imbalance | str | None, name: str = "imbalance") -> Imbalance | None:
    """An Imbalance from itself, its text or None."""
    if value is None or isinstance(value, Imbalance):
        return value
    if not isinstance(value, str):
        raise NCInputError(f"{name} must be text such as 'step:0.1,5'; got {value!r}")
    return Imbalance.parse(value, name)


def long_tail_indices(labels: np.ndarray, num_classes: int, imbalance: Imbalance,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The samples kept by ``imbalance``, drawn at random under ``seed``.

    Parameters
    ----------
    labels : ndarray of shape (N,), int
    num_classes : int
    imbalance : Imbalance
    seed : int

    Returns
    -------
    keep : ndarray of shape (N_kept,)
        Indices into ``labels``, increasing (the split's order is kept).
    counts : ndarray of shape (C,)
        The class counts kept.
    """
    labels = np.asarray(labels, dtype=np.int64)
    available = np.bincount(labels, minlength=num_classes)
    counts = imbalance.counts(int(available.min()), num_classes)
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(labels), generator=generator).numpy()
    by_class = order[np.argsort(labels[order], kind="stable")]  # random order within class
    starts = np.concatenate([[0], np.cumsum(available)[:-1]])
    keep = np.concatenate([by_class[start:start + count]
                           for start, count in zip(starts, counts, strict=True)])
    return np.sort(keep), counts


def long_tail(split: Any, imbalance: Imbalance, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """A classification ArrayDataset subsampled to ``imbalance``, and what was done.

    Returns
    -------
    split : ArrayDataset
        The kept samples, in their original order.
    info : dict
        ``{"profile", "counts", "minority", "largest"}``, JSON-ready: the profile's text,
        the class counts kept, the minority classes and n_max.
    """
    keep, counts = long_tail_indices(split.y.numpy(), split.num_classes, imbalance, seed)
    index = torch.from_numpy(keep)
    kept = replace(split, x=split.x[index], y=split.y[index])
    return kept, {"profile": imbalance.text, "counts": counts.tolist(),
                  "minority": imbalance.minority_classes(split.num_classes),
                  "largest": int(counts.max())}
