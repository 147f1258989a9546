"""The streaming protocol of nclab's statistics: state declared once, the rest derived.

Every statistic (:class:`~nclab.core.stats.CollapseStats`,
:class:`~nclab.core.stats.DecisionStats`,
:class:`~nclab.core.regression_stats.RegressionStats`, and any later one) has the shape
of a torchmetrics metric (:class:`StreamingStatistic`): ``update``, ``merge``,
``reset``, ``compute``, ``state_dict`` / ``load_state_dict``, ``all_reduce`` (which does
nothing in a single process without a process group) and ``to_vector`` /
``load_vector``, the flat float64 encoding that the integrations sync.

A statistic writes only ``update``, ``compute`` and one declaration: its configuration
(``CONFIG``, whole numbers such as the class count, 0 meaning "not known yet") and, in
:meth:`StreamingStatistic._declare`, the parts of its state, each a :class:`StatePart`
that lists its fields (:class:`StateField`: key, shape, integer or real, constraints)
and knows how it merges (sum for tallies, Chan's pairwise update for moments, the
power-of-two unit for the exponent). ``state_dict``, ``load_state_dict`` (with every
check), ``merge``, ``reset``, ``all_reduce`` and the flat encoding follow from that
declaration, so a field added to a part is saved, loaded, merged and synced with no
further line of code.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch

from nclab.core import distributed
from nclab.core.errors import NCInputError

Stat = TypeVar("Stat", bound="StreamingStatistic")

#: Largest count a state may hold: sums of counts must stay exact in int64, and the flat
#: float64 encoding holds whole numbers exactly only below 2**53.
MAX_COUNT = 2**53


@dataclass(frozen=True)
class StateField:
    """One tensor of a statistic's state, as it appears in ``state_dict``.

    ``role`` is the name its part knows it by; ``key`` the name in the state dict (the
    part's prefix and the role, unless the statistic renames it).
    """

    role: str
    key: str
    shape: tuple[int, ...]
    integer: bool = False
    nonnegative: bool = False
    scatter: bool = False  # symmetric positive semidefinite up to rounding
    bound: int | None = None  # largest absolute value of an integer field

    @property
    def size(self) -> int:
        return math.prod(self.shape)


class StatePart(ABC):
    """A piece of a statistic's state that knows its fields and how two pieces merge."""

    #: The roles of the part's fields, in their state-dict order.
    ROLES: ClassVar[tuple[str, ...]]

    @abstractmethod
    def field_specs(self) -> dict[str, dict[str, Any]]:
        """role -> StateField arguments other than role and key (shape, constraints)."""

    @abstractmethod
    def read(self) -> dict[str, torch.Tensor]:
        """role -> the field's value now (finalized, on any device; not to be modified)."""

    @abstractmethod
    def check(self, values: Mapping[str, torch.Tensor], keys: Mapping[str, str]) -> None:
        """NCInputError unless the checked fields ``values`` (role -> CPU tensor) agree
        with each other; ``keys`` names them in the message."""

    @abstractmethod
    def load(self, values: Mapping[str, torch.Tensor]) -> None:
        """Replace the state by checked values (role -> CPU tensor)."""

    @abstractmethod
    def merge(self, other: Any) -> None:
        """Fold another part of the same declaration into this one."""

    @abstractmethod
    def all_reduce(self) -> None:
        """Replace this part by the union over every rank (a collective call)."""

    @abstractmethod
    def reset(self) -> None:
        """Forget every sample."""


class Tally(StatePart):
    """Whole-number counters of any shape, merged and synced by summation."""

    ROLES = ("counts",)

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.counts = torch.zeros(shape, dtype=torch.int64)

    def field_specs(self) -> dict[str, dict[str, Any]]:
        return {"counts": {"shape": self.shape, "integer": True, "nonnegative": True}}

    def read(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts}

    def check(self, values: Mapping[str, torch.Tensor], keys: Mapping[str, str]) -> None:
        check_total(values["counts"], keys["counts"])

    def load(self, values: Mapping[str, torch.Tensor]) -> None:
        self.counts = values["counts"].to(self.counts.device, torch.int64).clone()

    def merge(self, other: Tally) -> None:
        self.counts += other.counts.to(self.counts.device)

    def all_reduce(self) -> None:
        self.counts = distributed.reduce_on_device(self.counts)

    def reset(self) -> None:
        self.counts.zero_()

    def to(self, device: torch.device) -> None:
        """Keep the counters on ``device`` (where the batches are)."""
        if self.counts.device != device:
            self.counts = self.counts.to(device)


@dataclass
class _Declared:
    """A part and the state-dict keys of its fields."""

    part: StatePart
    fields: tuple[StateField, ...]


def declare(part: StatePart, prefix: str = "",
            rename: Mapping[str, str] | None = None) -> _Declared:
    """Declare ``part`` with its fields keyed ``prefix + role`` (or as ``rename`` says)."""
    rename = rename or {}
    specs = part.field_specs()
    fields = tuple(StateField(role, rename.get(role, prefix + role), **specs[role])
                   for role in part.ROLES)
    return _Declared(part, fields)


class StreamingStatistic(ABC):
    """A statistic accumulated batch by batch, mergeable across parts and processes.

    The shape of a torchmetrics metric: ``update`` adds a batch, ``merge`` folds in the
    statistic of another part of the data, ``reset`` empties it (its configuration
    stays), ``compute`` turns it into results, ``state_dict`` / ``load_state_dict``
    persist it as tensors, ``to_vector`` / ``load_vector`` as one float64 vector, and
    ``all_reduce`` replaces it by the union over every rank of a ``torch.distributed``
    group: without a process group it returns ``self`` unchanged, as torchmetrics' sync
    does.

    A subclass declares ``CONFIG`` (names of whole-number attributes, 0 or None while
    unknown) and :meth:`_declare`; every method but ``update`` and ``compute`` follows.
    """

    #: Attributes that configure the statistic (whole numbers), saved in the state.
    CONFIG: ClassVar[tuple[str, ...]]
    #: Those of them learnt from the first batch (None, or 0 in a state, until then).
    LAZY: ClassVar[tuple[str, ...]] = ()

    _state: dict[str, _Declared] | None = None

    # ------------------------------------------------------------------ the declaration
    @abstractmethod
    def _declare(self, config: Mapping[str, int]) -> dict[str, _Declared]:
        """The parts of the state for this configuration (called once it is complete)."""

    @abstractmethod
    def update(self: Stat, *args: Any, **kwargs: Any) -> Stat:
        """Add a batch; return self."""

    @abstractmethod
    def compute(self, *args: Any, **kwargs: Any) -> Any:
        """The results of the samples seen."""

    def _config(self) -> dict[str, int]:
        return {name: int(getattr(self, name) or 0) for name in self.CONFIG}

    def _parts(self) -> dict[str, _Declared]:
        """The declared parts ({} while the configuration is incomplete)."""
        return self._state or {}

    def _configure(self, config: Mapping[str, int], what: str) -> None:
        """Complete the configuration (allocating the state) or check that it agrees."""
        mine = self._config()
        for name, value in config.items():
            if mine[name] and value and mine[name] != value:
                raise NCInputError(
                    f"{what} has {name} = {value}; these statistics have {mine[name]}"
                )
        if self._state is None and all(config.values()):
            # a part may refuse to allocate: the statistics must then stay unconfigured
            # (a later update with a smaller dim is a fresh start, not a mismatch)
            previous = {name: getattr(self, name) for name in config}
            for name, value in config.items():
                setattr(self, name, value)
            try:
                self._state = self._declare(config)
            except BaseException:
                for name, value in previous.items():
                    setattr(self, name, value)
                raise

    # ------------------------------------------------------------------ derived: persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only (on the CPU), so that ``torch.load(..., weights_only=True)`` reads
        it back: the configuration, then every declared field."""
        state = {name: torch.tensor(value) for name, value in self._config().items()}
        for declared in self._parts().values():
            values = declared.part.read()
            for field in declared.fields:
                state[field.key] = values[field.role].detach().cpu().clone()
        return state

    def load_state_dict(self: Stat, state: Mapping[str, Any]) -> Stat:
        """Restore a :meth:`state_dict`; every entry is checked (shape, dtype, finite,
        whole and non-negative counts, consistency, no overflow) before anything changes."""
        state = state_mapping(state, type(self).__name__)
        config = {name: state_scalar(state, name) for name in self.CONFIG}
        self._load(config, lambda field: state_entry(state, field.key, field.shape,
                                                     integer=field.integer))
        return self

    def _load(self, config: dict[str, int], entry: Any) -> None:
        mine = self._config()
        for name, value in config.items():
            if value < 0:
                raise NCInputError(f"state entry '{name}' is negative: {value}")
            fixed = name not in self.LAZY and value != mine[name]
            if fixed or (mine[name] and value and value != mine[name]):
                raise NCInputError(f"the state has {name} = {value}; these statistics have "
                                   f"{mine[name]}")
        if not all(config.values()):
            if any(config[name] for name in self.LAZY):
                raise NCInputError(f"the state has incomplete dimensions: {config}")
            self._state = None  # an empty statistic whose dimensions are not known yet
            for name in self.LAZY:
                setattr(self, name, None)
            return
        declared = self._state if self._state is not None else self._declare(config)
        checked = {name: self._checked_part(d, entry) for name, d in declared.items()}
        self._check_parts(checked)
        self._configure(config, "the state")
        for name, d in self._parts().items():
            d.part.load(checked[name])

    @staticmethod
    def _checked_part(declared: _Declared, entry: Any) -> dict[str, torch.Tensor]:
        values = {}
        keys = {}
        for field in declared.fields:
            value = check_field(entry(field), field)
            values[field.role], keys[field.role] = value, field.key
        declared.part.check(values, keys)
        return values

    def _check_parts(self, values: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        """NCInputError unless the checked parts agree with each other (part -> role ->
        value); the default has nothing to compare."""
        return None

    # ------------------------------------------------------------------ derived: flat vector
    def vector_size(self) -> int:
        """Length of :meth:`to_vector` (the configuration must be complete)."""
        return sum(field.size for d in self._require_parts().values() for field in d.fields)

    def to_vector(self) -> torch.Tensor:
        """Every declared field, flattened into one float64 vector on the CPU (whole
        numbers exactly: counts must stay below 2**53)."""
        pieces = []
        for declared in self._require_parts().values():
            values = declared.part.read()
            for field in declared.fields:
                value = values[field.role].detach().to("cpu", torch.float64).reshape(-1)
                if field.integer and bool((value.abs() >= MAX_COUNT).any()):
                    raise NCInputError(f"state entry '{field.key}' is too large for the flat "
                                       "float64 encoding (2**53 or more)")
                pieces.append(value)
        return torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.float64)

    def load_vector(self: Stat, vector: Any) -> Stat:
        """Restore :meth:`to_vector`'s output, with the checks of :meth:`load_state_dict`."""
        flat = torch.as_tensor(vector).detach().cpu().reshape(-1)
        size = self.vector_size()
        if flat.numel() != size:
            raise NCInputError(f"a flat state of {type(self).__name__} has {size} entries; "
                               f"got {flat.numel()}")
        offsets: dict[str, tuple[int, StateField]] = {}
        start = 0
        for declared in self._require_parts().values():
            for field in declared.fields:
                offsets[field.key] = (start, field)
                start += field.size

        def entry(field: StateField) -> torch.Tensor:
            begin, _ = offsets[field.key]
            value = flat[begin : begin + field.size].reshape(field.shape)
            return state_entry({field.key: value}, field.key, field.shape,
                               integer=field.integer)

        self._load(self._config(), entry)
        return self

    def _require_parts(self) -> dict[str, _Declared]:
        if self._state is None:
            raise NCInputError(f"{type(self).__name__}: the dimensions are not known yet "
                               "(give them to the constructor)")
        return self._state

    # ------------------------------------------------------------------ derived: merge, sync
    def merge(self: Stat, other: Stat) -> Stat:
        """Fold the statistic of ``other`` (another part of the data) into this one."""
        if not isinstance(other, type(self)):
            raise NCInputError(
                f"can only merge {type(self).__name__}; got {type(other).__name__}"
            )
        self._configure(other._config(), "the other statistics")
        mine = self._parts()
        for name, declared in other._parts().items():
            mine[name].part.merge(declared.part)
        return self

    def reset(self: Stat) -> Stat:
        """Forget every sample; the configuration (class count, dimensions) stays."""
        for declared in self._parts().values():
            declared.part.reset()
        return self

    def all_reduce(self: Stat) -> Stat:
        """Replace this statistic by the union over every rank, in place; return self.

        Works with any ``torch.distributed`` backend (gloo on CPU, nccl on GPU). The ranks
        first agree on the configuration (one collective); when they disagree, every rank
        raises the same one-line error, so that no rank is left in a collective alone.
        """
        if not distributed.is_initialized():
            return self  # one process: the local statistic is already the whole
        config = self._agreed_config()
        if not all(config.values()):
            return self  # no rank saw a sample
        self._configure(config, "another rank's statistics")
        for declared in self._parts().values():
            declared.part.all_reduce()
        return self

    def _agreed_config(self) -> dict[str, int]:
        """The configuration every rank has (0 entries: unknown on that rank)."""
        values = list(self._config().values())
        unknown = 1 << 62  # stands for "unknown" in the minimum over ranks
        both = torch.tensor(values + [-(v or unknown) for v in values], dtype=torch.int64)
        reduced = distributed.all_reduce(both, op="max").tolist()
        k = len(values)
        largest, smallest = reduced[:k], [-v for v in reduced[k:]]
        for name, high, low in zip(self.CONFIG, largest, smallest, strict=True):
            if high and low != unknown and low != high:
                raise NCInputError(f"ranks disagree on {name}: {low} on one, {high} on another")
        return dict(zip(self.CONFIG, largest, strict=True))


# ---------------------------------------------------------------------------- state checks
def state_mapping(state: Any, owner: str) -> Mapping[str, Any]:
    if not isinstance(state, Mapping):
        raise NCInputError(
            f"a {owner} state must be a dict of tensors (from state_dict()); "
            f"got {type(state).__name__}"
        )
    return state


def state_entry(state: Mapping[str, Any], key: str, shape: tuple[int, ...] | None = None,
                integer: bool = False) -> torch.Tensor:
    """One entry of a state dict as a CPU tensor, checked; NCInputError naming ``key``."""
    if key not in state:
        raise NCInputError(f"the state has no entry '{key}'")
    value = state[key]
    try:
        t = torch.as_tensor(value).detach().cpu()
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise NCInputError(f"state entry '{key}' is not numeric: {type(value).__name__}") from None
    if t.is_complex() or not (t.is_floating_point() or _integer_dtype(t.dtype)):
        raise NCInputError(f"state entry '{key}' must hold real numbers; got {t.dtype}")
    if shape is not None and tuple(t.shape) != shape:
        raise NCInputError(f"state entry '{key}' has shape {tuple(t.shape)}; expected {shape}")
    if integer and _integer_dtype(t.dtype):
        t = t.to(torch.int64)  # exact: no detour through float64 (which rounds above 2**53)
    else:
        t = t.to(torch.float64)
        if not bool(torch.isfinite(t).all()):
            raise NCInputError(f"state entry '{key}' holds NaN or inf")
        if integer:
            if not bool((t == torch.round(t)).all()):
                raise NCInputError(f"state entry '{key}' must hold whole numbers")
            if bool((t.abs() >= 2.0**63).any()):
                raise NCInputError(f"state entry '{key}' is beyond the int64 range")
            t = t.to(torch.int64)
    return t  # the field's own constraints: check_field


def check_field(value: torch.Tensor, field: StateField) -> torch.Tensor:
    """The constraints a :class:`StateField` declares, on a checked entry."""
    if field.nonnegative and bool((value < 0).any()):
        raise NCInputError(
            f"state entry '{field.key}' holds negative values (min {value.min().item():g})"
        )
    if field.integer and field.bound is not None and bool((value.abs() > field.bound).any()):
        raise NCInputError(f"state entry '{field.key}' is out of range: "
                           f"{value.abs().max().item()} (at most {field.bound})")
    if field.scatter:
        check_scatter(value, field.key)
    return value


def check_total(counts: torch.Tensor, key: str) -> int:
    """The sum of non-negative ``counts``, exactly; NCInputError when it reaches 2**53."""
    total = sum(int(v) for v in counts.reshape(-1).tolist())
    if total >= MAX_COUNT:
        raise NCInputError(f"state entry '{key}' sums to {total}: too many samples "
                           "(at most 2**53)")
    return total


def _integer_dtype(dtype: torch.dtype) -> bool:
    return dtype != torch.bool and not dtype.is_floating_point and not dtype.is_complex


def state_scalar(state: Mapping[str, Any], key: str) -> int:
    """A whole-number scalar entry."""
    return int(state_entry(state, key, shape=(), integer=True))


def check_scatter(scatter: torch.Tensor, key: str = "scatter", rtol: float = 1e-5) -> None:
    """NCInputError unless ``scatter`` is symmetric and positive semidefinite up to
    rounding (``rtol`` times its trace)."""
    size = scatter.shape[0]
    diagonal = torch.diagonal(scatter)
    tolerance = rtol * float(diagonal.abs().sum()) + torch.finfo(torch.float64).tiny
    if bool((diagonal < -tolerance).any()):
        raise NCInputError(f"state entry '{key}' has a negative diagonal: not a scatter matrix")
    if float((scatter - scatter.T).abs().max()) > tolerance:
        raise NCInputError(f"state entry '{key}' is not symmetric")
    shifted = scatter + tolerance * torch.eye(size, dtype=scatter.dtype)
    if int(torch.linalg.cholesky_ex(shifted).info) != 0:
        raise NCInputError(
            f"state entry '{key}' is not positive semidefinite (beyond rounding): "
            "not a scatter matrix"
        )
