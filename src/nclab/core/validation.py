"""Checks at the boundary of the public API: everything inside trusts its inputs.

Arrays (``as_features``, ``as_labels``, ``as_targets``, ...), scalars (``check_scalar``,
the one type-and-range check of a number), memory (``check_memory``, the one check that
a computation fits before it allocates) and annotated types: ``matches_type`` checks a
value read from JSON, ``describe_type`` says a type in words for the messages. Reading
text (a command line's) into values is the command line's business (``nclab.cli``).
"""

from __future__ import annotations

import math
import numbers
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

try:
    import resource
except ImportError:  # Windows: no address-space limit to read
    resource = None  # type: ignore[assignment]

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
    """The same numbers in a dtype and layout that ``torch.from_numpy`` takes and can
    compute with."""
    if any(stride < 0 for stride in array.strides):  # a reversed view: torch takes none
        array = np.ascontiguousarray(array)
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
    # a finite sum proves every entry finite (NaN and inf propagate) at the cost of one
    # reduction; an overflowing sum of finite entries falls through to the full test
    if x.is_floating_point() and math.isfinite(float(x.sum())):
        return
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


#: How ``check_scalar`` treats values equal to ``min_val`` / ``max_val``.
BOUNDARIES = ("both", "left", "right", "neither")


def check_scalar(value: Any, name: str, target_type: type | tuple[type, ...], *,
                 min_val: float | None = None, max_val: float | None = None,
                 include_boundaries: str = "both") -> Any:
    """``value`` checked to be one scalar of ``target_type`` inside a range (the shape of
    scikit-learn's ``sklearn.utils.check_scalar``); one NCInputError line otherwise.

    Parameters
    ----------
    value : object
    name : str
        What the value is, for the message (``"lambda_w"``, ``"--seeds"``).
    target_type : type or tuple of types
        An integral type (``int``, ``numbers.Integral``): any integer (Python, numpy or a
        0-d integer tensor), returned as an ``int``. A real type (``float``,
        ``numbers.Real``): any finite real number (integers included), returned as a
        ``float``. Bools count only where ``bool`` is in ``target_type``; NaN and inf
        never count as numbers. Other types: ``isinstance``, the value returned as is.
    min_val, max_val : float, optional
        The range; None: unbounded on that side.
    include_boundaries : {"both", "left", "right", "neither"}
        Which of ``min_val`` and ``max_val`` belong to the range.

    Returns
    -------
    int, float or object
        The value as its kind (see ``target_type``).

    Examples
    --------
    >>> check_scalar(3, "dim", int, min_val=1)
    3
    >>> check_scalar(0.0, "tau", float, min_val=0, include_boundaries="neither")
    Traceback (most recent call last):
        ...
    nclab.core.errors.NCInputError: tau must be a finite number > 0; got 0.0
    """
    if include_boundaries not in BOUNDARIES:
        raise ValueError(f"include_boundaries must be one of {BOUNDARIES}; "
                         f"got {include_boundaries!r}")
    kinds = target_type if isinstance(target_type, tuple) else (target_type,)
    kind = _scalar_kind(kinds)
    number = _as_kind(value, kind, kinds)
    bounds = _range_text(min_val, max_val, include_boundaries)
    if number is None or not _within(number, min_val, max_val, include_boundaries):
        noun = {"integer": "an integer", "real": "a finite number"}.get(
            kind, " or ".join(getattr(k, "__name__", str(k)) for k in kinds))
        raise NCInputError(f"{name} must be {noun}{' ' + bounds if bounds else ''}; "
                           f"got {_value_text(value)}")
    return number


def _scalar_kind(kinds: tuple[type, ...]) -> str:
    numeric = [k for k in kinds if k is not bool]
    if numeric and all(issubclass(k, numbers.Integral) or k is np.integer for k in numeric):
        return "integer"
    if numeric and all(issubclass(k, numbers.Real) or k is np.floating for k in numeric):
        return "real"
    return "other"


def _as_kind(value: Any, kind: str, kinds: tuple[type, ...]) -> Any:
    """``value`` as an int / float of ``kind``, or None when it is not one."""
    if isinstance(value, (bool, np.bool_)) or (torch.is_tensor(value)
                                                and value.dtype == torch.bool):
        return bool(value) if bool in kinds else None
    if kind == "other":
        return value if isinstance(value, kinds) else None
    if getattr(value, "ndim", 0) != 0 or isinstance(value, (str, bytes)):
        return None
    if kind == "integer":
        try:
            return operator.index(value)
        except TypeError:
            return None
    if isinstance(value, numbers.Real) or (getattr(value, "dtype", None) is not None
                                           and not np.iscomplexobj(value)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        return number if np.isfinite(number) else None
    return None


def _within(number: Any, low: float | None, high: float | None, include: str) -> bool:
    if isinstance(number, bool):
        return True
    if low is not None and (number < low or (number == low and include in ("right", "neither"))):
        return False
    return high is None or number < high or (number == high and include in ("right", "both"))


def _range_text(low: float | None, high: float | None, include: str) -> str:
    """``>= 1``, ``> 0`` or ``in [0, 1)``."""
    left, right = include in ("left", "both"), include in ("right", "both")
    if low is not None and high is not None:
        return (f"in {'[' if left else '('}{_number_text(low)}, "
                f"{_number_text(high)}{']' if right else ')'}")
    if low is not None:
        return f"{'>=' if left else '>'} {_number_text(low)}"
    if high is not None:
        return f"{'<=' if right else '<'} {_number_text(high)}"
    return ""


def _number_text(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _value_text(value: Any) -> str:
    """A value as a message shows it: on one line, numpy and torch scalars as numbers."""
    if isinstance(value, np.generic) or (torch.is_tensor(value) and value.numel() == 1):
        value = value.item()
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1 (:func:`check_scalar` of an integer with ``min_val=1``)."""
    if type(value) is int and value >= 1:  # the common case, without the general checks
        return value
    return check_scalar(value, name, int, min_val=1)


def positive_number(value: Any, name: str, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0, or >= 0 with ``allow_zero`` (:func:`check_scalar`)."""
    return check_scalar(value, name, float, min_val=0,
                        include_boundaries="both" if allow_zero else "right")


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
    """Bytes free on ``device`` (a torch.device or its name): the GPU's; for the host,
    the least of MemAvailable, the room left under this process's address-space limit
    (``ulimit -v``) and under its control group's memory limit (a container's)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    limits = [free for free in (_host_available(), _address_space_left(), _cgroup_left())
              if free is not None]
    return max(0, min(limits)) if limits else None


def _host_available() -> int | None:
    meminfo = _read_kib("/proc/meminfo", "MemAvailable:")
    if meminfo is not None:
        return meminfo
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _address_space_left() -> int | None:
    if resource is None:
        return None
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    used = _read_kib("/proc/self/status", "VmSize:")
    if limit == resource.RLIM_INFINITY or used is None:
        return None
    return limit - used


def _cgroup_left() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max") as limit, \
                open("/sys/fs/cgroup/memory.current") as current:
            text = limit.read().strip()
            return None if text == "max" else int(text) - int(current.read())
    except (OSError, ValueError):
        return None


def _read_kib(path: str, key: str) -> int | None:
    """The value in bytes of the ``key  N kB`` line of a /proc file (None: not there)."""
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(needed: int, device: Any, what: str) -> None:
    """Refuse, in one line, a computation that needs more memory than ``device`` (a
    torch.device or its name, "cpu" for the host) has free, instead of allocating until
    the process is killed. The one such check of the package: the UFM, the kernel sweep,
    the data set builders and the model builders estimate their bytes and call it."""
    free = available_memory(device)
    if free is not None and needed > free:
        raise NCInputError(f"{what} needs about {_gib(needed)} GiB; {device} has "
                           f"{_gib(free)} GiB free: use smaller sizes")


def _gib(count: int) -> str:
    return f"{count / 2**30:.3g}"


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


# ------------------------------------------------------------------ annotated types
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
