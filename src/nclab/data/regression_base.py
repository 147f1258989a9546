"""Regression data from arrays or a file: inputs x and real targets y, train and test.

The file format is a .npz with ``x`` (N, ...) and ``y`` (N, n) or (N,), and optionally
``x_test`` and ``y_test`` (other names: ``x_key``, ``y_key``, then ``{x_key}_test``,
``{y_key}_test``); a file without a test split is split at load time. Every
builder returns :class:`~nclab.data.base.DatasetSplits` with ``num_classes=None``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.io import load_npz
from nclab.core.validation import as_targets, ensure_finite
from nclab.data.base import DatasetSplits, targets_from_numpy
from nclab.data.npz import check_keys


def make_regression_data(
    x: Any, y: Any, x_test: Any = None, y_test: Any = None, *, name: str = "",
    test_fraction: float = 0.2, seed: int = 0, info: dict[str, Any] | None = None,
    keys: tuple[str, str, str, str] = ("x", "y", "x_test", "y_test"),
) -> DatasetSplits:
    """Validate arrays and build regression splits, splitting off a test set if none is given.

    Parameters
    ----------
    x : array (N, ...)
    y : array (N, n) or (N,)
    x_test, y_test : arrays, optional
        Both or neither. When absent, a seeded random ``test_fraction`` of the rows.
    name : str
    test_fraction, seed : float, int
    info : dict, optional
        How the data were made; kept in ``DatasetSplits.info``.
    keys : tuple of 4 str
        What messages call x, y, x_test and y_test (the names in a file).
    """
    x_name, y_name, x_test_name, y_test_name = keys
    x, y = _inputs(x, x_name, name), _targets(y, y_name, name)
    if len(x) != len(y):
        raise NCInputError(f"{name}: {x_name} has {len(x)} rows but {y_name} has {len(y)}")
    if (x_test is None) != (y_test is None):
        raise NCInputError(f"{name}: give both {x_test_name} and {y_test_name}, or neither")
    if x_test is None:
        if not 0 < test_fraction < 1:
            raise NCInputError(f"test_fraction must lie in (0, 1); got {test_fraction}")
        if len(x) < 2:
            raise NCInputError(f"{name}: need at least 2 samples to split off a test set")
        order = np.random.default_rng(seed).permutation(len(x))
        cut = min(max(int(round(len(x) * (1 - test_fraction))), 1), len(x) - 1)
        train, test = order[:cut], order[cut:]
        x, y, x_test, y_test = x[train], y[train], x[test], y[test]
    else:
        x_test, y_test = _inputs(x_test, x_test_name, name), _targets(y_test, y_test_name, name)
    if len(x) == 0:
        raise NCInputError(f"{name}: no training samples")
    if len(x_test) != len(y_test):
        raise NCInputError(f"{name} test: {len(x_test)} inputs but {len(y_test)} targets")
    return DatasetSplits(targets_from_numpy(x, y, name), targets_from_numpy(x_test, y_test, name),
                         info=dict(info or {}))


def load_regression(
    path: str | os.PathLike, test_fraction: float = 0.2, seed: int = 0,
    x_key: str = "x", y_key: str = "y",
) -> DatasetSplits:
    """Read a .npz with ``x_key`` and ``y_key`` (default ``x``, ``y``) and optionally
    ``{x_key}_test``, ``{y_key}_test``."""
    check_keys(x_key, y_key)
    keys = (x_key, y_key, f"{x_key}_test", f"{y_key}_test")
    arrays = load_npz(path, required=keys[:2])
    return make_regression_data(
        *(arrays.get(key) for key in keys), name=os.path.basename(os.fspath(path)),
        test_fraction=test_fraction, seed=seed, keys=keys,
    )


def npz_targets(root: Path, test_fraction: float = 0.2, seed: int = 0, x_key: str = "x",
                y_key: str = "y") -> DatasetSplits:
    """The ``npz_targets`` data set: :func:`load_regression` of the file ``root``."""
    return load_regression(root, test_fraction=test_fraction, seed=seed, x_key=x_key,
                           y_key=y_key)


def _inputs(x: Any, what: str, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 2 or not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise NCInputError(f"{name}: {what} must be a real array of shape (N, ...); "
                           f"got {x.dtype} {x.shape}")
    x = x.astype(np.float32)
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        raise NCInputError(f"{name}: {what} contains NaN or inf (first at row {int(bad.argmax())})")
    return x


def _targets(y: Any, what: str, name: str) -> np.ndarray:
    label = f"{name}: {what}"
    y = as_targets(y, name=label).to(torch.float32)  # finite after the cast: no overflow
    ensure_finite(y, label)
    return y.numpy()
