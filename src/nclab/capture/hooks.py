"""The one capture: hook layers, run the model over a loader, feed what the hooks saw.

Every measurement of a model in nclab goes through :func:`collect`: the collapse metrics
of ``track`` (both passes), the features of ``features``, the regression statistics and
the loss of the trainer's evaluators. It puts the model in eval mode without gradients,
hooks the input or the output of the named layers, calls the model on every batch
(:class:`~nclab.capture.batches.BatchFormat`), hands each hooked tensor with the
batch's labels to a statistics object made by a factory, and undoes all of it after,
the model's training mode included.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, Protocol, TypeVar

import torch
from torch import nn

from nclab.capture.batches import BatchFormat, model_device, model_dtype
from nclab.core.errors import NCInputError

#: Where a layer is measured: what it receives, or what it returns.
POINTS = ("input", "output")
#: Layers whose tensors keep the features in the last dimension ((n, ..., d)); any other
#: layer's (n, c, *positions) has its channels second.
FEATURES_LAST = (nn.Linear, nn.LayerNorm, nn.Embedding)


class Sink(Protocol):
    """Anything that takes batches of (features, labels): CollapseStats, DecisionStats,
    RegressionStats, a list of batches."""

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> Any: ...


#: The sinks of one :func:`collect` call: any kind of Sink, all of the same kind.
SinkT = TypeVar("SinkT", bound=Sink)

#: ``prepare(probe, hooked, labels) -> (features, labels)`` before the sink sees them.
Prepare = Callable[["Probe", torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class Probe:
    """One hooked point: the input or the output of one layer, once per forward pass.

    Parameters
    ----------
    model : nn.Module
    name : str
        A module name of ``model`` (as in ``named_modules()``).
    point : {"input", "output"}

    Attributes
    ----------
    order : int or None
        When the hook first fired, counted over every probe of the pass: sorting by it
        gives the depth order of the forward calls.
    features_last : bool
        The layer's tensors have their features in the last dimension.
    """

    def __init__(self, model: nn.Module, name: str, point: str = "input") -> None:
        if point not in POINTS:
            raise NCInputError(f"layer '{name}': the point must be one of "
                               f"{', '.join(POINTS)}; got '{point}'")
        self.name, self.point = name, point
        self.module = model.get_submodule(name)
        self.features_last = isinstance(self.module, FEATURES_LAST)
        self.order: int | None = None
        self._value: torch.Tensor | None = None
        self._calls = 0
        self._clock: Iterator[int] = itertools.count()

    @property
    def what(self) -> str:
        """'the input of layer 'x'' (for messages)."""
        return f"the {self.point} of layer '{self.name}'"

    def attach(self, clock: Iterator[int]) -> torch.utils.hooks.RemovableHandle:
        self._clock = clock
        if self.point == "input":
            return self.module.register_forward_pre_hook(self._pre_hook, with_kwargs=True)
        return self.module.register_forward_hook(self._hook)

    def _pre_hook(self, _module: nn.Module, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> None:
        self._receive(args[0] if args else next(iter(kwargs.values()), None))

    def _hook(self, _module: nn.Module, _args: tuple[Any, ...], output: Any) -> None:
        self._receive(output)

    def _receive(self, value: Any) -> None:
        self._calls += 1
        if self.order is None:
            self.order = next(self._clock)
        self._value = _first_tensor(value)

    def take(self) -> torch.Tensor:
        """What the layer saw in the forward pass just run; cleared for the next one."""
        calls, value = self._calls, self._value
        self._calls, self._value = 0, None
        if calls == 0:
            raise NCInputError(f"layer '{self.name}' was not called by the forward pass")
        if calls > 1:
            raise NCInputError(
                f"layer '{self.name}' was called {calls} times in one forward pass (a "
                "module used more than once): measure a layer that is called once"
            )
        if value is None:
            raise NCInputError(f"{self.what} is not a tensor")
        return value.detach()


def _first_tensor(value: Any) -> torch.Tensor | None:
    """A tensor, the first tensor of a tuple (a transformer block's output), or the first
    value of a dict-like output (HuggingFace's ModelOutput)."""
    if isinstance(value, Mapping):
        value = next(iter(value.values()), None)
    elif isinstance(value, (tuple, list)):
        value = value[0] if value else None
    return value if torch.is_tensor(value) else None


@contextmanager
def probing(model: nn.Module, probes: Sequence[Probe]) -> Iterator[None]:
    """Eval mode, no gradients, the probes' hooks attached; all undone after."""
    was_training = model.training
    clock = itertools.count()
    handles = [probe.attach(clock) for probe in probes]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def _no_factory(name: str) -> NoReturn:
    raise TypeError(f"collect: probe '{name}' was given without a factory to make its sink")


def collect(
    model: nn.Module,
    loader: Iterable[Any],
    factory: Callable[[str], SinkT] | None = None,
    probes: Sequence[Probe] = (),
    *,
    batch_format: BatchFormat | None = None,
    device: torch.device | str | None = None,
    prepare: Prepare | None = None,
    on_batch: Callable[[Any, torch.Tensor], None] | None = None,
    allow_empty: bool = False,
    until: Callable[[Any, torch.Tensor], bool] | None = None,
) -> dict[str, SinkT]:
    """Run ``model`` over ``loader`` and feed every probe's tensors to its own sink.

    Parameters
    ----------
    model : nn.Module
        Run in eval mode without gradients; its mode is restored after.
    loader : iterable of batches
        Any batch :class:`BatchFormat` reads.
    factory : callable, optional
        ``factory(layer name) -> sink``, called once per probe at its first batch.
    probes : sequence of Probe
    batch_format : BatchFormat, optional
    device : device, optional
        Where the batches are moved; default: the model's.
    prepare : callable, optional
        ``prepare(probe, hooked, labels) -> (features, labels)`` (reshaping, dropping
        positions); default: the hooked tensor and the labels as they are.
    on_batch : callable, optional
        ``on_batch(outputs, labels)`` with the model's outputs of every batch.
    allow_empty : bool
        Accept a loader without batches (a rank's empty shard, whose statistics are
        summed with the other ranks'): then no sink is made and the dict is empty.
    until : callable, optional
        ``until(outputs, labels) -> bool``: the pass ends after the first batch for which
        it is true (after ``on_batch`` and the sinks saw that batch).

    Returns
    -------
    dict
        Layer name -> its sink, in the depth order of the forward calls.
    """
    make = factory if factory is not None else _no_factory
    batch_format = batch_format or BatchFormat()
    device = torch.device(device) if device is not None else model_device(model)
    dtype = model_dtype(model)
    sinks: dict[str, SinkT] = {}
    seen = False
    with probing(model, probes):
        for batch in loader:
            outputs, labels = batch_format.run(model, batch, device, dtype)
            seen = True
            if on_batch is not None:
                on_batch(outputs, labels)
            for probe in probes:
                hooked = probe.take()
                features, targets = (prepare(probe, hooked, labels) if prepare is not None
                                     else (hooked, labels))
                if probe.name not in sinks:
                    sinks[probe.name] = make(probe.name)
                sinks[probe.name].update(features, targets)
            if until is not None and until(outputs, labels):
                break
    if not seen and not allow_empty:
        raise NCInputError("the loader yielded no batches")
    order = sorted(probes, key=lambda probe: probe.order if probe.order is not None else -1)
    return {probe.name: sinks[probe.name] for probe in order if probe.name in sinks}
