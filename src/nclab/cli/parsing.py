"""Text of the command line into typed values: ``KEY=VALUE`` options and annotated types.

``--data-opt``, ``--model-opt`` and ``--opt`` hold ``KEY=VALUE`` texts; each value is
read as the type its owner annotates (the data set builder, the model builder or the
task's options dataclass, named by :func:`nclab.train.tasks.option_types`). The library
below the command line takes typed values only.
"""

from __future__ import annotations

import inspect
import json
import math
import types
import typing
from collections.abc import Sequence
from typing import Any, Literal, Union

from nclab.core.errors import NCInputError
from nclab.core.validation import describe_type
from nclab.train.config import TrainConfig
from nclab.train.tasks import option_types

_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def split_pairs(pairs: Sequence[str] | None, option: str) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{"k": "v"}`` (the text of each value)."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise NCInputError(f"{option} expects KEY=VALUE; got '{pair}'")
        out[key.strip()] = text
    return out


def typed_pairs(pairs: Sequence[str] | None, option: str, owner: str,
                hints: dict[str, Any]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs converted to the types ``hints`` gives each accepted key.

    Parameters
    ----------
    pairs : list of str
    option : str
        The option's name, for messages (``--data-opt``).
    owner : str
        What takes the options, for messages (``dataset 'gaussian'``).
    hints : dict
        Accepted key -> type annotation (``typing.Any`` when the builder has none).
    """
    out = {}
    for key, text in split_pairs(pairs, option).items():
        if key not in hints:
            raise NCInputError(f"{option}: {owner} has no option {key}; it accepts: "
                               f"{', '.join(hints) or 'none'}")
        try:
            out[key] = convert_text(text, hints[key])
        except ValueError:
            raise NCInputError(f"{option} {key}={text}: {owner} takes "
                               f"{describe_type(hints[key], written=True)} for {key}") from None
    return out


def convert_text(text: str, hint: Any) -> Any:
    """The text of one value (a command line's) as the annotated type; ValueError if it
    is not one. ``Any`` (or no annotation) reads JSON, else keeps the text."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    word = text.strip()
    if hint in (Any, inspect.Parameter.empty):
        try:
            return json.loads(word)
        except json.JSONDecodeError:
            return text
    if origin in (Union, types.UnionType):
        if type(None) in args and word.lower() in ("none", "null"):
            return None
        for arg in sorted((a for a in args if a is not type(None)), key=lambda a: a is str):
            try:
                return convert_text(text, arg)
            except ValueError:
                continue
        raise ValueError(text)
    if origin is Literal:
        if word in map(str, args):
            return next(a for a in args if str(a) == word)
        raise ValueError(text)
    if hint is bool:
        if word.lower() in _TRUE + _FALSE:
            return word.lower() in _TRUE
        raise ValueError(text)
    if hint is int:
        return int(word)
    if hint is float:
        value = float(word)
        if not math.isfinite(value):
            raise ValueError(text)
        return value
    if hint is str:
        return text
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        return _convert_sequence(word, args[0] if args else Any)
    if origin is dict or hint is dict:
        value = json.loads(word)
        if not isinstance(value, dict):
            raise ValueError(text)
        return value
    return text  # a type a command line cannot spell: passed on for the builder to judge


def _convert_sequence(word: str, item: Any) -> list[Any]:
    """``1,2,3`` or a JSON list, each item converted to ``item``."""
    if word.startswith("["):
        try:
            values = json.loads(word)
        except json.JSONDecodeError:
            raise ValueError(word) from None
        if not isinstance(values, list):
            raise ValueError(word)
        return [convert_text(json.dumps(v) if not isinstance(v, str) else v, item)
                for v in values]
    return [convert_text(part, item) for part in word.split(",") if part.strip()]


def options_from_text(config: TrainConfig, field: str, pairs: Sequence[str],
                      option: str | None = None) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` for the dict field ``field`` of ``config``, as typed values.

    Each value is converted to the type its owner annotates (the data set builder, the
    model builder or the task's options dataclass); an unknown key or a value that does
    not convert is one NCInputError line naming ``option`` (default: the field) and
    what the owner accepts.

    Examples
    --------
    >>> options_from_text(TrainConfig(dataset="gaussian"), "dataset_options",
    ...                   ["num_classes=3"])
    {'num_classes': 3}
    """
    owner, hints = option_types(config, field)
    return typed_pairs(pairs, option or field, owner, hints)
