"""Synthetic regression: a random teacher network with a chosen target covariance.

Inputs x ~ N(0, I). A random ReLU MLP g gives raw outputs; an affine map A fixed on the
training set makes the targets y = A (g(x) - mean) + offset have *exactly* the requested
covariance there (empirical whitening followed by Sigma^(1/2)); the same map is applied to
the test inputs, so the teacher is one fixed function.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nclab.core.errors import NCInputError
from nclab.core.validation import check_memory
from nclab.data.base import DatasetSplits
from nclab.data.regression_base import make_regression_data


def teacher(
    num_samples: int = 1000,
    input_dim: int = 16,
    target_dim: int = 3,
    target_cov: Any = None,
    *,
    hidden: int = 64,
    depth: int = 2,
    noise: float = 0.0,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> DatasetSplits:
    """Samples of a random teacher network.

    Parameters
    ----------
    num_samples : int
        Train + test samples; ``test_fraction`` of them are the test set.
    input_dim : int
        Dimension of x.
    target_dim : int
        n, the number of targets.
    target_cov : array (n,) or (n, n), optional
        Covariance of the training targets: a full SPD matrix, or its eigenvalues (a
        diagonal covariance). Default: eigenvalues geometric from 1 down to 0.1.
    hidden, depth : int
        Width and number of hidden ReLU layers of the teacher.
    noise : float
        Standard deviation of Gaussian noise added to the targets after the map (so the
        training covariance becomes target_cov + noise^2 I in expectation).
    test_fraction : float
    seed : int

    Returns
    -------
    DatasetSplits
        Real targets (``num_classes`` None), with ``info`` holding the covariance
        actually imposed.
    """
    sizes = {"num_samples": num_samples, "input_dim": input_dim, "target_dim": target_dim,
             "hidden": hidden, "depth": depth}
    for key, value in sizes.items():
        if int(value) != value or value < 1:
            raise NCInputError(f"{key} must be an integer >= 1; got {value}")
    if not 0 < test_fraction < 1:
        raise NCInputError(f"test_fraction must lie in (0, 1); got {test_fraction}")
    if noise < 0:
        raise NCInputError(f"noise must be >= 0; got {noise}")
    # float64 inputs, two hidden layers at a time, the targets (raw, whitened, noisy)
    row = input_dim + 2 * hidden + 3 * target_dim
    check_memory(8 * (num_samples * row + hidden * (input_dim + depth * hidden)), "cpu",
                 f"teacher data of {num_samples} samples, input_dim {input_dim}, "
                 f"hidden {hidden}")
    sigma = _covariance(target_cov, target_dim)
    rng = np.random.default_rng(seed)
    num_test = max(1, int(round(num_samples * test_fraction)))
    num_train = num_samples - num_test
    if num_train <= target_dim:
        raise NCInputError(f"need more than n={target_dim} training samples to impose the "
                           f"target covariance; got {num_train}")
    x = rng.normal(size=(num_samples, input_dim))
    raw = _random_mlp(x, hidden, depth, target_dim, rng)
    mean = raw[:num_train].mean(axis=0)
    raw_cov = np.cov(raw[:num_train], rowvar=False, bias=True).reshape(target_dim, target_dim)
    whiten = _matrix_power(raw_cov, -0.5, "the teacher's raw outputs")
    y = (raw - mean) @ whiten @ _matrix_power(sigma, 0.5, "target_cov")
    y += noise * rng.normal(size=y.shape)
    info = {"task": "teacher", **sizes, "noise": noise, "seed": seed,
            "target_cov": sigma.tolist()}
    return make_regression_data(x[:num_train], y[:num_train], x[num_train:], y[num_train:],
                                name="teacher", info=info)


def _covariance(target_cov: Any, n: int) -> np.ndarray:
    if target_cov is None:
        return np.diag(np.geomspace(1.0, 0.1, n))
    cov = np.asarray(target_cov, dtype=np.float64)
    if cov.ndim == 1:
        cov = np.diag(cov)
    if cov.shape != (n, n):
        raise NCInputError(f"target_cov must have shape (n,) or (n, n) with n={n}; "
                           f"got {np.shape(target_cov)}")
    if not np.allclose(cov, cov.T) or np.linalg.eigvalsh((cov + cov.T) / 2)[0] < 0:
        raise NCInputError("target_cov must be symmetric positive semi-definite")
    return (cov + cov.T) / 2


def _random_mlp(
    x: np.ndarray, hidden: int, depth: int, out: int, rng: np.random.Generator
) -> np.ndarray:
    """A ReLU MLP with He-initialized random weights and small random biases."""
    h = x
    for _ in range(depth):
        w = rng.normal(scale=np.sqrt(2 / h.shape[1]), size=(h.shape[1], hidden))
        h = np.maximum(h @ w + 0.1 * rng.normal(size=hidden), 0)
    return h @ rng.normal(scale=np.sqrt(1 / hidden), size=(hidden, out))


def _matrix_power(matrix: np.ndarray, power: float, what: str) -> np.ndarray:
    eigenvalues, vectors = np.linalg.eigh(matrix)
    if power < 0 and eigenvalues[0] <= 1e-12 * eigenvalues[-1]:
        raise NCInputError(f"{what} have singular covariance: increase hidden or depth")
    return (vectors * np.clip(eigenvalues, 0, None) ** power) @ vectors.T
