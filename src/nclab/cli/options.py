"""Command-line options generated from one definition, and values checked at the boundary.

The training options of every command come from the :class:`~nclab.train.config.Setting`
of each ``TrainConfig`` field (help text, option name, type and range): the decorator
:func:`training_options` adds them to a command, shows the defaults of that command's
preset through the help machinery, and hands the command a :class:`ConfigChanges`.
``KEY=VALUE`` options (``--data-opt``, ``--model-opt``, ``--opt``) are converted to the
type annotated on the data set builder, the model builder or the task's options
dataclass; an unknown key or a bad value is one line naming the option and what it
accepts. :func:`runtime_options` adds ``--device``, ``--threads`` and ``--progress``.
"""

from __future__ import annotations

import functools
import inspect
import os
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import typer

from nclab.cli.app import OptionValueError
from nclab.cli.parsing import options_from_text
from nclab.core.distributed import resolve_device
from nclab.core.errors import NCInputError
from nclab.data import dataset_names, resolve_dataset
from nclab.data.imbalance import Imbalance
from nclab.models import MODELS
from nclab.train.config import (
    Setting,
    TrainConfig,
    base_type,
    field_types,
    parse_list,
    parse_number,
)
from nclab.train.losses import ClassificationLoss
from nclab.train.tasks import OPTION_FIELDS, task_type
from nclab.train.threads import DEFAULT_THREADS  # the Trainer's default too

#: Threads (or worker processes) per usable CPU core at the most: more only wait for each
#: other, and a count in the thousands runs the process out of threads.
PER_CORE = 4


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def most_parallel() -> int:
    """The most threads or worker processes a command starts: ``PER_CORE`` per core."""
    return PER_CORE * usable_cores()


# ------------------------------------------------------------------ values of one option
def number_parser(kind: type, rule: Setting, option: str) -> Callable[[str], Any]:
    """A typer ``parser``: the text as an int or a finite float inside ``rule``'s range."""
    return _parser(lambda text: parse_number(text, kind, rule, option))


def list_parser(kind: type, rule: Setting | None, option: str,
                allow_empty: bool = True) -> Callable[[str], Any]:
    """A typer ``parser``: a comma-separated list of ``kind`` ('' is the empty list, or
    one error line without ``allow_empty``)."""
    def parse(text: str) -> tuple[Any, ...] | None:
        values = parse_list(text, kind, option, rule)
        if not values and not allow_empty:
            raise NCInputError(f"{option} is empty: give at least one value")
        return values

    return _parser(parse)


def integer(option: str, low: int = 1, high: int | None = None) -> dict[str, Any]:
    """Keywords of ``typer.Option`` for an integer in [``low``, ``high``] (and 64 bits)."""
    return {"parser": number_parser(int, Setting(help="", low=low, high=high), option),
            "metavar": "INTEGER"}


def real(option: str, **bounds: Any) -> dict[str, Any]:
    """Keywords of ``typer.Option`` for a finite number inside ``bounds`` (Setting's
    ``low``, ``high``, ``low_open``, ``high_open``)."""
    return {"parser": number_parser(float, Setting(help="", **bounds), option),
            "metavar": "NUMBER"}


def _parser(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def run(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return parse(value)
        except NCInputError as exc:
            # typer turns a ValueError of a parser into a multi-line usage error; this
            # one reaches nclab's main and prints as one line
            raise OptionValueError(str(exc)) from None
    return run


#: Text fields read by a parser of their own: field -> parse(text, option) -> the
#: canonical text (one line on bad input, before anything runs).
TEXT_PARSERS: dict[str, Callable[[str, str], str]] = {
    "imbalance": lambda text, option: Imbalance.parse(text, option).text,
    "loss": lambda text, option: ClassificationLoss.parse(text, option).text,
}


def text_parser(name: str, option: str) -> Callable[[str], Any]:
    """A typer ``parser``: the text of the field ``name`` of ``TEXT_PARSERS``, canonical."""
    return _parser(lambda text: TEXT_PARSERS[name](text, option))


# ------------------------------------------------------------------ the config options
@dataclass
class ConfigChanges:
    """What the command line set of a TrainConfig (None or absent: not given).

    Attributes
    ----------
    values : dict
        Field -> value of the scalar and list fields given.
    pairs : dict
        ``dataset_options`` / ``model_options`` / ``options`` -> their raw KEY=VALUE texts.
    typed : dict
        The same three fields -> values set by dedicated options (``--widths``, ...).
    """

    values: dict[str, Any] = field(default_factory=dict)
    pairs: dict[str, list[str]] = field(default_factory=dict)
    typed: dict[str, dict[str, Any]] = field(default_factory=dict)

    def set(self, name: str, value: Any) -> None:
        """Set a field (ignored when None)."""
        if value is not None:
            self.values[name] = value

    def set_option(self, kind: str, key: str, value: Any) -> None:
        """Set one entry of a dict field (ignored when None)."""
        if value is not None:
            self.typed.setdefault(kind, {})[key] = value

    def apply(self, base: TrainConfig) -> TrainConfig:
        """``base`` with these changes; dict fields are merged, KEY=VALUE texts converted
        to the types of the data set builder, the model and the task options."""
        config = base.updated(**self.values)
        settings = TrainConfig.settings()
        merged = {}
        for name in OPTION_FIELDS:
            given = dict(self.typed.get(name, {}))
            if self.pairs.get(name):
                given.update(options_from_text(config, name, self.pairs[name],
                                               settings[name].cli))
            if given:
                merged[name] = {**getattr(base, name), **given}
        config = config.updated(**merged)
        task = task_type(config.task)
        resolve_dataset(config.dataset, task.data_kind)  # an unknown name: one line
        task.options_type.parse(config.options, config.task)  # ranges
        return config


def _list_type(hint: Any) -> type | None:
    """The item type of a ``tuple[X, ...]`` field (None for other fields)."""
    kind, _ = base_type(hint)
    if typing.get_origin(kind) is tuple:
        return typing.get_args(kind)[0]
    return None


def _shown(value: Any) -> str | bool:
    """A preset value as ``--help`` shows it (False: show nothing)."""
    if value is None or value == {}:
        return False
    if isinstance(value, tuple):
        return ",".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value) or "none"
    return str(value)


def choices(name: str, preset: TrainConfig) -> list[str]:
    """The names a config field takes (a registry's), for ``--help``; [] for free text."""
    if name == "model":
        return list(MODELS)
    if name == "dataset":
        return dataset_names(task_type(preset.task).data_kind)
    return []


class _OptionText(TypedDict):
    """The keywords of ``typer.Option`` that every config option has."""

    help: str
    rich_help_panel: str
    show_default: str | bool


def config_parameter(name: str, preset: TrainConfig) -> inspect.Parameter:
    """The typer parameter of the config field ``name``, showing ``preset``'s value."""
    rule = TrainConfig.settings()[name]
    option = rule.cli
    if option is None:
        raise NCInputError(f"config field '{name}' is set by the commands, not an option")
    hint = field_types()[name]
    kind, _ = base_type(hint)
    item = _list_type(hint)
    names = choices(name, preset)
    text = f"{rule.help.rstrip('.')}: {', '.join(names)}." if names else rule.help
    common: _OptionText = {"help": text, "rich_help_panel": rule.group,
                           "show_default": _shown(getattr(preset, name))}
    annotation: Any = str | None
    if name in OPTION_FIELDS:
        info = typer.Option(None, option, metavar="KEY=VALUE", **common)
        annotation = list[str] | None
    elif item is not None:
        info = typer.Option(None, option, parser=list_parser(item, rule, option),
                            metavar="LIST", **common)
    elif kind is str and name in TEXT_PARSERS:
        info = typer.Option(None, option, parser=text_parser(name, option), metavar="TEXT",
                            **common)
    elif kind is str:
        info = typer.Option(None, option, metavar="NAME" if names else "TEXT", **common)
    else:
        info = typer.Option(None, option, parser=number_parser(kind, rule, option),
                            metavar="INTEGER" if kind is int else "NUMBER", **common)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info,
                             annotation=annotation)


def config_fields(exclude: Sequence[str] = ()) -> list[str]:
    """The config fields that are options, in field order, less ``exclude``."""
    return [name for name, rule in TrainConfig.settings().items()
            if rule.cli is not None and name not in exclude]


def add_parameters(func: Callable[..., Any], parameters: list[inspect.Parameter],
                   collect: Callable[[dict[str, Any], dict[str, Any]], None],
                   provides: Sequence[str] = ()) -> Callable[..., Any]:
    """``func`` with ``parameters`` added to the signature typer reads.

    ``collect(values, kwargs)`` turns the values of the added parameters into keyword
    arguments of ``func`` (``provides`` names those it adds, which leave the signature).
    """
    own = inspect.signature(func, eval_str=True)
    hints = typing.get_type_hints(func)
    added = {p.name for p in parameters}
    kept = [p.replace(annotation=hints.get(p.name, p.annotation),
                      kind=inspect.Parameter.KEYWORD_ONLY)
            for p in own.parameters.values() if p.name not in provides]

    @functools.wraps(func)
    def command(**kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in list(kwargs) if name in added}
        collect(values, kwargs)
        return func(**kwargs)

    signature = inspect.Signature([*kept, *parameters])
    command.__signature__ = signature  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    return command


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def training_options(preset: TrainConfig, *, exclude: Sequence[str] = ()) -> Decorator:
    """Decorator: add an option for every TrainConfig field (less ``exclude``), with the
    preset's values as the defaults shown, and pass ``changes: ConfigChanges``.

    Values not given are None (not the preset's): on ``--resume`` the stored config
    supplies them.
    """
    parameters = [config_parameter(name, preset) for name in config_fields(exclude)]

    def collect(values: dict[str, Any], kwargs: dict[str, Any]) -> None:
        changes = ConfigChanges()
        for name, value in values.items():
            if name in OPTION_FIELDS:
                if value:
                    changes.pairs[name] = list(value)
            else:
                changes.set(name, value)
        kwargs["changes"] = changes

    return lambda func: add_parameters(func, parameters, collect, provides=("changes",))


#: Options that set one model option each: name -> (type, help).
MODEL_SHORTCUTS: dict[str, tuple[Any, str]] = {
    "widths": (list_parser(int, Setting(help="", low=1), "--widths"),
               "Hidden widths of the MLP, e.g. 256,256,256 (model option widths)."),
    "width": (number_parser(float, Setting(help="", low=0, low_open=True), "--width"),
              "Width multiplier of vgg*/resnet* (model option width)."),
    "activation": (None, "Hidden activation of the MLP: relu, leaky_relu, tanh, gelu "
                         "(model option activation)."),
}


def model_shortcuts(names: Sequence[str] = ("widths", "width"),
                    preset: TrainConfig | None = None) -> Decorator:
    """Decorator: ``--widths`` and the like, each one model option; the command's
    ``changes`` (from :func:`training_options`) receives them."""
    parameters = []
    for name in names:
        kind, text = MODEL_SHORTCUTS[name]
        shown = _shown(tuple((preset.model_options if preset else {}).get(name, ())) or None)
        extra = {"parser": kind, "metavar": "LIST" if name == "widths" else "NUMBER"} \
            if kind is not None else {}
        parameters.append(inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, annotation=str | None,
            default=typer.Option(None, f"--{name}", help=text, rich_help_panel="Model",
                                 show_default=shown, **extra)))

    def collect(values: dict[str, Any], kwargs: dict[str, Any]) -> None:
        for name, value in values.items():
            value = list(value) if isinstance(value, tuple) else value
            kwargs["changes"].set_option("model_options", name, value)

    return lambda func: add_parameters(func, parameters, collect)


# ------------------------------------------------------------------ arrays of a file
def array_keys(*names: str) -> Decorator:
    """Decorator: ``--NAME-key`` (default NAME) for each array a command reads from a
    .npz; passes ``keys``, a dict NAME -> the array's name in the file."""
    parameters = [inspect.Parameter(
        f"{name}_key", inspect.Parameter.KEYWORD_ONLY, annotation=str,
        default=typer.Option(name, f"--{name}-key", rich_help_panel="Arrays", metavar="NAME",
                             help=f"Name of the {name} array in the file."))
        for name in names]

    def collect(values: dict[str, Any], kwargs: dict[str, Any]) -> None:
        keys = {name: values[f"{name}_key"] for name in names}
        clashes = sorted({key for key in keys.values() if list(keys.values()).count(key) > 1})
        if clashes:
            raise NCInputError(f"--*-key: each array needs its own name; {', '.join(clashes)} "
                               "is given twice")
        kwargs["keys"] = keys

    return lambda func: add_parameters(func, parameters, collect, provides=("keys",))


def read_arrays(file: Path, keys: dict[str, str], required: Sequence[str]) -> dict[str, Any]:
    """The arrays of ``file`` by their role (the keys of ``keys``); the ``required`` roles
    must be there, the others are left out when absent."""
    from nclab.core.io import load_npz

    arrays = load_npz(file, required=tuple(keys[name] for name in required))
    return {name: arrays[key] for name, key in keys.items() if key in arrays}


# ------------------------------------------------------------------ runtime options
@dataclass(frozen=True)
class Runtime:
    """Where and how a command computes; nothing here changes its results."""

    device: str
    threads: int
    progress: bool

    def apply_threads(self, console: Any = None) -> None:
        """Set torch's and the BLAS's thread counts; say so when ``--threads`` chose
        another count than the default (the Trainer's too)."""
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(self.threads)
        threadpool_limits(self.threads)
        if console is not None and self.threads != DEFAULT_THREADS:
            console.print(f"torch threads: {self.threads} (--threads)", highlight=False)


def _device_callback(value: str) -> str:
    resolve_device(value, "--device")  # the one device check, also the Python API's
    return value


def runtime_parameters(progress: bool = True) -> list[inspect.Parameter]:
    """``--device``, ``--threads`` (and ``--progress/--no-progress``)."""
    runtime = "Runtime (no effect on the results)"
    made = [
        ("device", str, typer.Option("auto", "--device", callback=_device_callback,
                                     rich_help_panel=runtime,
                                     help="auto (CUDA if available), cpu, cuda, cuda:1...")),
        ("threads", int, typer.Option(DEFAULT_THREADS, "--threads", rich_help_panel=runtime,
                                      help="CPU threads of torch and numpy's BLAS (at most "
                                           f"{PER_CORE} per core).",
                                      **integer("--threads", high=most_parallel()))),
    ]
    if progress:
        made.append(("progress", bool, typer.Option(True, "--progress/--no-progress",
                                                    rich_help_panel=runtime,
                                                    help="Progress bars.")))
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info,
                              annotation=annotation) for name, annotation, info in made]


def runtime_options(progress: bool = True) -> Decorator:
    """Decorator: add the runtime options and pass ``runtime: Runtime``."""
    def collect(values: dict[str, Any], kwargs: dict[str, Any]) -> None:
        kwargs["runtime"] = Runtime(values["device"], values["threads"],
                                    values.get("progress", False))

    return lambda func: add_parameters(func, runtime_parameters(progress), collect,
                                       provides=("runtime",))
