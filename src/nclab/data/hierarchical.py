"""Hierarchical Gaussian mixtures: superclasses made of sub-clusters (fine classes).

The setting where the answer to fine-label recovery (definitions §6) is known: the fine
classes are recoverable from the inputs exactly as far as the sub-clusters of a
superclass are separated, which ``fine_separation`` sets.
"""

from __future__ import annotations

import numpy as np

from nclab.core.errors import NCInputError
from nclab.core.validation import check_memory
from nclab.data.base import DatasetSplits, from_numpy
from nclab.data.synthetic import GAUSSIAN_COPIES

__all__ = ["hierarchical", "hierarchical_coarse_map"]


def hierarchical(
    num_coarse: int = 5, fine_per_coarse: int = 2, dim: int = 32, train_per_class: int = 200,
    test_per_class: int = 100, coarse_separation: float = 12.0, fine_separation: float = 6.0,
    noise: float = 1.0, seed: int = 0,
) -> DatasetSplits:
    """Gaussian sub-clusters grouped around superclass centres; labels are the FINE classes.

    Fine class ``y`` (0..K-1, K = ``num_coarse * fine_per_coarse``) belongs to superclass
    ``y mod num_coarse``, so the coarse map is the ``mod`` pairing
    (``hierarchical_coarse_map``).

    The superclass centres are the vertices of a randomly rotated regular simplex with
    edge ``coarse_separation``; the sub-cluster means of each superclass are the vertices
    of another randomly rotated regular simplex with edge ``fine_separation``, centred on
    its superclass centre. So any two superclass centres are exactly
    ``coarse_separation`` apart and any two sub-cluster means of one superclass exactly
    ``fine_separation`` apart. Samples add isotropic Gaussian noise of standard deviation
    ``noise`` per dimension. ``fine_separation=0`` makes the sub-clusters of a superclass
    the same distribution: no method can tell them apart (chance level).

    Returns
    -------
    DatasetSplits
        Train (``train_per_class`` per fine class) and test (``test_per_class``) splits, inputs
        of shape (dim,), ``num_classes = K``, class names ``"<superclass>.<sub-cluster>"``.
    """
    _check(num_coarse, fine_per_coarse, dim, train_per_class, test_per_class,
           coarse_separation, fine_separation, noise)
    if dim < max(num_coarse, fine_per_coarse):
        raise NCInputError(f"dim must be >= num_coarse and >= fine_per_coarse to place the "
                           f"simplices; got dim={dim}")
    num_fine = num_coarse * fine_per_coarse
    rows = num_fine * (train_per_class + test_per_class)
    simplices = num_coarse**2 + fine_per_coarse**2 + dim * (num_coarse + fine_per_coarse)
    check_memory(8 * (dim * (num_fine + GAUSSIAN_COPIES * rows) + simplices), "cpu",
                 f"hierarchical data of {rows} samples in {dim} dimensions")
    rng = np.random.default_rng(seed)
    centres = _simplex(rng, num_coarse, dim, coarse_separation)
    means = np.empty((num_fine, dim))
    for s in range(num_coarse):
        means[s::num_coarse] = centres[s] + _simplex(rng, fine_per_coarse, dim, fine_separation)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(num_fine), n)
        return means[y] + noise * rng.normal(size=(len(y), dim)), y

    names = tuple(f"{y % num_coarse}.{y // num_coarse}" for y in range(num_fine))
    return DatasetSplits(
        from_numpy(*draw(train_per_class), "hierarchical", num_fine, names),
        from_numpy(*draw(test_per_class), "hierarchical", num_fine, names),
    )


def hierarchical_coarse_map(num_coarse: int = 5, fine_per_coarse: int = 2) -> np.ndarray:
    """The superclass of each fine class of ``hierarchical``: array (K,), ``y mod num_coarse``."""
    return np.arange(num_coarse * fine_per_coarse, dtype=np.int64) % num_coarse


def _simplex(rng: np.random.Generator, count: int, dim: int, edge: float) -> np.ndarray:
    """``count`` points in R^dim, centred at 0, every pair exactly ``edge`` apart."""
    basis, _ = np.linalg.qr(rng.normal(size=(dim, count)))  # random orthonormal columns
    centred = np.eye(count) - 1.0 / count  # rows e_i - mean: pairwise distance sqrt(2)
    return centred @ basis.T * (edge / np.sqrt(2))


def _check(num_coarse: int, fine_per_coarse: int, dim: int, train_per_class: int,
           test_per_class: int, coarse_separation: float, fine_separation: float,
           noise: float) -> None:
    for name, value, low in (("num_coarse", num_coarse, 1), ("fine_per_coarse", fine_per_coarse, 1),
                             ("dim", dim, 1), ("train_per_class", train_per_class, 1),
                             ("test_per_class", test_per_class, 0)):
        if int(value) != value or value < low:
            raise NCInputError(f"{name} must be an integer >= {low}; got {value}")
    for name, value in (("coarse_separation", coarse_separation),
                        ("fine_separation", fine_separation), ("noise", noise)):
        if not np.isfinite(value) or value < 0:
            raise NCInputError(f"{name} must be finite and >= 0; got {value}")
