"""Any classification set saved by ``numpy.savez`` (``npz_labels``): the escape hatch.

The file holds either ``x_train``, ``y_train``, ``x_test``, ``y_test`` or just ``x`` and
``y`` (then split at random under a seed), and optionally ``class_names`` (1-D strings).
Other names are given by ``x_key`` and ``y_key`` (the split arrays are then
``{x_key}_train``, ...). It is read with ``allow_pickle=False``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nclab.core.errors import NCInputError
from nclab.core.io import load_npz
from nclab.core.validation import class_limit
from nclab.data.base import DatasetSplits, from_numpy
from nclab.data.files import to_unit_float

CHANNELS = ("first", "last", "none")


def _samples(path: Path, key: str, x: np.ndarray, channels: str) -> np.ndarray:
    """``x`` as float32 with channels first; integer pixels 0..255 are divided by 255."""
    if x.ndim < 2 or (channels == "last" and x.ndim < 3):
        raise NCInputError(
            f"{path}: {key} has shape {x.shape}; expected (N, ...)"
            + (" with channels last, at least 3 axes" if channels == "last" else "")
        )
    if x.dtype == np.bool_:
        x = x.astype(np.float32)
    elif np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 255):
            raise NCInputError(
                f"{path}: {key} holds integers outside 0..255; save 8-bit pixels as uint8 "
                "or samples as floats"
            )
        x = to_unit_float(x)
    elif np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise NCInputError(f"{path}: {key} holds NaN or infinite values")
        peak = float(np.abs(x).max()) if x.size else 0.0
        if peak > float(np.finfo(np.float32).max):
            raise NCInputError(f"{path}: {key} reaches {peak:.3g}, beyond the float32 range "
                               "the models train in; rescale the samples")
        x = x.astype(np.float32)  # floats are taken as they are: they may be features
    elif np.issubdtype(x.dtype, np.complexfloating):
        raise NCInputError(f"{path}: {key} holds complex numbers ({x.dtype}); save real "
                           "samples (for example the real and imaginary parts as channels)")
    else:
        raise NCInputError(f"{path}: {key} has type {x.dtype}; expected numbers")
    if channels == "last":
        x = np.moveaxis(x, -1, 1)
    elif channels == "none":
        x = x[:, None]
    return x


def _labels(path: Path, key: str, y: np.ndarray, count: int) -> np.ndarray:
    if y.size != count or (y.ndim == 2 and y.shape[1] != 1) or y.ndim > 2:
        raise NCInputError(f"{path}: {key} has shape {y.shape}; expected ({count},)")
    if not np.issubdtype(y.dtype, np.integer):
        raise NCInputError(f"{path}: {key} has type {y.dtype}; expected integer labels")
    y = y.reshape(-1)
    # compared in the stored dtype: a cast first would wrap uint64 labels >= 2**63
    if y.size and y.min() < 0:
        raise NCInputError(f"{path}: {key} holds negative labels")
    if y.size and int(y.max()) > np.iinfo(np.int64).max:
        raise NCInputError(f"{path}: {key} holds label {int(y.max())}, beyond 64-bit integers")
    return y.astype(np.int64)


def _class_names(path: Path, names: np.ndarray) -> tuple[str, ...]:
    if names.ndim > 1:
        raise NCInputError(f"{path}: class_names has shape {names.shape}; expected 1-D")
    return tuple(str(n) for n in np.atleast_1d(names).tolist())


def check_keys(x_key: str, y_key: str) -> None:
    """Refuse array names that are not two different non-empty strings."""
    for option, key in (("x_key", x_key), ("y_key", y_key)):
        if not isinstance(key, str) or not key:
            raise NCInputError(f"npz: {option} must be an array name; got {key!r}")
    if x_key == y_key:
        raise NCInputError(f"npz: x_key and y_key must differ; both are '{x_key}'")


def split_keys(x_key: str = "x", y_key: str = "y") -> tuple[str, str, str, str]:
    """The names of the stored splits: ``x_train``, ``y_train``, ``x_test``, ``y_test``
    for the default keys."""
    check_keys(x_key, y_key)
    return f"{x_key}_train", f"{y_key}_train", f"{x_key}_test", f"{y_key}_test"


def _split_arrays(
    path: Path, arrays: dict[str, np.ndarray], test_fraction: float, seed: int,
    x_key: str, y_key: str,
) -> dict[str, tuple[str, np.ndarray]]:
    """train/test x/y -> (the key it was read under, the array): as stored, or drawn at
    random from ``x_key`` and ``y_key``."""
    stored = split_keys(x_key, y_key)
    roles = ("x_train", "y_train", "x_test", "y_test")
    present = [k for k in stored if k in arrays]
    if present:
        missing = [k for k in stored if k not in arrays]
        if missing:
            raise NCInputError(f"{path} has {', '.join(present)} but lacks {', '.join(missing)}")
        return {role: (key, arrays[key]) for role, key in zip(roles, stored, strict=True)}
    if x_key not in arrays or y_key not in arrays:
        raise NCInputError(
            f"{path}: expected arrays {', '.join(stored)}, or {x_key} and {y_key}; found "
            f"{', '.join(sorted(arrays)) or 'nothing'}"
        )
    if not 0 < test_fraction < 1:
        raise NCInputError(f"npz: test_fraction must lie in (0, 1); got {test_fraction}")
    x, y = arrays[x_key], arrays[y_key]
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y) or len(x) < 2:
        raise NCInputError(
            f"{path}: {x_key} has shape {x.shape} and {y_key} {y.shape}; expected N >= 2 "
            "samples and N labels"
        )
    order = np.random.default_rng(seed).permutation(len(x))
    cut = len(x) - max(1, round(len(x) * test_fraction))
    train, test = order[:cut], order[cut:]
    return {"x_train": (x_key, x[train]), "y_train": (y_key, y[train]),
            "x_test": (x_key, x[test]), "y_test": (y_key, y[test])}


def npz_labels(
    root: Path, channels: str = "first", test_fraction: float = 0.2, seed: int = 0,
    x_key: str = "x", y_key: str = "y",
) -> DatasetSplits:
    """A classification set from one ``.npz`` file (``root`` is the file itself).

    Parameters
    ----------
    root : Path
        The ``.npz`` file.
    channels : {"first", "last", "none"}
        How samples are stored: ``(N, C, ...)`` (kept), ``(N, ..., C)`` (moved to
        ``(N, C, ...)``), or ``(N, ...)`` without a channel axis (given one: ``(N, 1, ...)``).
    test_fraction, seed : float, int
        Used only when the file holds ``x`` and ``y``: the share of samples drawn for the
        test split, and the seed of that draw.
    x_key, y_key : str
        The names of the samples and the labels in the file: ``x_key``/``y_key``, or the
        splits ``{x_key}_train``, ``{y_key}_train``, ``{x_key}_test``, ``{y_key}_test``.

    Integer samples must be 8-bit pixels (0..255) and are divided by 255; float samples
    are kept as they are. Labels are integers >= 0; the number of classes is one more
    than the largest label, or the length of ``class_names`` when the file has it.
    """
    if channels not in CHANNELS:
        raise NCInputError(f"npz: channels must be one of {', '.join(CHANNELS)}; got {channels!r}")
    if root.is_dir():
        found = ", ".join(sorted(p.name for p in root.glob("*.npz"))) or "no .npz file"
        raise NCInputError(f"npz: {root} is a folder ({found}); give the .npz file itself")
    arrays = load_npz(root)
    split = _split_arrays(root, arrays, test_fraction, seed, x_key, y_key)
    x_train = _samples(root, *split["x_train"], channels)
    x_test = _samples(root, *split["x_test"], channels)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise NCInputError(
            f"{root}: train samples have shape {x_train.shape[1:]}, test samples "
            f"{x_test.shape[1:]}"
        )
    y_train = _labels(root, *split["y_train"], len(x_train))
    y_test = _labels(root, *split["y_test"], len(x_test))
    num_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    names = None if "class_names" not in arrays else _class_names(root, arrays["class_names"])
    samples = len(y_train) + len(y_test)
    if names is None and num_classes > class_limit(samples):
        raise NCInputError(
            f"{root}: labels reach {num_classes - 1}, that is {num_classes} classes for "
            f"{samples} samples; if so many classes are meant, list them in class_names"
        )
    if names is not None:
        if len(names) < num_classes:
            raise NCInputError(
                f"{root}: class_names lists {len(names)} names but labels reach "
                f"{num_classes - 1}"
            )
        num_classes = len(names)
    return DatasetSplits(
        from_numpy(x_train, y_train, "npz", num_classes, names),
        from_numpy(x_test, y_test, "npz", num_classes, names),
    )
