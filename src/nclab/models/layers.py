"""Dimension-generic building blocks: the same network code serves 1-D and 2-D inputs.

An input of shape (channels, length) gets Conv1d / BatchNorm1d / pooling over one axis,
an input of shape (channels, height, width) the 2-D versions.
"""

from __future__ import annotations

import math

from torch import nn

from nclab.core.errors import NCInputError

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
_MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d}
_AVGPOOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d}
_GLOBAL_POOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}


def spatial_dims(input_shape: tuple[int, ...], model: str) -> int:
    """Number of spatial axes (1 or 2) of a (channels, *spatial) input shape."""
    if len(input_shape) not in (2, 3):
        raise NCInputError(
            f"model '{model}' needs inputs of shape (channels, length) or "
            f"(channels, height, width); got {tuple(input_shape)}"
        )
    return len(input_shape) - 1


def conv(dims: int, c_in: int, c_out: int, kernel: int = 3, stride: int = 1,
         padding: int | None = None) -> nn.Module:
    pad = kernel // 2 if padding is None else padding
    return _CONV[dims](c_in, c_out, kernel, stride=stride, padding=pad, bias=False)


def batch_norm(dims: int, channels: int) -> nn.Module:
    return _NORM[dims](channels)


def max_pool(dims: int) -> nn.Module:
    return _MAXPOOL[dims](2)


def avg_pool(dims: int) -> nn.Module:
    return _AVGPOOL[dims](2)


def global_pool(dims: int) -> nn.Module:
    """Average over every spatial position, then flatten: (n, c, *spatial) -> (n, c)."""
    return nn.Sequential(_GLOBAL_POOL[dims](1), nn.Flatten())


def halvings(input_shape: tuple[int, ...]) -> int:
    """How many times the smallest spatial side can be halved before reaching 1."""
    return int(math.log2(max(1, min(input_shape[1:]))))


def scaled(channels: int, multiplier: float) -> int:
    """``channels`` times a width multiplier, at least 1."""
    if multiplier <= 0:
        raise NCInputError(f"width multiplier must be > 0; got {multiplier}")
    return max(1, round(channels * multiplier))
