"""Multi-layer perceptron on flattened inputs."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from nclab.core.errors import NCInputError
from nclab.models.base import Network

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def mlp(
    input_shape: tuple[int, ...],
    num_classes: int,
    widths: Sequence[int] = (256, 256, 256),
    activation: str = "relu",
    batch_norm: bool = False,
) -> Network:
    """Fully connected network: ``len(widths)`` hidden layers, then the classifier.

    ``mlp(shape, C, widths=(256,) * 3)`` is the 3 x 256 ReLU MLP; the features are the
    activations of the last hidden layer (dimension ``widths[-1]``).
    """
    if activation not in ACTIVATIONS:
        raise NCInputError(
            f"unknown activation '{activation}'; choose from: {', '.join(ACTIVATIONS)}"
        )
    widths = [int(w) for w in widths]
    if not widths or min(widths) < 1:
        raise NCInputError(f"widths must be a non-empty list of positive sizes; got {widths}")
    layers: list[nn.Module] = [nn.Flatten()]
    previous = math.prod(input_shape)
    for width in widths:
        layers.append(nn.Linear(previous, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(ACTIVATIONS[activation]())
        previous = width
    return Network(nn.Sequential(*layers), previous, num_classes)
