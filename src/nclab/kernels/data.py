"""Gaussian data models for the kernel analysis (definitions §3).

``d1(d0)`` is D1 (definitions §3): class 0 ~ N(-2*1, 0.25 I), class 1 ~ N(+2*1, 0.25 I), whose
population NC1 is 1/16 in every dimension. ``separated_classes`` is the family around
it with the class separation and the within-class spread as free parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nclab.core.errors import NCInputError


@dataclass(frozen=True)
class GaussianClasses:
    """Isotropic Gaussian classes: class c ~ N(means[c], std^2 I).

    Attributes
    ----------
    means : ndarray of shape (C, d0)
    std : float
        Within-class standard deviation per coordinate.
    name : str
    """

    means: np.ndarray
    std: float
    name: str = "gaussian"

    @property
    def num_classes(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(
        self, class_sizes: int | Sequence[int], rng: int | np.random.Generator = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw a labelled sample, ordered by class.

        Parameters
        ----------
        class_sizes : int or sequence of int
            Samples per class; an int N splits N evenly (it must be divisible by C).
        rng : int or numpy Generator

        Returns
        -------
        x : ndarray of shape (N, d0), float64
        labels : ndarray of shape (N,), int64
        """
        sizes = self.class_sizes(class_sizes)
        rng = np.random.default_rng(rng)
        labels = np.repeat(np.arange(self.num_classes), sizes)
        x = self.means[labels] + self.std * rng.standard_normal((len(labels), self.dim))
        return x, labels

    def class_sizes(self, class_sizes: int | Sequence[int]) -> np.ndarray:
        """``class_sizes`` as C positive ints (an int N is split evenly)."""
        if np.ndim(class_sizes) == 0:
            total = int(class_sizes)
            if total < self.num_classes or total % self.num_classes:
                raise NCInputError(f"N={total} does not split into {self.num_classes} equal "
                                   "classes; give the class sizes")
            return np.full(self.num_classes, total // self.num_classes)
        sizes = np.asarray(class_sizes, dtype=np.int64)
        if sizes.shape != (self.num_classes,) or (sizes < 1).any():
            raise NCInputError(f"class sizes must be {self.num_classes} positive ints; "
                               f"got {list(np.atleast_1d(class_sizes))}")
        return sizes

    def population_nc1(self) -> float:
        """Tr Sigma_W / Tr Sigma_B of the distribution (global mean = mean of class means)."""
        centred = self.means - self.means.mean(axis=0)
        return self.dim * self.std**2 / float((centred**2).sum() / self.num_classes)


def d1(d0: int, mean: float = 2.0, std: float = 0.5) -> GaussianClasses:
    """D1 (definitions §3): N(-mean*1, std^2 I) and N(+mean*1, std^2 I); mean 2, std 0.5."""
    d0 = _dimension(d0)
    if not (np.isfinite(mean) and mean != 0 and np.isfinite(std) and std >= 0):
        raise NCInputError(f"D1 needs mean != 0 and std >= 0; got mean={mean}, std={std}")
    means = np.stack([np.full(d0, -float(mean)), np.full(d0, float(mean))])
    return GaussianClasses(means, float(std), "d1")


def separated_classes(
    d0: int, num_classes: int = 2, separation: float = 4.0, std: float = 0.5
) -> GaussianClasses:
    """C isotropic Gaussian classes whose means form a regular simplex.

    Every pair of means is ``separation`` apart; the population NC1 is
    d0 std^2 / (separation^2 (C-1) / (2C)), so separation and spread set it directly.
    Two classes lie along the diagonal 1/sqrt(d0) (so ``separation = 4 sqrt(d0)`` with
    ``std = 0.5`` is D1); more classes need d0 >= C and use the first C coordinates.
    """
    d0 = _dimension(d0)
    if num_classes < 2:
        raise NCInputError(f"num_classes must be >= 2; got {num_classes}")
    if not (np.isfinite(separation) and separation > 0 and np.isfinite(std) and std >= 0):
        raise NCInputError(f"need separation > 0 and std >= 0; got {separation}, {std}")
    if num_classes == 2:
        direction = np.full(d0, 1.0 / np.sqrt(d0))
        means = np.stack([-direction, direction]) * separation / 2
    else:
        if d0 < num_classes:
            raise NCInputError(f"{num_classes} simplex classes need d0 >= {num_classes}; "
                               f"got d0={d0}")
        corners = np.eye(num_classes) - 1.0 / num_classes
        means = np.zeros((num_classes, d0))
        means[:, :num_classes] = corners * separation / np.sqrt(2)
    return GaussianClasses(means, float(std), f"separated(C={num_classes})")


def class_targets(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Regression targets of the labels: +-1 for two classes (class 1 -> +1), one-hot else.

    Returns
    -------
    ndarray of shape (N,) for two classes, (N, C) otherwise; float64.
    """
    labels = np.asarray(labels)
    if num_classes == 2:
        return np.where(labels == 1, 1.0, -1.0)
    return np.eye(num_classes)[labels]


def _dimension(d0: int) -> int:
    if int(d0) != d0 or d0 < 1:
        raise NCInputError(f"d0 must be a positive integer; got {d0}")
    return int(d0)
