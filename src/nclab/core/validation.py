"""Checks at the boundary of the public API: everything inside trusts its inputs.

Arrays (``as_features``, ``as_labels``, ``as_targets``, ...) and values of annotated
types: ``convert_text`` reads the text of a ``KEY=VALUE`` option as a builder's or an
options dataclass's annotation, ``matches_type`` checks a value read from JSON,
``describe_type`` says a type in words for the messages.
"""

from __future__ import annotations

import inspect
import json
import math
import operator
import os
import types
import typing
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal, Union

import numpy as np
import torch

from nclab.core.errors import NCInputError

_HALF_TYPES = (torch.float16, torch.bfloat16)
# torch has these dtypes but no min/max (nor most arithmetic) for them: read through numpy
_WIDE_UNSIGNED = (torch.uint16, torch.uint32, torch.uint64)
# Without num_classes, C = max label + 1 sizes the per-class state before any sample is
# read: a label far beyond the sample count (a typo, a hash, 1e12) must not allocate C x d.
CLASSES_PER_SAMPLE = 2
MIN_CLASS_LIMIT = 1024
_INT64_MAX = np.iinfo(np.int64).max


def real_tensor(value: Any, name: str) -> torch.Tensor:
    """``value`` as a detached tensor of real numbers (bool, integer or floating).

    numpy arrays and nested lists become CPU tensors (without a copy where torch can
    share the buffer); tensors stay on their device. Raises NCInputError naming ``name``
    for complex numbers, strings, bytes, dates, structured or object arrays, ragged
    lists, and meta, sparse or quantized tensors.
    """
    if not torch.is_tensor(value):
        return torch.from_numpy(_torch_compatible(_real_array(value, name), name))
    x = value.detach()
    if x.device.type == "meta":
        raise NCInputError(f"{name} is a meta tensor: it has a shape but no values")
    if x.layout != torch.strided:
        raise NCInputError(f"{name} is a {x.layout} tensor; pass a dense one (.to_dense())")
    if x.is_quantized:
        raise NCInputError(f"{name} is quantized ({x.dtype}); pass .dequantize() of it")
    if x.is_complex():
        raise NCInputError(_complex_message(name, x.dtype))
    if x.dtype in _WIDE_UNSIGNED:
        return torch.from_numpy(_torch_compatible(x.cpu().numpy(), name)).to(x.device)
    if not (x.is_floating_point() or x.dtype == torch.bool or _is_integer(x.dtype)):
        raise NCInputError(f"{name} must hold real numbers; got dtype {x.dtype}")
    return x


def _is_integer(dtype: torch.dtype) -> bool:
    try:
        torch.iinfo(dtype)
    except TypeError:
        return False
    return True


def _complex_message(name: str, dtype: Any) -> str:
    return (f"{name} holds complex numbers ({dtype}); nclab measures real vectors: pass "
            "the real part, the modulus, or real and imaginary parts as separate columns")


def _real_array(value: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):  # ragged nested lists
        raise NCInputError(f"{name} is not a rectangular array of numbers") from None
    if array.dtype.kind == "c":
        raise NCInputError(_complex_message(name, array.dtype))
    if array.dtype.kind not in "biuf":  # strings, bytes, dates, structured, objects
        raise NCInputError(f"{name} must hold real numbers; got dtype {array.dtype}")
    return array


def _torch_compatible(array: np.ndarray, name: str) -> np.ndarray:
    """The same numbers in a dtype that ``torch.from_numpy`` takes and can compute with."""
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype.kind == "u" and array.dtype.itemsize > 1:
        # uint64 beyond int64 becomes float64: still larger than any valid label or count
        too_wide = array.size > 0 and array.dtype.itemsize == 8 and array.max() > _INT64_MAX
        return array.astype(np.float64 if too_wide else np.int64)
    if array.dtype.kind == "f" and array.dtype.itemsize > 8:  # long double
        with np.errstate(over="ignore"):
            narrowed = array.astype(np.float64)
        if not np.isfinite(narrowed).all() and np.isfinite(array).all():
            raise NCInputError(f"{name} holds values beyond the float64 range ({array.dtype})")
        return narrowed
    return array


def as_features(features: Any, name: str = "features", check_finite: bool = True) -> torch.Tensor:
    """Return ``features`` as a 2-D floating tensor (N, d) on its own device, d >= 1.

    numpy arrays become CPU tensors without a copy; integers and bools become float64;
    inputs narrower than 32 bits (float16, bfloat16, float8) are promoted to float32,
    because a Gram matrix accumulated in 8 mantissa bits is meaningless.
    """
    x = real_tensor(features, name)
    if x.ndim != 2:
        raise NCInputError(f"{name} must be 2-D (N x d); got shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise NCInputError(f"{name} has shape {tuple(x.shape)}: no feature columns (d = 0)")
    if not x.is_floating_point():
        x = x.to(torch.float64)
    elif x.dtype.itemsize < 4:
        x = x.to(torch.float32)
    if check_finite:
        ensure_finite(x, name)
    return x


def ensure_finite(x: torch.Tensor, name: str = "features") -> None:
    """Raise NCInputError naming the first row of ``x`` that holds NaN or inf."""
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(dim=1).nonzero()[0, 0])
        raise NCInputError(f"{name} contain NaN or inf (first at row {bad})")


def as_labels(labels: Any, num_samples: int, num_classes: int | None) -> torch.Tensor:
    """Return ``labels`` as a 1-D int64 tensor, checked against ``num_classes``.

    Float labels are accepted when every value is a whole number. Without
    ``num_classes`` the largest label sets C, and it may not exceed
    max(CLASSES_PER_SAMPLE * N, MIN_CLASS_LIMIT): more classes than the samples can
    fill must be asked for explicitly.
    """
    y = real_tensor(labels, "labels")
    if y.ndim != 1:
        raise NCInputError(f"labels must be 1-D; got shape {tuple(y.shape)}")
    if y.shape[0] != num_samples:
        raise NCInputError(f"labels has {y.shape[0]} entries but features has {num_samples} rows")
    if y.dtype == torch.bool:
        raise NCInputError(f"labels must be integers; got dtype {y.dtype}")
    if not num_samples:
        return y.to(torch.int64)
    if y.is_floating_point():
        fractional = ~torch.isfinite(y) | (y != torch.round(y))
        if bool(fractional.any()):
            value = y[fractional.nonzero()[0, 0]].item()
            raise NCInputError(f"labels must be integers; found {value}")
    # the extremes are read as Python numbers, before any cast that could wrap them
    low, high = y.min().item(), y.max().item()
    if low < 0:
        raise NCInputError(f"labels must be >= 0; found {_label_text(low)}")
    if num_classes is not None and high >= num_classes:
        raise NCInputError(
            f"label {_label_text(high)} is out of range for num_classes={num_classes} "
            f"(labels must lie in 0..{num_classes - 1})"
        )
    _check_inferred_classes(high, num_samples, num_classes)
    return y.to(torch.int64)


def _check_inferred_classes(high: float, num_samples: int, num_classes: int | None) -> None:
    if high > _INT64_MAX:
        raise NCInputError(f"label {_label_text(high)} does not fit in a 64-bit integer")
    limit = class_limit(num_samples)
    if num_classes is None and high >= limit:
        raise NCInputError(
            f"label {_label_text(high)} would make {_label_text(high + 1)} classes for "
            f"{num_samples} samples (at most {limit} without num_classes); if that many "
            "classes are meant, pass num_classes (nclab measure: --num-classes) or a weight"
        )


def class_limit(num_samples: int) -> int:
    """The most classes that labels alone may imply for ``num_samples`` samples."""
    return max(CLASSES_PER_SAMPLE * num_samples, MIN_CLASS_LIMIT)


def _label_text(value: float) -> str:
    """A label as written: a whole number in full up to 1e15, else in scientific form."""
    return str(int(value)) if abs(value) < 1e15 else f"{value:.6g}"


def as_classifier(
    weight: Any, bias: Any, num_classes: int, dim: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Return (W, b) as float64 numpy arrays of shapes (C, d) and (C,), or None.

    Any real dtype is accepted (bfloat16 and float16 classifiers included) and read in
    float64.
    """
    if weight is None:
        if bias is not None:
            raise NCInputError("bias given without weight")
        return None, None
    w = to_numpy64(weight, "weight")
    if w.shape != (num_classes, dim):
        raise NCInputError(weight_shape_message(w.shape, num_classes, dim))
    if not np.isfinite(w).all():
        raise NCInputError("weight contains NaN or inf")
    if bias is None:
        return w, None
    b = to_numpy64(bias, "bias")
    if b.shape != (num_classes,):
        raise NCInputError(f"bias must have shape (C,) = ({num_classes},); got {b.shape}")
    if not np.isfinite(b).all():
        raise NCInputError("bias contains NaN or inf")
    return w, b


def classifier_rows(weight: Any, dim: int | None = None, classes: int | None = None) -> int:
    """The number of rows C of a classifier weight (C, d).

    NCInputError unless it is 2-D with ``dim`` columns (when ``dim``, the features'
    dimension d, is given); ``classes`` (the C the labels imply) only makes that message
    exact.
    """
    shape = tuple(real_tensor(weight, "weight").shape)
    if len(shape) != 2:
        raise NCInputError(f"weight must be 2-D (C x d); got shape {shape}")
    if dim is not None and shape[1] != dim:
        raise NCInputError(weight_shape_message(shape, classes, dim))
    return shape[0]


def weight_shape_message(shape: tuple[int, ...], num_classes: int | None, dim: int) -> str:
    """What a classifier weight of the wrong ``shape`` should be, (C, d), with the hint
    to transpose it when its transpose fits (an (d, C) weight, as some frameworks store
    a linear layer)."""
    expected = f"({'C' if num_classes is None else num_classes}, {dim})"
    transposed = len(shape) == 2 and shape[0] == dim and num_classes in (None, shape[1])
    hint = f": pass weight.T (the {shape[1]} classes as rows)" if transposed else ""
    return (f"weight must have shape (C, d) = {expected}, d = {dim} the features' "
            f"dimension; got {tuple(shape)}{hint}")


def to_numpy64(x: Any, name: str = "array") -> np.ndarray:
    """``x`` (array, tensor on any device and of any real dtype) as a float64 numpy array."""
    return real_tensor(x, name).to(device="cpu", dtype=torch.float64).numpy()


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1; NCInputError for bools, fractions, strings and values < 1."""
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if isinstance(value, (bool, np.bool_)) or number is None or number < 1:
        raise NCInputError(f"{name} must be an integer >= 1; got {value!r}")
    return number


def ensure_moderate_scale(x: Any, name: str, limit: float = 1e64) -> None:
    """Refuse values whose powers leave the float64 range in the metrics' products.

    Metrics normalised by squared norms of Gram matrices form fourth powers: magnitudes
    beyond ``limit`` overflow, and a nonzero array whose largest magnitude is below
    ``1 / limit`` underflows, so that it would look constant. Both are refused with the
    remedy; an all-zero array passes.
    """
    values = real_tensor(x, name).to(torch.float64)
    peak = float(values.abs().max()) if values.numel() else 0.0
    if not np.isfinite(peak):
        return  # reported as NaN or inf by the finiteness checks, with its row
    if peak > limit or 0 < peak < 1 / limit:
        raise NCInputError(
            f"{name} reach magnitude {peak:.3g}: the metrics' products of them leave the "
            f"float64 range; rescale them to magnitudes between {1 / limit:g} and {limit:g}"
        )


def available_memory(device: Any) -> int | None:
    """Bytes free on ``device`` (a torch.device): the GPU's, else the host's MemAvailable."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def check_memory(needed: int, device: Any, what: str) -> None:
    """Refuse, in one line, a computation that needs more memory than ``device`` has free
    (instead of allocating until the process is killed)."""
    free = available_memory(device)
    if free is not None and needed > free:
        raise NCInputError(f"{what} needs about {needed / 2**30:.3g} GiB; {device} has "
                           f"{free / 2**30:.3g} GiB free: use smaller sizes")


def as_targets(targets: Any, num_samples: int | None = None, name: str = "targets",
               check_finite: bool = False) -> torch.Tensor:
    """Return regression ``targets`` as a 2-D floating tensor (M, n) on its own device.

    A 1-D input (M,) is one target column (n = 1). numpy arrays become CPU tensors
    without a copy; integers are promoted to float64 and half precision to float32 (as
    :func:`as_features` does). With ``num_samples`` the number of rows M must equal it;
    with ``check_finite`` a NaN or inf is refused, naming its first row.
    """
    y = real_tensor(targets, name)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise NCInputError(f"{name} must be 1-D or 2-D (M x n); got shape {tuple(y.shape)}")
    if num_samples is not None and y.shape[0] != num_samples:
        raise NCInputError(f"{name} has {y.shape[0]} rows but features has {num_samples}")
    if y.dtype == torch.bool:
        raise NCInputError(f"{name} must be real numbers; got dtype {y.dtype}")
    if not torch.is_floating_point(y):
        y = y.to(torch.float64)
    elif y.dtype in _HALF_TYPES:
        y = y.to(torch.float32)
    if check_finite:
        ensure_finite(y, name)
    return y


# ------------------------------------------------------------------ values of annotated types
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


def matches_type(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as read from JSON) has the type ``hint``; ints count as floats."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(matches_type(value, arg) for arg in args)
    if origin is Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (list, tuple) or hint in (list, tuple):
        return isinstance(value, (list, tuple)) and (
            not args or all(matches_type(v, args[0]) for v in value))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return isinstance(value, hint)


def describe_type(hint: Any, written: bool = False) -> str:
    """A type annotation in words, for messages; ``written``: as a command line writes
    it (a list is comma-separated)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        words = [describe_type(a, written) for a in args if a is not type(None)]
        return " or ".join(words) + (" or none" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        plural = {int: "integers", float: "finite numbers", str: "names", bool: "true/false"}
        items = plural.get(args[0], "values") if args else "values"
        return f"a {'comma-separated ' if written else ''}list of {items}"
    named = {bool: "true or false", int: "an integer", float: "a finite number", str: "text",
             dict: "a JSON object"}
    return named.get(origin or hint, getattr(hint, "__name__", "a JSON value"))


def builder_hints(builder: Callable[..., Any], names: Sequence[str]) -> dict[str, Any]:
    """name -> type annotation of the keyword parameters ``names`` of ``builder``
    (``typing.Any`` where there is none, or where it does not resolve)."""
    target = builder.func if isinstance(builder, partial) else builder
    try:
        hints = typing.get_type_hints(target)
    except (NameError, TypeError):
        hints = {}
    return {name: hints.get(name, Any) for name in names}
