"""Collapse metrics of any model: hook the input of its last linear layer, stream, measure.

``track(model, loader)`` runs the model over ``loader`` in eval mode without gradients,
captures the input of the classifier (the last ``nn.Linear`` in module order, or a layer
named by the user) with a forward pre-hook, and feeds it to :class:`CollapseStats` in
one pass. The second pass (:class:`DecisionStats`, for ``ncc_mismatch`` and
``accuracy``) reuses the captured features when they fit in ``cache_bytes`` and runs
the model over the loader again otherwise. Under ``torch.distributed`` every rank
passes its own shard and the statistics are summed with ``all_reduce``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nclab.core import distributed
from nclab.core.errors import NCInputError
from nclab.core.metrics import CollapseMetrics, compute_metrics
from nclab.core.stats import CollapseStats, DecisionStats

#: Largest feature dimension accepted for a hooked layer: the scatter matrix is d x d.
MAX_DIM = 16_384
_SPATIAL = ("mean", "flatten")


def find_classifier(model: nn.Module, classifier: str | nn.Linear | None = None) -> str:
    """Name of the classifier layer of ``model``.

    Parameters
    ----------
    model : nn.Module
    classifier : str or nn.Linear, optional
        A module name (as in ``model.named_modules()``) or the module itself; by default
        the last ``nn.Linear`` in module order.

    Returns
    -------
    str
        The module name, usable with ``model.get_submodule``.
    """
    named = dict(model.named_modules())
    if classifier is None:
        linear = [name for name, module in named.items() if isinstance(module, nn.Linear)]
        if not linear:
            raise NCInputError(
                f"{type(model).__name__} has no nn.Linear layer; name the classifier "
                "layer whose input is the feature (classifier='...')"
            )
        return linear[-1]
    if isinstance(classifier, nn.Module):
        for name, module in named.items():
            if module is classifier:
                return name
        raise NCInputError("the classifier module given is not a submodule of the model")
    if classifier not in named or classifier == "":
        raise NCInputError(f"the model has no layer named '{classifier}'; "
                           f"layers: {_layer_list(named)}")
    return classifier


def _layer_list(named: dict[str, nn.Module], limit: int = 12) -> str:
    names = [name for name in named if name]
    shown = ", ".join(names[-limit:])
    return f"... {shown}" if len(names) > limit else shown


def _classifier_parameters(
    module: nn.Module, name: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise NCInputError(f"layer '{name}' has no 2-D weight: it cannot be the classifier")
    bias = getattr(module, "bias", None)
    return weight.detach(), None if bias is None else bias.detach()


@dataclass
class _Capture:
    """What one hooked layer collects during a pass."""

    name: str
    spatial: str
    stats: CollapseStats | None = None
    batch: torch.Tensor | None = None

    def hook(self, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        x = inputs[0].detach()
        # (n, channels, *positions) is reduced to (n, channels); a linear layer's input
        # (n, ..., d) has its features last, and pooling tokens is the model's business
        if x.ndim > 2 and not isinstance(module, nn.Linear):
            x = x.mean(dim=tuple(range(2, x.ndim))) if self.spatial == "mean" else x.flatten(1)
        if x.ndim != 2:
            raise NCInputError(f"the input of layer '{self.name}' has shape {tuple(x.shape)}; "
                               "expected (batch, features)")
        if x.shape[1] > MAX_DIM:
            raise NCInputError(
                f"the input of layer '{self.name}' has {x.shape[1]} features (> {MAX_DIM}): "
                "its d x d scatter would not fit; use spatial='mean' or a later layer"
            )
        self.batch = x


def _batches(loader: Iterable[Any]) -> Iterable[tuple[Any, Any]]:
    for item in loader:
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise NCInputError("the loader must yield (inputs, labels, ...) tuples")
        yield item[0], item[1]


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def track(
    model: nn.Module,
    loader: Iterable[Any],
    classifier: str | nn.Linear | None = None,
    *,
    layers: Sequence[str] | None = None,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    weighted_mean: bool = False,
    spatial: str = "mean",
    cache_bytes: int = 1 << 30,
    sync: bool | None = None,
    on_batch: Callable[[Any, torch.Tensor], None] | None = None,
) -> CollapseMetrics | dict[str, CollapseMetrics]:
    """Collapse metrics of the features that ``model`` feeds to its classifier.

    Parameters
    ----------
    model : nn.Module
        Any model (a ``DistributedDataParallel`` wrapper too). Run in eval mode, without
        gradients; its training mode is restored afterwards.
    loader : iterable of (inputs, labels)
        For example a ``DataLoader``; iterated once (twice when the features exceed
        ``cache_bytes``). Labels of shape (n,) in ``0..C-1``.
    classifier : str or nn.Linear, optional
        The classifier layer; its input is the feature h and its weight / bias are W, b.
        Default: the last ``nn.Linear`` in module order.
    layers : sequence of str, optional
        More layers to measure at once (a layer-by-layer profile): the metrics of their
        inputs, without the classifier metrics.
    num_classes : int, optional
        C; default: the classifier's number of outputs.
    device : device, optional
        Where the inputs are moved; default: the device of the model's parameters.
    weighted_mean : bool
        Use the sample-weighted global mean.
    spatial : {"mean", "flatten"}
        How an input of shape (n, c, *spatial) of a hooked layer becomes (n, d): average
        over the positions (d = c), or flatten (d = c * positions).
    cache_bytes : int
        Keep the captured classifier features up to this size for the second pass.
    sync : bool, optional
        All-reduce over ``torch.distributed`` ranks; default: when a process group is
        initialized. Every rank must then call ``track`` with its own shard.
    on_batch : callable, optional
        Called as ``on_batch(outputs, labels)`` with the model's outputs for every batch
        of the first pass, to compute a loss or an accuracy from the same forward pass.

    Returns
    -------
    CollapseMetrics
        When ``layers`` is None; otherwise a dict from layer name to CollapseMetrics,
        the classifier layer included (last).

    Examples
    --------
    >>> metrics = nclab.track(model, test_loader)          # doctest: +SKIP
    >>> metrics.nc1, metrics.ncc_mismatch                   # doctest: +SKIP
    """
    if spatial not in _SPATIAL:
        raise NCInputError(f"spatial must be one of {', '.join(_SPATIAL)}; got '{spatial}'")
    head = find_classifier(model, classifier)
    weight, bias = _classifier_parameters(model.get_submodule(head), head)
    num_classes = int(num_classes if num_classes is not None else weight.shape[0])
    names = [find_classifier(model, name) for name in (layers or ()) if name != head] + [head]
    captures = {name: _Capture(name, spatial) for name in dict.fromkeys(names)}
    device = torch.device(device) if device is not None else _model_device(model)
    sync = distributed.is_initialized() if sync is None else sync

    with _hooked(model, captures):
        cache = _first_pass(model, loader, captures, head, num_classes, device, cache_bytes,
                            on_batch)
        if sync:
            for capture in captures.values():
                capture.stats.all_reduce()
        decisions = DecisionStats.from_stats(captures[head].stats, weight, bias)
        if cache is None:
            if iter(loader) is loader:
                raise NCInputError("the features exceed cache_bytes and the loader is a "
                                   "one-shot iterator: pass a re-iterable loader")
            cache = _feature_batches(model, loader, captures[head], device)
        for h, y in cache:
            decisions.update(h, y)
        if sync:
            decisions.all_reduce()

    results = {}
    for name, capture in captures.items():
        if name == head:
            results[name] = compute_metrics(capture.stats, weight, bias, decisions=decisions,
                                            weighted_mean=weighted_mean)
        else:
            results[name] = compute_metrics(capture.stats, weighted_mean=weighted_mean)
    return results[head] if layers is None else results


@contextmanager
def _hooked(model: nn.Module, captures: dict[str, _Capture]) -> Iterator[None]:
    """Eval mode, no gradients, forward pre-hooks on the captured layers; all undone after."""
    was_training = model.training
    handles = [model.get_submodule(name).register_forward_pre_hook(capture.hook)
               for name, capture in captures.items()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


@dataclass
class CapturedFeatures:
    """The classifier input, labels and outputs of a model over a whole loader.

    Attributes
    ----------
    features : Tensor of shape (N, d)
        The input of the classifier layer (the feature h).
    labels : Tensor of shape (N,)
        The labels the loader yielded.
    outputs : Tensor of shape (N, C) or None
        The model's outputs (logits for a classifier); None when its forward returns
        something other than one tensor (a tuple of heads, a dict).
    """

    features: torch.Tensor
    labels: torch.Tensor
    outputs: torch.Tensor | None


def features(
    model: nn.Module,
    loader: Iterable[Any],
    classifier: str | nn.Linear | None = None,
    *,
    device: torch.device | str | None = None,
    spatial: str = "mean",
) -> CapturedFeatures:
    """The features the classifier receives, for every sample of ``loader``.

    For analyses that need the samples themselves (clustering, probes, projections);
    the metrics of :func:`track` never store them. Everything is held in CPU memory:
    meant for data sets that fit there. Arguments as in :func:`track`.

    Returns
    -------
    CapturedFeatures
        Features, labels and model outputs as CPU tensors, in the loader's order.
    """
    if spatial not in _SPATIAL:
        raise NCInputError(f"spatial must be one of {', '.join(_SPATIAL)}; got '{spatial}'")
    head = find_classifier(model, classifier)
    capture = _Capture(head, spatial)
    device = torch.device(device) if device is not None else _model_device(model)
    hs, ys, outs = [], [], []
    with _hooked(model, {head: capture}):
        for inputs, targets in _batches(loader):
            outputs, y = _run(model, inputs, targets, device)
            hs.append(_hooked_batch(capture).cpu())
            ys.append(y.cpu())
            outs.append(outputs.cpu() if torch.is_tensor(outputs) else None)
    if not hs:
        raise NCInputError("the loader yielded no batches")
    kept = None if any(out is None for out in outs) else torch.cat(outs)
    return CapturedFeatures(torch.cat(hs), torch.cat(ys), kept)


def _hooked_batch(capture: _Capture) -> torch.Tensor:
    """The batch ``capture`` received in the forward pass just run; cleared for the next."""
    if capture.batch is None:
        raise NCInputError(f"layer '{capture.name}' was not called by the forward pass")
    batch, capture.batch = capture.batch, None
    return batch


def _run(model: nn.Module, inputs: Any, targets: Any,
         device: torch.device) -> tuple[Any, torch.Tensor]:
    outputs = model(inputs.to(device, non_blocking=True))
    return outputs, torch.as_tensor(targets).to(device, non_blocking=True)


def _first_pass(
    model: nn.Module, loader: Iterable[Any], captures: dict[str, _Capture], head: str,
    num_classes: int, device: torch.device, cache_bytes: int,
    on_batch: Callable[[Any, torch.Tensor], None] | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """Stream every hooked layer into its CollapseStats; return the classifier features
    and labels while they fit in ``cache_bytes``, else None."""
    cache: list[tuple[torch.Tensor, torch.Tensor]] | None = []
    cached = 0
    for inputs, targets in _batches(loader):
        outputs, y = _run(model, inputs, targets, device)
        if on_batch is not None:
            on_batch(outputs, y)
        for capture in captures.values():
            if capture.batch is None:
                raise NCInputError(f"layer '{capture.name}' was not called by the forward pass")
            if capture.stats is None:
                capture.stats = CollapseStats(num_classes)
            capture.stats.update(capture.batch, y)
        h = captures[head].batch
        cached += h.numel() * h.element_size()
        if cache is not None and cached <= cache_bytes:
            cache.append((h, y))
        else:
            cache = None  # too large to keep: the second pass runs the model again
        for capture in captures.values():
            capture.batch = None
    if captures[head].stats is None:
        raise NCInputError("the loader yielded no batches")
    return cache


def _feature_batches(
    model: nn.Module, loader: Iterable[Any], capture: _Capture, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Run the model over ``loader``, yielding the hooked features batch by batch."""
    for inputs, targets in _batches(loader):
        _, y = _run(model, inputs, targets, device)
        yield _hooked_batch(capture), y
