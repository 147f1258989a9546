"""Regression data held in memory: inputs x and real targets y, split into train and test.

The file format is a .npz with ``x`` (N, ...) and ``y`` (N, n) or (N,), and optionally
``x_test`` and ``y_test``; a file without a test split is split at load time.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nclab.core.errors import NCInputError
from nclab.core.io import load_npz, write_atomic


@dataclass(frozen=True)
class RegressionData:
    """Train and test samples of a regression task.

    Attributes
    ----------
    x, x_test : ndarray of shape (N, *input_shape), float32
    y, y_test : ndarray of shape (N, n), float32
    name : str
    info : dict
        How the data were made (sizes, seeds, returns of the policies, ...), JSON-ready.
    """

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for xs, ys, split in ((self.x, self.y, "train"), (self.x_test, self.y_test, "test")):
            if len(xs) != len(ys):
                raise NCInputError(f"{self.name} {split}: {len(xs)} inputs but {len(ys)} targets")
        if self.y.ndim != 2 or self.y_test.ndim != 2:
            raise NCInputError(f"{self.name}: targets must be 2-D (N, n)")
        if self.x.shape[1:] != self.x_test.shape[1:] or self.y.shape[1] != self.y_test.shape[1]:
            raise NCInputError(f"{self.name}: train and test shapes differ")

    @property
    def target_dim(self) -> int:
        """n, the number of target columns."""
        return self.y.shape[1]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def save(self, path: str | os.PathLike) -> None:
        """Write ``x, y, x_test, y_test`` to a .npz, atomically."""
        buffer = io.BytesIO()
        np.savez(buffer, x=self.x, y=self.y, x_test=self.x_test, y_test=self.y_test)
        write_atomic(path, buffer.getvalue())


def make_regression_data(
    x: Any, y: Any, x_test: Any = None, y_test: Any = None, *, name: str = "",
    test_fraction: float = 0.2, seed: int = 0, info: dict[str, Any] | None = None,
) -> RegressionData:
    """Validate arrays and build a RegressionData, splitting off a test set if none is given.

    Parameters
    ----------
    x : array (N, ...)
    y : array (N, n) or (N,)
    x_test, y_test : arrays, optional
        Both or neither. When absent, a seeded random ``test_fraction`` of the rows.
    """
    x, y = _inputs(x, "x", name), _targets(y, "y", name)
    if len(x) != len(y):
        raise NCInputError(f"{name}: x has {len(x)} rows but y has {len(y)}")
    if (x_test is None) != (y_test is None):
        raise NCInputError(f"{name}: give both x_test and y_test, or neither")
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
        x_test, y_test = _inputs(x_test, "x_test", name), _targets(y_test, "y_test", name)
    if len(x) == 0:
        raise NCInputError(f"{name}: no training samples")
    return RegressionData(x, y, x_test, y_test, name, dict(info or {}))


def load_regression(
    path: str | os.PathLike, test_fraction: float = 0.2, seed: int = 0
) -> RegressionData:
    """Read a .npz with ``x`` and ``y`` (and optionally ``x_test``, ``y_test``)."""
    arrays = load_npz(path, required=("x", "y"))
    return make_regression_data(
        arrays["x"], arrays["y"], arrays.get("x_test"), arrays.get("y_test"),
        name=os.path.basename(os.fspath(path)), test_fraction=test_fraction, seed=seed,
    )


def _inputs(x: Any, what: str, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 2 or not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise NCInputError(f"{name}: {what} must be a real array of shape (N, ...); "
                           f"got {x.dtype} {x.shape}")
    x = x.astype(np.float32)
    _finite(x, what, name)
    return x


def _targets(y: Any, what: str, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or not np.issubdtype(y.dtype, np.number) or np.iscomplexobj(y):
        raise NCInputError(f"{name}: {what} must be a real array of shape (N, n) or (N,); "
                           f"got {y.dtype} {y.shape}")
    y = y.astype(np.float32)
    _finite(y, what, name)
    return y


def _finite(a: np.ndarray, what: str, name: str) -> None:
    bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    if bad.any():
        raise NCInputError(f"{name}: {what} contains NaN or inf (first at row {int(bad.argmax())})")
