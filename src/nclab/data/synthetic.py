"""Data sets made on the machine: MNIST-1D, scikit-learn's digits, Gaussian mixtures."""

from __future__ import annotations

import numpy as np

from nclab.data.base import DatasetSplits, from_numpy


def mnist1d(num_samples: int = 5000, seed: int = 42, train_split: float = 0.8) -> DatasetSplits:
    """MNIST-1D (Greydanus 2020), generated locally by the ``mnist1d`` package.

    Samples are (1, 40) sequences; 10 classes. Nothing is downloaded.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = num_samples, seed, train_split
    state = np.random.get_state()  # make_dataset reseeds numpy's global generator
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    names = tuple(str(i) for i in range(10))
    return DatasetSplits(
        from_numpy(data["x"][:, None, :], data["y"], "mnist1d", 10, names),
        from_numpy(data["x_test"][:, None, :], data["y_test"], "mnist1d", 10, names),
    )


def digits(test_fraction: float = 0.2, seed: int = 0) -> DatasetSplits:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes), as (1, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0)[:, None].astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(len(x) * (1 - test_fraction))
    names = tuple(str(i) for i in range(10))
    train, test = order[:cut], order[cut:]
    return DatasetSplits(
        from_numpy(x[train], bunch.target[train], "digits", 10, names),
        from_numpy(x[test], bunch.target[test], "digits", 10, names),
    )


def gaussian(
    num_classes: int = 10, dim: int = 32, train_per_class: int = 200, test_per_class: int = 100,
    separation: float = 3.0, noise: float = 1.0, seed: int = 0,
) -> DatasetSplits:
    """A mixture of isotropic Gaussians with random means at distance ~``separation``.

    Class means are ``separation / sqrt(2)`` times random unit vectors (so two means are
    about ``separation`` apart); within-class standard deviation ``noise`` per dimension.
    """
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(num_classes, dim))
    means *= separation / np.sqrt(2) / np.linalg.norm(means, axis=1, keepdims=True)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(num_classes), n)
        return means[y] + noise * rng.normal(size=(len(y), dim)), y

    return DatasetSplits(
        from_numpy(*draw(train_per_class), "gaussian", num_classes),
        from_numpy(*draw(test_per_class), "gaussian", num_classes),
    )
