"""How features are captured from a model and a loader, in one object.

:func:`nclab.track`, :func:`nclab.capture.features`, :func:`nclab.ood.evaluate_model` and
:func:`nclab.transfer.few_shot_model` all read batches, run the model and turn the hooked
tensors into rows the same way; :class:`CaptureOptions` holds those choices (the device,
the batch format, the arrangement of the rows) once, checked when it is made. Each of
those functions still takes the options as keywords, and also as ``capture=``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypedDict

import numpy as np
import torch

from nclab.capture.batches import BatchFormat, ForwardFn, LabelsFn
from nclab.capture.tokens import Arrangement
from nclab.core.errors import NCInputError


class CollectOptions(TypedDict):
    """The keywords of :func:`nclab.capture.collect` a :class:`CaptureOptions` sets."""

    batch_format: BatchFormat
    device: torch.device | None
    prepare: Arrangement


@dataclass(frozen=True)
class CaptureOptions:
    """How to run a model over a loader and turn what a layer saw into feature rows.

    Parameters
    ----------
    device : device or str, optional
        Where the batches are moved; default: the device of the model's parameters.
        Kept as a ``torch.device``.
    spatial : {"mean", "flatten"}
        How a hooked (n, c, *positions) tensor becomes (n, d): the mean over the
        positions (d = c) or flattened (d = c * positions).
    label_key : str
        The labels' key in a dict batch (HuggingFace: ``"labels"``).
    forward : callable, optional
        ``forward(model, batch) -> outputs`` for batches of any other form.
    labels : callable, optional
        ``labels(batch) -> labels`` (a tensor or array).
    ignore_index : int, optional
        Samples or token positions with this label are dropped (HF's -100); None keeps
        every one.
    shift_labels : bool
        Token labels are a causal LM's unshifted labels: the feature at position t is
        paired with the label at t + 1.

    Examples
    --------
    >>> from nclab.capture import CaptureOptions
    >>> options = CaptureOptions(spatial="flatten", ignore_index=None)
    >>> sorted(options.collect_kwargs())
    ['batch_format', 'device', 'prepare']
    """

    device: torch.device | str | None = None
    spatial: str = "mean"
    label_key: str = "labels"
    forward: ForwardFn | None = None
    labels: LabelsFn | None = None
    ignore_index: int | None = -100
    shift_labels: bool = False

    def __post_init__(self) -> None:
        if self.device is not None:
            object.__setattr__(self, "device", _as_device(self.device))
        if not isinstance(self.label_key, str):
            raise NCInputError(f"label_key must be a str; got {type(self.label_key).__name__}")
        for name in ("forward", "labels"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise NCInputError(f"{name} must be a callable or None; got "
                                   f"{type(value).__name__}")
        if self.ignore_index is not None and (isinstance(self.ignore_index, bool) or
                                              not isinstance(self.ignore_index,
                                                             (int, np.integer))):
            raise NCInputError(f"ignore_index must be an int or None; got "
                               f"{self.ignore_index!r}")
        if not isinstance(self.shift_labels, (bool, np.bool_)):
            raise NCInputError(f"shift_labels must be True or False; got "
                               f"{self.shift_labels!r}")
        _ = self.arrangement  # checks ``spatial`` now, not at the first batch

    @property
    def batch_format(self) -> BatchFormat:
        """How the model is called on a batch and where its labels are."""
        return BatchFormat(self.label_key, self.forward, self.labels)

    @property
    def arrangement(self) -> Arrangement:
        """How hooked tensors and labels become (features, labels) rows."""
        return Arrangement(self.spatial, self.ignore_index, bool(self.shift_labels))

    def collect_kwargs(self) -> CollectOptions:
        """The keywords of :func:`nclab.capture.collect`: ``batch_format``, ``device``
        and ``prepare`` (the :attr:`arrangement`)."""
        device = self.device if isinstance(self.device, torch.device) else None
        return CollectOptions(batch_format=self.batch_format, device=device,
                              prepare=self.arrangement)

    @classmethod
    def resolve(cls, capture: CaptureOptions | None, **keywords: Any) -> CaptureOptions:
        """The options of a function that takes them both as keywords and as ``capture``.

        Without ``capture``: the keywords, checked. With it: ``capture``, refused when a
        keyword set away from its default asks for something else (a keyword left at its
        default defers to ``capture``).
        """
        if capture is None:
            return cls(**keywords)
        if not isinstance(capture, CaptureOptions):
            raise NCInputError(f"capture must be a CaptureOptions; got "
                               f"{type(capture).__name__}")
        given = cls(**keywords)
        for field in fields(cls):
            asked, held = getattr(given, field.name), getattr(capture, field.name)
            if asked != field.default and asked != held:
                raise NCInputError(f"{field.name}={asked!r} conflicts with capture's "
                                   f"{field.name}={held!r}: give it in one place")
        return capture


def _as_device(device: Any) -> torch.device:
    """``device`` as a ``torch.device``; one line for a string torch does not parse."""
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, (str, int)) or isinstance(device, bool):
        raise NCInputError(f"device must be a torch.device, a str or None; got "
                           f"{type(device).__name__}")
    try:
        return torch.device(device)
    except (RuntimeError, ValueError) as error:
        raise NCInputError(f"device {device!r} is not a device torch knows "
                           f"({str(error).splitlines()[0]})") from None
