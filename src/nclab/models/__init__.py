"""Networks sized by input shape and class count, each ending in one nn.Linear.

``build_model(name, input_shape, num_classes, **options)`` is the one entry point;
``MODELS`` lists the names. Every model is a :class:`Network`: ``body`` then
``classifier`` (the last ``nn.Linear`` in module order, whose input is the feature h).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from nclab.core.errors import NCInputError
from nclab.core.validation import check_memory
from nclab.models.base import Network
from nclab.models.cnn1d import cnn1d
from nclab.models.densenet import densenet
from nclab.models.mlp import mlp
from nclab.models.resnet import resnet
from nclab.models.vgg import vgg

#: name -> builder(input_shape, num_classes, **options)
MODELS: dict[str, Callable[..., Network]] = {
    "mlp": mlp,
    "cnn1d": cnn1d,
    **{f"vgg{depth}": partial(vgg, depth=depth) for depth in (11, 13, 16, 19)},
    **{f"resnet{depth}": partial(resnet, depth=depth) for depth in (18, 34, 50)},
    "densenet_cifar": densenet,
    "densenet121": partial(densenet, blocks=(6, 12, 24, 16), growth_rate=32),
}
#: Bytes per parameter of a network in training: float32 values, gradients, the SGD
#: momentum and the copy a checkpoint writes.
BYTES_PER_PARAMETER = 16


def model_options(name: str) -> list[str]:
    """The keyword options the model ``name`` accepts."""
    builder = MODELS[name]
    fixed = builder.keywords if isinstance(builder, partial) else {}
    target = builder.func if isinstance(builder, partial) else builder
    params = list(inspect.signature(target).parameters)[2:]  # after input_shape, num_classes
    return [p for p in params if p not in fixed]


def check_model(name: str, options: dict[str, Any]) -> None:
    """Raise NCInputError, listing the choices, for an unknown model or option."""
    if name not in MODELS:
        raise NCInputError(f"unknown model '{name}'; choose from: {', '.join(MODELS)}")
    accepted = model_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise NCInputError(
            f"model '{name}' has no option {', '.join(unknown)}; "
            f"it accepts: {', '.join(accepted) or 'none'}"
        )


def build_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, **options: Any
) -> Network:
    """Build the network ``name`` for inputs of ``input_shape`` and ``num_classes`` outputs.

    Parameters
    ----------
    name : str
        One of ``MODELS``.
    input_shape : tuple of int
        Shape of one sample: (features,) or (channels, length) or (channels, h, w).
    num_classes : int
    **options
        Model-specific: ``widths`` for mlp; ``channels``, ``hidden`` for cnn1d; ``width``
        (multiplier) for vgg*/resnet*; ``blocks``, ``growth_rate`` for densenet*.

    Returns
    -------
    Network
        Its last ``nn.Linear`` is ``.classifier``.
    """
    check_model(name, options)
    if int(num_classes) < 1:
        raise NCInputError(f"num_classes must be >= 1; got {num_classes}")
    shape = tuple(int(s) for s in input_shape)
    check_model_memory(name, shape, int(num_classes), options)
    return MODELS[name](shape, int(num_classes), **options)


def parameter_count(name: str, input_shape: tuple[int, ...], num_classes: int,
                    options: dict[str, Any]) -> int:
    """Parameters of the network ``name``, counted on torch's meta device (shapes only,
    no memory), so that a width of 10^12 is counted, not allocated."""
    try:
        with torch.device("meta"):
            network = MODELS[name](input_shape, num_classes, **options)
    except (RuntimeError, OverflowError) as exc:  # a size torch cannot even describe
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NCInputError(f"model '{name}' cannot be built with these sizes: {reason}") from None
    return sum(parameter.numel() for parameter in network.parameters())


def check_model_memory(name: str, input_shape: tuple[int, ...], num_classes: int,
                       options: dict[str, Any]) -> None:
    """Refuse, in one line and before allocating, a network larger than the free memory."""
    count = parameter_count(name, input_shape, num_classes, options)
    check_memory(BYTES_PER_PARAMETER * count, "cpu",
                 f"model '{name}' ({count:,} parameters, {num_classes} outputs)")


__all__ = ["MODELS", "Network", "build_model", "check_model", "check_model_memory",
           "model_options", "parameter_count"]
