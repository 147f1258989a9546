"""A small 1-D convolutional network suited to MNIST-1D's (1, 40) sequences."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from nclab.core.errors import NCInputError
from nclab.models import layers
from nclab.models.base import Network

_POOLS = {"flatten": None, "max": nn.AdaptiveMaxPool1d, "mean": nn.AdaptiveAvgPool1d}


def cnn1d(
    input_shape: tuple[int, ...],
    num_classes: int,
    channels: Sequence[int] = (32, 64, 64),
    hidden: int = 256,
    batch_norm: bool = True,
    pool: str = "flatten",
) -> Network:
    """Strided 1-D convolutions, then one hidden fully connected layer.

    Each convolution (kernel 5 for the first, 3 after) halves the length while it is at
    least 2; the flattened maps feed a ReLU layer of width ``hidden`` whose output is the
    feature h. Keeping position information (flatten rather than global pooling) matters
    on MNIST-1D, whose digits are placed at random offsets but keep their shape.

    ``pool="max"`` or ``"mean"`` replaces the flattening by a global max / average over
    positions: features that do not depend on where the pattern sits. A network trained
    on merged classes then keeps more of the fine classes apart (docs/finegrained.md).

    ``hidden=0`` drops the fully connected layer: the feature h is then the (pooled or
    flattened) output of the last convolution, of width ``channels[-1]`` (times the
    remaining length when flattened).
    """
    if pool not in _POOLS:
        raise NCInputError(f"cnn1d pool must be one of {', '.join(_POOLS)}; got '{pool}'")
    if int(hidden) < 0:
        raise NCInputError(f"cnn1d hidden must be >= 0 (0: no hidden layer); got {hidden}")
    if len(input_shape) != 2:
        raise NCInputError(
            f"model 'cnn1d' needs inputs of shape (channels, length); got {tuple(input_shape)}"
        )
    body: list[nn.Module] = []
    c_in, length = input_shape
    for i, c_out in enumerate(int(c) for c in channels):
        stride = 2 if length >= 2 else 1
        body.append(layers.conv(1, c_in, c_out, kernel=5 if i == 0 else 3, stride=stride))
        if batch_norm:
            body.append(layers.batch_norm(1, c_out))
        body.append(nn.ReLU())
        c_in, length = c_out, (length + stride - 1) // stride
    if pool != "flatten":
        body.append(_POOLS[pool](1))
        length = 1
    body.append(nn.Flatten())
    if not hidden:
        return Network(nn.Sequential(*body), c_in * length, num_classes)
    body += [nn.Linear(c_in * length, int(hidden)), nn.ReLU()]
    return Network(nn.Sequential(*body), int(hidden), num_classes)
