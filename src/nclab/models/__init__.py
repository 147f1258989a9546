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

from nclab.core.errors import NCInputError
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
    return MODELS[name](tuple(int(s) for s in input_shape), int(num_classes), **options)


__all__ = ["MODELS", "Network", "build_model", "check_model", "model_options"]
