"""The collapse of every stage of the network at each logged epoch (the ``layers`` evaluator).

``TrainConfig.evaluators = ("collapse", "layers")`` (``--evaluators collapse,layers``)
adds to each logged row the nc1 of each stage of the network (:func:`default_layers`)
and of the classifier's input, in depth order: the column ``train_layer_nc1``, a list.
``nclab profile RUN_DIR`` fits He & Su's law of data separation (definitions §16) to
every logged row of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from torch import nn

from nclab.capture import profile
from nclab.core.errors import NCInputError
from nclab.train.evaluators import EvalContext

#: At most this many default layers (evenly spaced): each holds a d x d scatter.
MAX_DEFAULT_LAYERS = 16
#: The row column of a split's per-layer nc1: ``f"{split}{LAYER_NC1}"``.
LAYER_NC1 = "_layer_nc1"

T = TypeVar("T")


def default_layers(model: nn.Module) -> list[str]:
    """The stages of an nclab network: every activation and every block (a module with
    submodules) among the children of its ``body`` (of the model itself otherwise), but
    the last child, whose output the classifier receives; at most
    ``MAX_DEFAULT_LAYERS``, evenly spaced."""
    body = getattr(model, "body", model)
    prefix = "body." if body is not model else ""
    children = list(body.named_children())[:-1]
    stages = [prefix + name for name, child in children
              if type(child).__module__ == "torch.nn.modules.activation"
              or next(child.children(), None) is not None]
    return evenly_spaced(stages, MAX_DEFAULT_LAYERS)


def evenly_spaced(items: Sequence[T], count: int) -> list[T]:
    """At most ``count`` (>= 2) of ``items``, evenly spaced, the first and the last
    included."""
    if len(items) <= count:
        return list(items)
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


class LayerEvaluator:
    """nc1 of every default layer and of the classifier's input at each logged epoch.

    Row key ``{split}_layer_nc1``: a list of L numbers (None where undefined), the
    layers of :func:`default_layers` then the classifier's input, measured at their
    outputs in one extra pass over the split.

    Parameters
    ----------
    classification : bool
        Whether the task's targets are class labels (``Task.has_error_rate``); nc1 needs
        classes, so a regression task is refused here, before the run starts.
    splits : tuple of str
        Which splits to measure (He & Su's law is about the training data).
    """

    name = "layers"

    def __init__(self, classification: bool = True, splits: tuple[str, ...] = ("train",)) -> None:
        if not classification:
            raise NCInputError("the layers evaluator measures nc1, which needs class labels: "
                               "it runs only with a classification task")
        self.splits = splits

    def __call__(self, context: EvalContext) -> dict[str, Any]:
        names = default_layers(context.model)
        row: dict[str, Any] = {}
        for split in self.splits:
            result = profile(context.model, context.loaders[split], names, context.classifier,
                             sync=context.distributed)
            row[split + LAYER_NC1] = [metrics.nc1 for metrics in result.metrics]
        return row
