"""The configuration of a training run: everything that determines its results.

Every field carries its :class:`Setting` (help text, command-line name, type and range)
in the dataclass metadata: the one definition from which ``__post_init__`` checks a
config and the command line generates the training options of every command.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cache
from numbers import Integral, Real
from typing import Any

from nclab.core.errors import NCInputError
from nclab.data.imbalance import as_imbalance

#: The range of an integer setting: what torch, numpy and JSON readers hold in 64 bits.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: The largest seed: the batch order of epoch e is seeded with seed * 1_000_003 + e, which
#: must stay inside torch's 64-bit seeds (and numpy's legacy seeds take 32 bits).
SEED_MAX = 2**32 - 1


@dataclass(frozen=True)
class Setting:
    """How one config field is described, spelled on the command line and checked.

    Attributes
    ----------
    help : str
        One sentence for ``--help`` (the default is printed by the help machinery).
    cli : str, optional
        The option's name (``--lr``); None: set by the commands, not an option.
    low, high : float, optional
        Bounds of a number (of each item of a tuple); ``low_open``/``high_open`` exclude
        them. Floats must also be finite.
    group : str
        Heading of the option in ``--help``.
    """

    help: str
    cli: str | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    group: str = "Training"

    def range_text(self) -> str:
        """The accepted range in words, e.g. ``> 0`` or ``in [0, 1)``."""
        low, high = _bound_text(self.low), _bound_text(self.high)
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{low}, "
                    f"{high}{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {high}"
        return ""

    def requirement(self) -> str:
        """The range as a predicate: ``lie in [0, 1)``, ``be > 0``."""
        text = self.range_text()
        return f"lie {text}" if text.startswith("in ") else f"be {text}"

    def admits(self, value: float) -> bool:
        """Whether the number ``value`` lies in the range."""
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or (value < self.high or (not self.high_open
                                                           and value == self.high))


def _bound_text(bound: float | None) -> str:
    """A bound as a message writes it: whole numbers in full (4294967295), others short."""
    if bound is None:
        return ""
    if float(bound).is_integer() and abs(bound) < 2**63:
        return str(int(bound))
    return f"{bound:g}"


#: The most epochs: the learning-rate schedule and the logged epochs are computed in
#: float64, exact for whole numbers up to 2**53; no run comes near.
MAX_EPOCHS = 10**9


def setting(default: Any = None, *, factory: Any = None, **kwargs: Any) -> Any:
    """A dataclass field with its :class:`Setting` in the metadata."""
    metadata = {"setting": Setting(**kwargs)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


DATA, MODEL = "Data", "Model"


@dataclass(frozen=True)
class TrainConfig:
    """Every setting that changes what a run computes (Papyan et al.'s recipe by default).

    Runtime choices that do not change the results (device, threads, progress bar,
    checkpoint frequency) are arguments of :class:`Trainer` instead, so that a run can
    be resumed on another machine. The help text, range and command-line name of each
    field are in its :class:`Setting` (``TrainConfig.settings()``).

    Attributes
    ----------
    dataset, root, classes, per_class, per_class_test, imbalance, dataset_options
        Passed to the task's data loader (``nclab.data.load_dataset``): name, file or
        folder for file-based sets, class subset, per-class sample limits, the long-tail
        profile of the training split (``"step:0.1,5"``, ``"exp:0.01"``; stored in its
        canonical spelling), builder options such as ``{"num_samples": 5000}``.
    model, model_options
        ``nclab.models.build_model(model, input_shape, outputs, **model_options)``.
    task
        A name of ``nclab.train.TASKS``: what the targets are, the loss, the error.
    loss
        ``"ce"`` (cross-entropy), ``"mse"`` (squared error to one-hot targets),
        ``"ls:EPS"`` (label smoothing) or ``"focal:GAMMA"`` (focal loss):
        :mod:`nclab.train.losses`.
    epochs, batch_size, lr, momentum, weight_decay
        SGD with momentum; the loss is averaged over each batch.
    lr_milestones, lr_gamma
        The learning rate is multiplied by ``lr_gamma`` after each fraction of
        ``epochs`` listed (default: /10 at 1/3 and 2/3).
    seed
        Seeds the initialization and every epoch's sample order.
    log_points
        Number of epochs, spaced logarithmically, at which the evaluators run.
    eval_batch_size
        Batch size of the evaluation passes.
    evaluators
        Names in ``nclab.train.EVALUATORS`` run at every logged epoch; None: the task's
        defaults (``"collapse"``, every collapse metric, for classification).
    options
        The task's options (its options dataclass, as a dict), such as ``{"tau": 10.0}``;
        saved and compared like the rest.
    """

    dataset: str = setting("mnist1d", cli="--dataset", group=DATA,
                           help="Data set name (docs/datasets.md).")
    root: str | None = setting(None, cli="--root", group=DATA,
                               help="File or folder of a data set read from files.")
    classes: tuple[int, ...] | None = setting(None, cli="--classes", low=0, group=DATA,
                                              help="Keep these classes, e.g. 0,1,2.")
    per_class: int | None = setting(None, cli="--per-class", low=1, group=DATA,
                                    help="At most this many training samples per class.")
    per_class_test: int | None = setting(None, cli="--per-class-test", low=1, group=DATA,
                                         help="At most this many test samples per class.")
    imbalance: str | None = setting(
        None, cli="--imbalance", group=DATA,
        help="Long-tailed TRAINING split (the test split stays as it is): step:R,K (the "
             "last K classes keep round(R n_max) samples) or exp:R (class c keeps "
             "round(n_max R^(c/(C-1)))); seeded by --seed (docs/imbalance.md).")
    dataset_options: dict[str, Any] = setting(
        factory=dict, cli="--data-opt", group=DATA,
        help="Data set option KEY=VALUE (repeatable), e.g. num_samples=10000.")
    model: str = setting("mlp", cli="--model", group=MODEL, help="Network name.")
    model_options: dict[str, Any] = setting(factory=dict, cli="--model-opt", group=MODEL,
                                            help="Model option KEY=VALUE (repeatable).")
    task: str = setting("classification", help="Training task (set by the command).")
    loss: str = setting("ce", cli="--loss", help="ce (cross-entropy), mse, ls:EPS (label "
                                                 "smoothing EPS) or focal:GAMMA (focal loss).")
    epochs: int = setting(350, cli="--epochs", low=1, high=MAX_EPOCHS, help="Epochs.")
    batch_size: int = setting(128, cli="--batch-size", low=1, help="Batch size.")
    lr: float = setting(0.05, cli="--lr", low=0, low_open=True, help="Learning rate.")
    momentum: float = setting(0.9, cli="--momentum", low=0, high=1, high_open=True,
                              help="SGD momentum.")
    weight_decay: float = setting(5e-4, cli="--weight-decay", low=0, help="Weight decay.")
    lr_milestones: tuple[float, ...] = setting(
        (1 / 3, 2 / 3), cli="--milestones", low=0, high=1, low_open=True, high_open=True,
        help="Fractions of the run after which the lr is multiplied by --lr-gamma, "
             "comma separated ('' for none).")
    lr_gamma: float = setting(0.1, cli="--lr-gamma", low=0, low_open=True,
                              help="LR factor at each milestone.")
    seed: int = setting(0, cli="--seed", low=0, high=SEED_MAX,
                        help="Seed of initialization and sample order.")
    log_points: int = setting(50, cli="--log-points", low=1,
                              help="Number of log-spaced epochs at which metrics are logged.")
    eval_batch_size: int = setting(1024, cli="--eval-batch-size", low=1,
                                   help="Batch size of evaluation passes.")
    evaluators: tuple[str, ...] | None = setting(
        None, cli="--evaluators", help="Evaluators run at logged epochs, comma separated; "
                                       "none given: the task's.")
    options: dict[str, Any] = setting(factory=dict, cli="--opt",
                                      help="Task option KEY=VALUE (repeatable).")

    def __post_init__(self) -> None:
        hints = field_types()
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, list) and typing.get_origin(base_type(hints[item.name])[0]) \
                    is tuple:
                value = tuple(value)  # a list from Python code means the same sequence
                object.__setattr__(self, item.name, value)
            check_value(item.name, value, hints[item.name], item.metadata["setting"])
        if self.imbalance is not None:  # one spelling, so that a resume compares equal
            object.__setattr__(self, "imbalance", as_imbalance(self.imbalance).text)

    @staticmethod
    def settings() -> dict[str, Setting]:
        """field name -> its :class:`Setting`, in field order."""
        return {item.name: item.metadata["setting"] for item in fields(TrainConfig)}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        if not isinstance(data, dict):
            raise NCInputError(f"a config is a JSON object; got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise NCInputError(f"unknown config keys: {', '.join(unknown)}")
        values: dict[str, Any] = {key: tuple(value) if isinstance(value, list) else value
                                  for key, value in data.items()}
        return cls(**values)

    def updated(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated like a new config)."""
        return replace(self, **changes)


@cache
def field_types() -> dict[str, Any]:
    """field name -> its resolved type hint."""
    return typing.get_type_hints(TrainConfig)


def base_type(hint: Any) -> tuple[Any, bool]:
    """``(X, optional)`` of a hint ``X`` or ``X | None``."""
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0], True
    return hint, False


def check_number(name: str, value: Any, kind: Any, rule: Setting) -> None:
    """Raise NCInputError unless ``value`` is a ``kind`` (int or float) in ``rule``'s range;
    an integer must also fit in 64 bits (``INT64_MIN``..``INT64_MAX``)."""
    integral = isinstance(value, Integral) and not isinstance(value, bool)
    if kind is int and not integral:
        raise NCInputError(f"{name} must be an integer; got {value!r}")
    if kind is int and not INT64_MIN <= value <= INT64_MAX:
        rule = _in_64_bits(rule)
    if kind is float and (isinstance(value, bool) or not isinstance(value, Real)):
        raise NCInputError(f"{name} must be a number; got {value!r}")
    if kind is float and not math.isfinite(value):
        raise NCInputError(f"{name} must be a finite number {rule.range_text()}; got {value}")
    if not rule.admits(value):
        raise NCInputError(f"{name} must {rule.requirement()}; got {value}")
    if kind is int and not INT64_MIN <= value <= INT64_MAX:
        raise NCInputError(f"{name} must fit a 64-bit integer (at most {INT64_MAX}); "
                           f"got {value}")


def _in_64_bits(rule: Setting) -> Setting:
    """``rule`` narrowed to the integers of 64 bits."""
    return replace(rule, low=INT64_MIN if rule.low is None else max(rule.low, INT64_MIN),
                   high=INT64_MAX if rule.high is None else min(rule.high, INT64_MAX))


def parse_number(text: Any, kind: type, rule: Setting, name: str) -> Any:
    """The text of a number as ``kind`` (int or float), finite and inside ``rule``'s
    range; one NCInputError line naming ``name`` otherwise."""
    text = str(text).strip()
    try:
        number = kind(text)
    except ValueError:
        raise NCInputError(f"{name} expects {'an integer' if kind is int else 'a number'}"
                           f"; got '{text}'") from None
    check_number(name, number, kind, rule)
    return number


def parse_list(text: str | None, kind: type, name: str,
               rule: Setting | None = None) -> tuple[Any, ...] | None:
    """``"1,2,3"`` -> (1, 2, 3) of ``kind``, each inside ``rule``'s range ('' is the empty
    list, None stays None)."""
    if text is None:
        return None
    parts = [part.strip() for part in str(text).split(",") if part.strip()]
    if kind is str:
        return tuple(parts)
    try:
        values = tuple(kind(part) for part in parts)
    except ValueError:
        raise NCInputError(f"{name} expects a comma-separated list of {kind.__name__}; "
                           f"got '{text}'") from None
    rule = rule or Setting(help="")
    for value in values:
        try:
            check_number(name, value, kind, rule)
        except NCInputError:
            wide = kind is int and not INT64_MIN <= value <= INT64_MAX
            bounds = (_in_64_bits(rule) if wide else rule).range_text()
            what = "finite values" if kind is float else "integers"
            raise NCInputError(f"{name} takes {what}{' ' + bounds if bounds else ''}; "
                               f"got '{text}'") from None
    return values


def check_value(name: str, value: Any, hint: Any, rule: Setting) -> None:
    """Raise one NCInputError line unless ``value`` has the field's type and range."""
    kind, optional = base_type(hint)
    if value is None:
        if not optional:
            raise NCInputError(f"{name} may not be null")
        return
    origin = typing.get_origin(kind)
    if origin is tuple:
        if not isinstance(value, tuple):
            raise NCInputError(f"{name} must be a list; got {value!r}")
        item = typing.get_args(kind)[0]
        for entry in value:
            if item is str:
                if not isinstance(entry, str):
                    raise NCInputError(f"{name} must be a list of names; got {list(value)}")
            else:
                check_number(name, entry, item, rule)
    elif origin is dict or kind is dict:
        if not isinstance(value, dict):
            raise NCInputError(f"{name} must be an object of KEY: VALUE; got {value!r}")
    elif kind is str:
        if not isinstance(value, str):
            raise NCInputError(f"{name} must be text; got {value!r}")
    else:
        check_number(name, value, kind, rule)


def config_diff(stored: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Human-readable differences ``key: stored -> given`` between two config dicts."""
    keys = sorted(set(stored) | set(given))
    return [f"{key}: {json.dumps(stored.get(key))} -> {json.dumps(given.get(key))}"
            for key in keys if stored.get(key) != given.get(key)]
