"""Checks at the boundary of the public API: everything inside trusts its inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nclab.core.errors import NCInputError

_HALF_TYPES = (torch.float16, torch.bfloat16)


def as_features(features: Any, name: str = "features", check_finite: bool = True) -> torch.Tensor:
    """Return ``features`` as a 2-D floating tensor on its own device.

    numpy arrays become CPU tensors without a copy; half-precision inputs are promoted to
    float32, because a Gram matrix accumulated in 8 mantissa bits is meaningless.
    """
    x = torch.from_numpy(np.asarray(features)) if not torch.is_tensor(features) else features
    if x.ndim != 2:
        raise NCInputError(f"{name} must be 2-D (N x d); got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        x = x.to(torch.float64)
    elif x.dtype in _HALF_TYPES:
        x = x.to(torch.float32)
    x = x.detach()
    if check_finite:
        ensure_finite(x, name)
    return x


def ensure_finite(x: torch.Tensor, name: str = "features") -> None:
    """Raise NCInputError naming the first row of ``x`` that holds NaN or inf."""
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(dim=1).nonzero()[0, 0])
        raise NCInputError(f"{name} contain NaN or inf (first at row {bad})")


def as_labels(labels: Any, num_samples: int, num_classes: int | None) -> torch.Tensor:
    """Return ``labels`` as a 1-D int64 tensor, checked against ``num_classes``.

    Float labels are accepted when every value is a whole number.
    """
    y = torch.from_numpy(np.asarray(labels)) if not torch.is_tensor(labels) else labels.detach()
    if y.ndim != 1:
        raise NCInputError(f"labels must be 1-D; got shape {tuple(y.shape)}")
    if y.shape[0] != num_samples:
        raise NCInputError(f"labels has {y.shape[0]} entries but features has {num_samples} rows")
    if y.dtype == torch.bool or y.is_complex():
        raise NCInputError(f"labels must be integers; got dtype {y.dtype}")
    if torch.is_floating_point(y):
        fractional = ~torch.isfinite(y) | (y != torch.round(y))
        if bool(fractional.any()):
            value = y[fractional.nonzero()[0, 0]].item()
            raise NCInputError(f"labels must be integers; found {value}")
    y = y.to(torch.int64)
    if num_samples and int(y.min()) < 0:
        raise NCInputError(f"labels must be >= 0; found {int(y.min())}")
    if num_classes is not None and num_samples and int(y.max()) >= num_classes:
        raise NCInputError(
            f"label {int(y.max())} is out of range for num_classes={num_classes} "
            f"(labels must lie in 0..{num_classes - 1})"
        )
    return y


def as_classifier(
    weight: Any, bias: Any, num_classes: int, dim: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Return (W, b) as float64 numpy arrays of shapes (C, d) and (C,), or None."""
    if weight is None:
        if bias is not None:
            raise NCInputError("bias given without weight")
        return None, None
    w = to_numpy64(weight)
    if w.shape != (num_classes, dim):
        raise NCInputError(
            f"weight must have shape (C, d) = ({num_classes}, {dim}); got {w.shape}"
        )
    if not np.isfinite(w).all():
        raise NCInputError("weight contains NaN or inf")
    if bias is None:
        return w, None
    b = to_numpy64(bias)
    if b.shape != (num_classes,):
        raise NCInputError(f"bias must have shape (C,) = ({num_classes},); got {b.shape}")
    if not np.isfinite(b).all():
        raise NCInputError("bias contains NaN or inf")
    return w, b


def to_numpy64(x: Any) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def as_targets(targets: Any, num_samples: int | None = None, name: str = "targets",
               check_finite: bool = False) -> torch.Tensor:
    """Return regression ``targets`` as a 2-D floating tensor (M, n) on its own device.

    A 1-D input (M,) is one target column (n = 1). numpy arrays become CPU tensors
    without a copy; integers are promoted to float64 and half precision to float32 (as
    :func:`as_features` does). With ``num_samples`` the number of rows M must equal it;
    with ``check_finite`` a NaN or inf is refused, naming its first row.
    """
    if not torch.is_tensor(targets):
        array = np.asarray(targets)
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise NCInputError(f"{name} must be real numbers; got dtype {array.dtype}")
        targets = torch.from_numpy(array)
    y = targets.detach()
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise NCInputError(f"{name} must be 1-D or 2-D (M x n); got shape {tuple(y.shape)}")
    if num_samples is not None and y.shape[0] != num_samples:
        raise NCInputError(f"{name} has {y.shape[0]} rows but features has {num_samples}")
    if y.dtype == torch.bool or y.is_complex():
        raise NCInputError(f"{name} must be real numbers; got dtype {y.dtype}")
    if not torch.is_floating_point(y):
        y = y.to(torch.float64)
    elif y.dtype in _HALF_TYPES:
        y = y.to(torch.float32)
    if check_finite:
        ensure_finite(y, name)
    return y
