"""Collapse metrics of any model: hook the input of its classifier, stream, measure.

``track(model, loader)`` runs the model over ``loader`` in eval mode without gradients,
captures the input of the classifier (the last ``nn.Linear`` in module order, or a layer
named by the user) and feeds it to :class:`CollapseStats` in one pass. The second pass
(:class:`DecisionStats`, for ``ncc_mismatch`` and ``accuracy``) reuses the captured
features when they fit in ``cache_bytes`` and runs the model over the loader again
otherwise; either way the classifier's decisions are read from its own outputs (an
``nn.Linear`` head), so it only computes the nearest class mean. Under
``torch.distributed`` every rank passes its own shard and the statistics are summed
with ``all_reduce``; every pass over a shard ends with the ranks' agreement on whether
it failed (:func:`nclab.core.distributed.agreed`), so that an error on one rank stops
every rank alike instead of pairing its collectives with others.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypedDict

import torch
from torch import nn

from nclab.capture import sharding
from nclab.capture.batches import BatchFormat, ForwardFn, LabelsFn
from nclab.capture.hooks import Probe, collect
from nclab.capture.options import CaptureOptions
from nclab.core import distributed
from nclab.core.errors import NCInputError
from nclab.core.metrics import CollapseMetrics, compute_metrics
from nclab.core.stats import CollapseStats, DecisionStats
from nclab.core.tables import data_frame

Layers = Sequence[str] | Mapping[str, str]


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
        linear = _linear_layers(model)
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


def _linear_layers(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def _layer_list(named: dict[str, nn.Module], limit: int = 12) -> str:
    names = [name for name in named if name]
    shown = ", ".join(names[-limit:])
    return f"... {shown}" if len(names) > limit else shown


def classifier_parameters(model: nn.Module, name: str
                          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(W (C, d), b (C,) or None) of layer ``name``, detached and in float64 (a bf16 or
    fp16 head measures like any other)."""
    module = model.get_submodule(name)
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise NCInputError(f"layer '{name}' has no 2-D weight: it cannot be the classifier")
    bias = getattr(module, "bias", None)
    return (weight.detach().to(torch.float64),
            None if bias is None else bias.detach().to(torch.float64))


def _default_hint(model: nn.Module, head: str, num_outputs: int) -> str:
    """What to say when the classifier was chosen by default and does not fit the data;
    warns at once when other nn.Linear layers have as many outputs (an auxiliary head)."""
    linear = _linear_layers(model)
    twins = [name for name in linear if name != head
             and model.get_submodule(name).out_features == num_outputs]
    if twins:
        warnings.warn(
            f"the classifier was taken to be '{head}', the last nn.Linear, but "
            f"{', '.join(twins)} also {'has' if len(twins) == 1 else 'have'} {num_outputs} "
            "outputs: pass classifier= to say which one is the classifier", stacklevel=4)
    return (f"the classifier was taken to be '{head}', the last nn.Linear ({num_outputs} "
            f"outputs); pass classifier= to name another (nn.Linear layers: "
            f"{', '.join(linear[-8:])})")


def _layer_points(layers: Layers | str | None, layer_point: str) -> dict[str, str]:
    if layers is None:
        return {}
    if isinstance(layers, str):
        layers = [layers]
    if isinstance(layers, Mapping):
        return dict(layers)
    return {name: layer_point for name in layers}


@dataclass
class _Plan:
    """What one measurement hooks and with what it compares."""

    head: Probe
    probes: list[Probe]
    weight: torch.Tensor
    bias: torch.Tensor | None
    num_classes: int
    hint: str | None
    capture: CaptureOptions


class _RunOptions(TypedDict):
    """The keywords of :func:`collect` that every pass of one measurement shares."""

    batch_format: BatchFormat
    device: torch.device | str | None
    allow_empty: bool


def _plan(model: nn.Module, classifier: str | nn.Linear | None, layers: Layers | None,
          layer_point: str, num_classes: int | None, capture: CaptureOptions) -> _Plan:
    head = find_classifier(model, classifier)
    weight, bias = classifier_parameters(model, head)
    hint = _default_hint(model, head, weight.shape[0]) if classifier is None else None
    points = _layer_points(layers, layer_point)
    probes = [Probe(model, find_classifier(model, name), point)
              for name, point in points.items() if name != head]
    head_probe = Probe(model, head, "input")
    return _Plan(head_probe, [*probes, head_probe], weight, bias,
                 int(num_classes if num_classes is not None else weight.shape[0]), hint,
                 capture)


class _HeadDecisions:
    """The classifier's argmax for every row of the batch just run, read from its own
    outputs by a forward hook, so the second pass does not apply W again.

    Only for an ``nn.Linear`` head, whose outputs are exactly the W h + b of
    :class:`DecisionStats`; for any other head (or outputs not shaped like the rows)
    :meth:`take` gives None and the second pass computes W h + b itself.
    """

    def __init__(self, model: nn.Module, plan: _Plan) -> None:
        self.module = model.get_submodule(plan.head.name)
        self.arrangement, self.num_classes = plan.capture.arrangement, plan.num_classes
        self.pending: torch.Tensor | None = None
        self._outputs: Any = None

    @contextmanager
    def attached(self) -> Iterator[None]:
        if not isinstance(self.module, nn.Linear):
            yield
            return
        handle = self.module.register_forward_hook(self._hook)
        try:
            yield
        finally:
            handle.remove()

    def _hook(self, _module: nn.Module, _args: tuple[Any, ...], output: Any) -> None:
        self._outputs = output

    def prepare(self, probe: Probe, hooked: torch.Tensor,
                labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The arrangement's rows; for the head, its decisions on the same rows too."""
        features, targets = self.arrangement(probe, hooked, labels)
        if probe.module is self.module:
            self.pending = self._decide(labels, features.shape[0])
        return features, targets

    def _decide(self, labels: torch.Tensor, rows: int) -> torch.Tensor | None:
        outputs, self._outputs = self._outputs, None
        if not torch.is_tensor(outputs):
            return None
        try:  # the same rows as the features: tokens flattened, ignored positions dropped
            logits, _ = self.arrangement.align(outputs.detach(), labels)
        except NCInputError:
            return None
        if tuple(logits.shape) != (rows, self.num_classes):
            return None
        return logits.argmax(dim=1)

    def take(self) -> torch.Tensor | None:
        pending, self.pending = self.pending, None
        return pending


class _HeadStats:
    """The classifier's CollapseStats; keeps the batches (with the classifier's
    decisions) while they fit in ``limit`` bytes, for the second pass."""

    def __init__(self, num_classes: int, limit: int, hint: str | None,
                 decisions: _HeadDecisions) -> None:
        self.stats = CollapseStats(num_classes)
        self.limit, self.hint, self.decisions = limit, hint, decisions
        self.size = 0
        self.batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] | None = []

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        if self.hint is not None and labels.numel() and int(labels.max()) >= \
                self.stats.num_classes:
            raise NCInputError(f"label {int(labels.max())} is out of range for "
                               f"num_classes={self.stats.num_classes}: {self.hint}")
        self.stats.update(features, labels)
        predicted = self.decisions.take()
        self.size += features.numel() * features.element_size()
        if self.batches is not None and self.size <= self.limit:
            self.batches.append((features, labels, predicted))
        else:
            self.batches = None  # too large to keep: the second pass runs the model again


class _SecondPass:
    """The sink of the second pass when the model runs again: DecisionStats with the
    classifier's own decisions."""

    def __init__(self, decisions: DecisionStats, head: _HeadDecisions) -> None:
        self.decisions, self.head = decisions, head

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.decisions.update(features, labels, predictions=self.head.take())


class _FeatureMean:
    """Float64 sum and count of features (the out-of-distribution mean)."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.count = 0

    def update(self, features: torch.Tensor, _labels: torch.Tensor) -> None:
        batch = features.to(torch.float64).sum(dim=0)
        self.total = batch if self.total is None else self.total + batch
        self.count += features.shape[0]

    def shaped(self, dim: int | None) -> _FeatureMean:
        """Self, checked to hold features of ``dim`` columns (those of the classifier's
        input); a sum of zeros when it saw none (a rank without OOD samples)."""
        if self.total is None:
            self.total = torch.zeros(dim or 0, dtype=torch.float64)
        elif self.total.shape[0] != dim:
            raise NCInputError(f"the ood_loader's features have dimension "
                               f"{self.total.shape[0]}; the classifier's input has {dim}")
        return self

    def mean(self, sync: bool) -> torch.Tensor:
        total = torch.zeros(0, dtype=torch.float64) if self.total is None else self.total
        count = torch.tensor([float(self.count)], dtype=torch.float64, device=total.device)
        if sync:
            total, count = distributed.reduce_on_device(total), \
                distributed.reduce_on_device(count)
        if float(count) == 0:
            raise NCInputError("ood_loader gave no samples (every position ignored)")
        return (total / count).cpu()


def _ood_batches(loader: Iterable[Any]) -> Iterator[Any]:
    """OOD batches: bare input tensors are paired with dummy labels (their values are
    never read; labels only pair tokens and drop ignored positions)."""
    for batch in loader:
        if torch.is_tensor(batch):
            yield batch, torch.zeros(batch.shape[0], dtype=torch.int64)
        else:
            yield batch


#: Stands for "no features on this rank" among the negated dimensions all-reduced by max.
_NO_DIM = -(1 << 62)


def _synced(stats: dict[str, CollapseStats], seen: dict[str, Any],
            probes: Sequence[Probe]) -> dict[str, CollapseStats]:
    """The statistics of every rank summed, for every probe, in depth order.

    A collective call on every rank, after :func:`distributed.agreed` on the first
    pass. ``stats`` holds every probe's statistics (a rank with an empty shard has fed
    none); ``seen`` is what the first pass returned, in this rank's depth order. One
    small all_reduce first gives every rank the depth order and the feature dimensions
    of the ranks that saw data, so that the ranks reduce the same statistics in the
    same order and any error is raised on all of them alike.
    """
    names = [probe.name for probe in probes]
    orders = [probe.order if name in seen and probe.order is not None else -1
              for probe, name in zip(probes, names, strict=True)]
    dims = [stats[name].dim if name in seen and stats[name].dim else 0 for name in names]
    layout = torch.tensor([*orders, *dims, *(-d if d else _NO_DIM for d in dims)])
    reduced = distributed.all_reduce(layout, op="max").tolist()
    count = len(names)
    orders, high, low = reduced[:count], reduced[count:2 * count], reduced[2 * count:]
    if max(orders) < 0:
        raise NCInputError("the loader yielded no batches on any rank")
    for name, largest, smallest in zip(names, high, low, strict=True):
        if smallest != _NO_DIM and largest != -smallest:
            raise NCInputError(f"layer '{name}' gives features of dimension {-smallest} on "
                               f"one rank and {largest} on another: every rank must run "
                               "the same model")
    for name in names:  # the same order on every rank
        stats[name].all_reduce()
    return {name: stats[name] for _, name in sorted(zip(orders, names, strict=True))}


def _measure(model: nn.Module, loader: Iterable[Any], plan: _Plan, *, weighted_mean: bool,
             cache_bytes: int, sync: bool,
             on_batch: Callable[[Any, torch.Tensor], None] | None,
             ood_loader: Iterable[Any] | None = None,
             spectral: bool = False, margins: bool = False) -> dict[str, CollapseMetrics]:
    """Both passes; the metrics of every probe, in depth order (the classifier's with W, b).

    With ``sync``, every pass over this rank's shard (which may be empty) ends with
    the ranks' agreement on whether it failed, before the statistics are all-reduced.
    """
    head = plan.head.name
    head_decisions = _HeadDecisions(model, plan)
    head_stats = _HeadStats(plan.num_classes, cache_bytes, plan.hint, head_decisions)
    run = _RunOptions(batch_format=plan.capture.batch_format, device=plan.capture.device,
                      allow_empty=sync)
    sinks: dict[str, Any] = {probe.name: head_stats if probe is plan.head
                             else CollapseStats(plan.num_classes) for probe in plan.probes}
    with distributed.agreed(sync), head_decisions.attached():
        seen = collect(model, loader, sinks.__getitem__, plan.probes, on_batch=on_batch,
                       prepare=head_decisions.prepare, **run)
    stats = {name: sink.stats if sink is head_stats else sink for name, sink in sinks.items()}
    stats = _synced(stats, seen, plan.probes) if sync else {name: stats[name] for name in seen}
    with distributed.agreed(sync):
        decisions = DecisionStats.from_stats(stats[head], plan.weight, plan.bias)
        _second_pass(model, loader, plan, head_stats, head_decisions, decisions, run)
    if sync:
        decisions.all_reduce()
    ood_mean = None
    if ood_loader is not None:
        with distributed.agreed(sync):
            ood = collect(model, _ood_batches(ood_loader), lambda _: _FeatureMean(),
                          [plan.head], prepare=plan.capture.arrangement, **run)
            ood_features = ood.get(head, _FeatureMean())
            if sync:
                ood_features.shaped(stats[head].dim)
        ood_mean = ood_features.mean(sync)
    return {name: compute_metrics(one, plan.weight, plan.bias, decisions=decisions,
                                  weighted_mean=weighted_mean, ood_mean=ood_mean,
                                  spectral=spectral, margins=margins)
            if name == head else compute_metrics(one, weighted_mean=weighted_mean,
                                                 spectral=spectral, margins=margins)
            for name, one in stats.items()}


def _second_pass(model: nn.Module, loader: Iterable[Any], plan: _Plan, head_stats: _HeadStats,
                 head_decisions: _HeadDecisions, decisions: DecisionStats,
                 run: _RunOptions) -> None:
    """Feed ``decisions`` from the kept batches, or by running the model again."""
    if head_stats.batches is not None:
        for features, labels, predicted in head_stats.batches:
            decisions.update(features, labels, predictions=predicted)
        return
    if iter(loader) is loader:
        raise NCInputError("the features exceed cache_bytes and the loader is a "
                           "one-shot iterator: pass a re-iterable loader")
    with head_decisions.attached():
        collect(model, loader, lambda _: _SecondPass(decisions, head_decisions),
                [plan.head], prepare=head_decisions.prepare, **run)


def track(
    model: nn.Module,
    loader: Iterable[Any],
    classifier: str | nn.Linear | None = None,
    *,
    layers: Layers | None = None,
    layer_point: str = "output",
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    weighted_mean: bool = False,
    spatial: str = "mean",
    cache_bytes: int = 1 << 30,
    sync: bool | None = None,
    on_batch: Callable[[Any, torch.Tensor], None] | None = None,
    label_key: str = "labels",
    forward: ForwardFn | None = None,
    labels: LabelsFn | None = None,
    ignore_index: int | None = -100,
    shift_labels: bool = False,
    ood_loader: Iterable[Any] | None = None,
    spectral: bool = False,
    margins: bool = False,
    capture: CaptureOptions | None = None,
) -> CollapseMetrics | dict[str, CollapseMetrics]:
    """Collapse metrics of the features that ``model`` feeds to its classifier.

    Parameters
    ----------
    model : nn.Module
        Any model (a ``DistributedDataParallel`` wrapper too), any float dtype (fp16 and
        bf16 included). Run in eval mode, without gradients; its training mode is
        restored afterwards.
    loader : iterable of batches
        For example a ``DataLoader``; iterated once (twice when the features exceed
        ``cache_bytes``). A batch is ``(inputs, labels, ...)`` with inputs a tensor, a
        tuple of tensors (``model(*inputs)``) or a dict (``model(**inputs)``); or a dict
        holding the labels under ``label_key`` (``model(**rest)``); numpy arrays are
        accepted, and everything is moved to ``device``. Labels (n,) in ``0..C-1``, or
        token labels (n, seq) for features of shape (n, seq, d).
    classifier : str or nn.Linear, optional
        The classifier layer; its input is the feature h and its weight / bias are W, b.
        Default: the last ``nn.Linear`` in module order.
    layers : sequence of str, or dict of str to {"input", "output"}, optional
        More layers to measure in the same pass (a layer-by-layer profile), at the point
        ``layer_point`` or at the point given per layer; metrics without the classifier.
    layer_point : {"output", "input"}
        Where the layers of a list are measured.
    num_classes : int, optional
        C; default: the classifier's number of outputs.
    device : device, optional
        Where the inputs are moved; default: the device of the model's parameters.
    weighted_mean : bool
        Use the sample-weighted global mean.
    spatial : {"mean", "flatten"}
        How a tensor of shape (n, c, *positions) of a hooked layer becomes (n, d):
        average over the positions (d = c), or flatten (d = c * positions).
    cache_bytes : int
        Keep the captured classifier features up to this size for the second pass.
    sync : bool, optional
        All-reduce over ``torch.distributed`` ranks; default: when a process group is
        initialized. Every rank must then call ``track`` with its own shard, which may be
        empty (the metrics are those of the union). A loader drawn by a plain
        ``DistributedSampler`` that pads (or, with ``drop_last``, cuts) the ranks is read
        without the padding: every sample of its data set counts once
        (:mod:`nclab.capture.sharding`); a subclass of it is read as it is, with a
        ``PaddedShardWarning``. An error on one rank (bad labels, a failing forward) is
        raised on every rank as the same :class:`nclab.core.distributed.RankFailed`.
    on_batch : callable, optional
        Called as ``on_batch(outputs, labels)`` with the model's outputs for every batch
        of the first pass, to compute a loss or an accuracy from the same forward pass.
    label_key : str
        Key of the labels in dict batches.
    forward, labels : callable, optional
        For batches of any other form: ``forward(model, batch) -> outputs`` and
        ``labels(batch) -> labels``.
    ignore_index : int, optional
        Samples or token positions with this label are left out (HF's -100); None
        keeps all.
    shift_labels : bool
        The token labels are a causal LM's unshifted labels (HF convention, usually the
        input ids): the feature at position t is paired with the label at t + 1.
    ood_loader : iterable of batches, optional
        Out-of-distribution inputs, in the form of ``loader``'s batches (their labels are
        only used to pair tokens and drop ``ignore_index`` positions) or bare input
        tensors; the mean of the classifier-input features over it gives
        ``nc5_ood_orthogonality``.
    spectral : bool
        Also RankMe, alpha-ReQ, LiDAR and the explained variance of every measured layer
        (definitions §8), from the same pass.
    margins : bool
        Also the one-vs-rest margins of the class means and of W (definitions §10).
    capture : CaptureOptions, optional
        ``device``, ``spatial``, ``label_key``, ``forward``, ``labels``,
        ``ignore_index`` and ``shift_labels`` in one object (:class:`CaptureOptions`),
        in place of those keywords; one of them also given, away from its default and
        different, is refused.

    Returns
    -------
    CollapseMetrics
        When ``layers`` is None; otherwise a dict from layer name to CollapseMetrics in
        the order the forward pass reaches them, the classifier's input included.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> import nclab
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    >>> test_loader = [(torch.randn(30, 8), torch.arange(30) % 3) for _ in range(2)]
    >>> metrics = nclab.track(model, test_loader)   # hooks the input of the last Linear
    >>> metrics.num_samples, metrics.num_classes, 0 <= metrics.ncc_mismatch <= 1
    (60, 3, True)
    """
    options = CaptureOptions.resolve(capture, device=device, spatial=spatial,
                                     label_key=label_key, forward=forward, labels=labels,
                                     ignore_index=ignore_index, shift_labels=shift_labels)
    plan = _plan(model, classifier, layers, layer_point, num_classes, options)
    sync = distributed.is_initialized() and sync is not False  # no group: nothing to sum
    if sync:  # summed over ranks: a DistributedSampler's padding would count twice
        loader = sharding.unpadded(loader)
        ood_loader = None if ood_loader is None else sharding.unpadded(ood_loader)
    results = _measure(model, loader, plan, weighted_mean=weighted_mean,
                       cache_bytes=cache_bytes, sync=sync, on_batch=on_batch,
                       ood_loader=ood_loader,
                       spectral=spectral, margins=margins)
    return results[plan.head.name] if layers is None else results


@dataclass(frozen=True)
class LayerProfile:
    """Collapse metrics layer by layer, in the order the forward pass reaches the layers.

    Attributes
    ----------
    names : tuple of str
        Layer names; the last is the classifier, measured at its input.
    points : tuple of str
        "input" or "output", per layer.
    metrics : tuple of CollapseMetrics
    """

    names: tuple[str, ...]
    points: tuple[str, ...]
    metrics: tuple[CollapseMetrics, ...]

    #: The metrics listed per layer by :meth:`to_dict`.
    FIELDS = ("nc1", "nc1_trace", "cdnv")

    def to_dict(self) -> dict[str, Any]:
        """``{"layers": [{"name", "point", "dim", "num_samples", "nc1", ...}, ...]}``,
        JSON-ready (non-finite values become None)."""
        rows = []
        for name, point, metrics in zip(self.names, self.points, self.metrics, strict=True):
            values = metrics.to_dict()
            rows.append({"name": name, "point": point, "dim": metrics.dim,
                         "num_samples": metrics.num_samples,
                         **{key: values[key] for key in self.FIELDS}})
        return {"layers": rows}

    def to_pandas(self) -> Any:
        """The rows of :meth:`to_dict` as a ``pandas.DataFrame``, one per layer in depth
        order. Needs the ``pandas`` extra."""
        return data_frame(self.to_dict()["layers"])

    def plot(self, ax: Any = None, **options: Any) -> tuple[Any, Any]:
        """NC1 and NC1_trace against depth (log scale), as ``nclab profile`` draws them.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Default: a new figure (pyplot, so a notebook shows it).
        **options
            ``title=...``; see :class:`nclab.report.displays.ProfileDisplay`.

        Returns
        -------
        (Figure, Axes)
        """
        from nclab.report.displays import ProfileDisplay  # layer 2, drawn on demand

        return ProfileDisplay.from_profile(self, **options).plot(ax=ax)


def profile(model: nn.Module, loader: Iterable[Any], layers: Layers,
            classifier: str | nn.Linear | None = None, *, layer_point: str = "output",
            **options: Any) -> LayerProfile:
    """The collapse of ``layers`` and of the classifier's input, in depth order.

    Parameters
    ----------
    model, loader, classifier
        As in :func:`track`.
    layers : sequence of str, or dict of str to {"input", "output"}
        The layers to measure (a list: all at ``layer_point``).
    **options
        Any other keyword of :func:`track` (``spatial``, ``label_key``, ...).

    Returns
    -------
    LayerProfile
    """
    results = track(model, loader, classifier, layers=layers or [], layer_point=layer_point,
                    **options)
    assert isinstance(results, dict)  # track gives a dict whenever layers is not None
    head = find_classifier(model, classifier)
    points = _layer_points(layers, layer_point)
    named = {find_classifier(model, name): point for name, point in points.items()}
    return LayerProfile(tuple(results),
                        tuple("input" if name == head else named[name] for name in results),
                        tuple(results.values()))


@dataclass
class CapturedFeatures:
    """The classifier input, labels and outputs of a model over a whole loader.

    Attributes
    ----------
    features : Tensor of shape (N, d)
        The input of the classifier layer (the feature h); one row per token for
        token-level labels.
    labels : Tensor of shape (N,)
        The labels, paired with the rows of ``features``.
    outputs : Tensor of shape (N, C) or None
        The model's outputs (its logits, also from a HuggingFace output), row by row as
        ``features``; None when its forward returns something else (a tuple of heads).
    """

    features: torch.Tensor
    labels: torch.Tensor
    outputs: torch.Tensor | None


class _Rows:
    """Collects batches of rows on the CPU."""

    def __init__(self) -> None:
        self.features: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.features.append(features.cpu())
        self.labels.append(labels.cpu())


def _logits(outputs: Any) -> torch.Tensor | None:
    """The outputs as one tensor: itself, or the ``logits`` of a HuggingFace output."""
    if torch.is_tensor(outputs):
        return outputs
    logits = outputs.get("logits") if isinstance(outputs, Mapping) else None
    return logits if torch.is_tensor(logits) else None


def features(
    model: nn.Module,
    loader: Iterable[Any],
    classifier: str | nn.Linear | None = None,
    *,
    device: torch.device | str | None = None,
    spatial: str = "mean",
    label_key: str = "labels",
    forward: ForwardFn | None = None,
    labels: LabelsFn | None = None,
    ignore_index: int | None = -100,
    shift_labels: bool = False,
    capture: CaptureOptions | None = None,
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
    options = CaptureOptions.resolve(capture, device=device, spatial=spatial,
                                     label_key=label_key, forward=forward, labels=labels,
                                     ignore_index=ignore_index, shift_labels=shift_labels)
    arrangement = options.arrangement
    head = Probe(model, find_classifier(model, classifier), "input")
    rows = _Rows()
    outputs: list[torch.Tensor | None] = []

    def keep_outputs(out: Any, targets: torch.Tensor) -> None:
        logits = _logits(out)
        try:
            outputs.append(None if logits is None else
                           arrangement.align(logits.detach(), targets)[0].cpu())
        except NCInputError:  # outputs not shaped like the labels: not kept
            outputs.append(None)

    collect(model, loader, lambda _: rows, [head], on_batch=keep_outputs,
            **options.collect_kwargs())
    aligned = [out for out in outputs if out is not None]
    kept = torch.cat(aligned) if len(aligned) == len(outputs) else None
    return CapturedFeatures(torch.cat(rows.features), torch.cat(rows.labels), kept)
