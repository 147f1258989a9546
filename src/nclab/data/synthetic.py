"""Data sets made on the machine: MNIST-1D, scikit-learn's bundled digits and wine,
Gaussian mixtures."""

from __future__ import annotations

import numpy as np

from nclab.core.errors import NCInputError
from nclab.core.validation import check_memory, check_scalar, positive_int
from nclab.data.base import DatasetSplits, from_numpy

#: Bytes per MNIST-1D sample while ``mnist1d`` makes them: a Python list of small float64
#: arrays (40 values and an object header each), then two stacked copies.
MNIST1D_SAMPLE_BYTES = 1024
#: float64 copies of every sample that ``gaussian`` holds at once: the class means of each
#: row, the noise, their sum, and the float32 tensor made from it.
GAUSSIAN_COPIES = 4


def mnist1d(num_samples: int = 5000, seed: int = 42, train_split: float = 0.8) -> DatasetSplits:
    """MNIST-1D (Greydanus 2020), generated locally by the ``mnist1d`` package.

    Samples are (1, 40) sequences; 10 classes. Nothing is downloaded.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    # fewer than 10 samples leave a class empty; mnist1d makes them one at a time
    num_samples = check_scalar(num_samples, "mnist1d num_samples", int, min_val=10)
    check_memory(MNIST1D_SAMPLE_BYTES * num_samples, "cpu",
                 f"mnist1d num_samples={num_samples}")
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
    train, test = _random_split(len(x), test_fraction, seed)
    names = tuple(str(i) for i in range(10))
    return DatasetSplits(
        from_numpy(x[train], bunch.target[train], "digits", 10, names),
        from_numpy(x[test], bunch.target[test], "digits", 10, names),
    )


def wine(test_fraction: float = 0.2, seed: int = 0, standardize: bool = True) -> DatasetSplits:
    """scikit-learn's bundled wine recognition data: 178 wines, 13 chemical measurements,
    3 cultivars. Samples have shape (13,).

    With ``standardize`` each measurement is scaled by the mean and the standard
    deviation of the training split (the raw columns range from about 0.1 to 1,700,
    which would let proline alone set the features' scale).
    """
    from sklearn.datasets import load_wine

    bunch = load_wine()
    train, test = _random_split(len(bunch.data), test_fraction, seed)
    x_train, x_test = bunch.data[train], bunch.data[test]
    if standardize:
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    names = tuple(str(name) for name in bunch.target_names)
    return DatasetSplits(
        from_numpy(x_train, bunch.target[train], "wine", 3, names),
        from_numpy(x_test, bunch.target[test], "wine", 3, names),
    )


def _random_split(count: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded random train / test split; the test part is the last
    ``count - int(count * (1 - test_fraction))`` of a permutation."""
    order = np.random.default_rng(seed).permutation(count)
    cut = int(count * (1 - test_fraction))
    return order[:cut], order[cut:]


def gaussian(
    num_classes: int = 10, dim: int = 32, train_per_class: int = 200, test_per_class: int = 100,
    separation: float = 3.0, noise: float = 1.0, seed: int = 0,
) -> DatasetSplits:
    """A mixture of isotropic Gaussians with random means at distance ~``separation``.

    Class means are ``separation / sqrt(2)`` times random unit vectors (so two means are
    about ``separation`` apart); within-class standard deviation ``noise`` per dimension.
    """
    for name, value in (("num_classes", num_classes), ("dim", dim),
                        ("train_per_class", train_per_class), ("test_per_class", test_per_class)):
        positive_int(value, f"gaussian {name}")
    rows = num_classes * (train_per_class + test_per_class)
    check_memory(8 * dim * (num_classes + GAUSSIAN_COPIES * rows), "cpu",
                 f"gaussian data of {rows} samples in {dim} dimensions")
    if not (np.isfinite(separation) and np.isfinite(noise) and noise >= 0):
        raise NCInputError(f"gaussian separation must be finite and noise finite and >= 0; "
                           f"got {separation}, {noise}")
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
