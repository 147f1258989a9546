"""What a loader yields, turned into one model call and its labels.

A batch may be

- a tuple or list ``(inputs, labels, ...)``: ``inputs`` a tensor (``model(inputs)``), a
  tuple or list of tensors (``model(*inputs)``) or a dict (``model(**inputs)``);
- a dict (HuggingFace's convention): the labels are read from ``label_key`` and removed,
  and the model is called as ``model(**rest)``;
- anything else, given two small callables: ``forward(model, batch) -> outputs`` and
  ``labels(batch) -> labels``.

numpy arrays become tensors, and every tensor is moved to the model's device, through
nested tuples, lists and dicts. Floating-point inputs take the dtype of the model's
parameters (a bf16 model is fed bf16); labels keep theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nclab.core.errors import NCInputError

ForwardFn = Callable[[nn.Module, Any], Any]
LabelsFn = Callable[[Any], Any]


def describe(batch: Any) -> str:
    """A short description of a batch's structure, for error messages."""
    if torch.is_tensor(batch) or isinstance(batch, np.ndarray):
        return f"a {type(batch).__name__} of shape {tuple(batch.shape)}"
    if isinstance(batch, Mapping):
        return f"a dict with keys {list(batch)}"
    if isinstance(batch, (tuple, list)):
        kinds = ", ".join(type(item).__name__ for item in batch[:4])
        more = ", ..." if len(batch) > 4 else ""
        return f"a {type(batch).__name__} of {len(batch)} ({kinds}{more})"
    return f"a {type(batch).__name__}"


def to_device(value: Any, device: torch.device, dtype: torch.dtype | None = None) -> Any:
    """``value`` with every tensor (and numpy array) on ``device``, through nested tuples,
    lists and dicts; floating-point tensors are cast to ``dtype`` when it is given."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if torch.is_tensor(value):
        cast = dtype if dtype is not None and torch.is_floating_point(value) else None
        return value.to(device=device, dtype=cast, non_blocking=True)
    if isinstance(value, Mapping):
        return {key: to_device(item, device, dtype) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        items = [to_device(item, device, dtype) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without any)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating-point parameter, if it has one."""
    return next((p.dtype for p in model.parameters() if torch.is_floating_point(p)), None)


@dataclass(frozen=True)
class BatchFormat:
    """How to call the model on a batch and where its labels are.

    Parameters
    ----------
    label_key : str
        The labels' key in a dict batch (HuggingFace: ``"labels"``).
    forward : callable, optional
        ``forward(model, batch) -> outputs`` for batches of any other form; the batch
        has its tensors on the model's device already.
    labels : callable, optional
        ``labels(batch) -> labels`` (a tensor or array), same batch.
    """

    label_key: str = "labels"
    forward: ForwardFn | None = None
    labels: LabelsFn | None = None

    def run(self, model: nn.Module, batch: Any, device: torch.device,
            dtype: torch.dtype | None = None) -> tuple[Any, torch.Tensor]:
        """``(outputs, labels)`` of ``model`` on one batch, the labels on ``device`` and
        the floating-point inputs in ``dtype`` (the model's: :func:`model_dtype`)."""
        if self.forward is not None:
            moved = to_device(batch, device)
            labels = self.labels(moved) if self.labels is not None else self._split(batch)[1]
            return self.forward(model, moved), _as_label_tensor(labels, device, batch)
        inputs, labels = self._split(batch)
        if self.labels is not None:
            labels = self.labels(batch)
        inputs = to_device(inputs, device, dtype)
        return call_model(model, inputs, batch), _as_label_tensor(labels, device, batch)

    def _split(self, batch: Any) -> tuple[Any, Any]:
        """(inputs, labels) of a tuple or dict batch."""
        if isinstance(batch, Mapping):
            if self.label_key not in batch and self.labels is None:
                raise NCInputError(
                    f"the batch is {describe(batch)} but no '{self.label_key}' key; "
                    "pass label_key= or labels=..."
                )
            return {k: v for k, v in batch.items() if k != self.label_key}, \
                batch.get(self.label_key)
        if isinstance(batch, (tuple, list)) and len(batch) >= 2:
            return batch[0], batch[1]
        if self.labels is not None and self.forward is None:
            raise NCInputError(f"the batch is {describe(batch)}: with labels=... alone the "
                               "inputs are unknown; pass forward=... as well")
        raise NCInputError(
            f"the batch is {describe(batch)}; expected (inputs, labels, ...) tuples, a dict "
            "with the labels under label_key, or pass forward=... and labels=..."
        )


def call_model(model: nn.Module, inputs: Any, batch: Any) -> Any:
    """``model(inputs)``, ``model(*inputs)`` or ``model(**inputs)``."""
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    if isinstance(inputs, Mapping):
        args, kwargs, how = (), inputs, f"model(**{{{', '.join(map(repr, inputs))}}})"
    elif isinstance(inputs, (tuple, list)):
        args, kwargs, how = tuple(inputs), {}, f"model(*<{len(inputs)} inputs>)"
    elif torch.is_tensor(inputs):
        args, kwargs, how = (inputs,), {}, "model(inputs)"
    else:
        raise NCInputError(f"the inputs of the batch ({describe(batch)}) are a "
                           f"{type(inputs).__name__}; expected a tensor, a tuple of tensors "
                           "or a dict, or pass forward=...")
    try:
        return model(*args, **kwargs)
    except TypeError as exc:  # a signature mismatch: say how the model was called
        raise NCInputError(f"calling {how} failed ({exc}); the batch is {describe(batch)}: "
                           "pass forward=... to call the model yourself") from exc


def _as_label_tensor(labels: Any, device: torch.device, batch: Any) -> torch.Tensor:
    if labels is None:
        raise NCInputError(f"no labels in the batch ({describe(batch)})")
    try:
        tensor = labels if torch.is_tensor(labels) else torch.as_tensor(np.asarray(labels))
    except (TypeError, ValueError):
        raise NCInputError(f"the labels of the batch are a {type(labels).__name__}, not an "
                           "array or tensor") from None
    return tensor.to(device, non_blocking=True)
