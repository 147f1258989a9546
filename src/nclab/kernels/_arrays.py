"""Array plumbing shared by the kernel modules: numpy or torch in, the same kind out."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from nclab.core.errors import NCInputError


def as_inputs(x: Any, name: str = "x") -> tuple[torch.Tensor, bool]:
    """Return ``x`` as a finite 2-D float64 tensor and whether it came as a numpy array.

    numpy float64 arrays are wrapped without a copy; anything else is converted.
    """
    is_numpy = not torch.is_tensor(x)
    t = torch.from_numpy(np.asarray(x)) if is_numpy else x.detach()
    if t.ndim != 2:
        raise NCInputError(f"{name} must be 2-D (N x d0); got shape {tuple(t.shape)}")
    if t.is_complex() or t.dtype == torch.bool:
        raise NCInputError(f"{name} must be real numbers; got dtype {t.dtype}")
    t = t.to(torch.float64)
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise NCInputError(f"{name} is empty: shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).any(dim=1).nonzero()[0, 0])
        raise NCInputError(f"{name} contains NaN or inf (first at row {bad})")
    return t, is_numpy


def as_square(k: Any, name: str = "K") -> torch.Tensor:
    """Return a Gram matrix as a finite, square float64 tensor."""
    t = torch.from_numpy(np.asarray(k)) if not torch.is_tensor(k) else k.detach()
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise NCInputError(f"{name} must be a square N x N matrix; got shape {tuple(t.shape)}")
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise NCInputError(f"{name} contains NaN or inf")
    return t


def like_input(t: torch.Tensor, as_numpy: bool) -> np.ndarray | torch.Tensor:
    """Hand ``t`` back as the kind of array the caller gave."""
    return t.cpu().numpy() if as_numpy else t


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with at most ``count`` torch intra-op threads, then restore.

    Factorizations of a few hundred rows gain nothing from threads, and on a busy
    machine the synchronization makes them several times slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(count, before)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
