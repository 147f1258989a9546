"""Fuzz: random dtypes, shapes, scales and labels into nclab.measure and CollapseStats.

Every draw ends in one of two ways: a result equal to an independent float64
brute-force computation on a rescaled copy of the very values passed in, or an
NCInputError with a one-line message. Any other exception, or a wrong number, fails.
Inputs that are valid must succeed; inputs that are not must raise NCInputError.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nclab import CollapseStats, NCInputError, measure

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# (kind, dtype, largest decimal exponent of the scale used with it): nearly the whole
# range each dtype can hold (float16 only reaches 65504); the metrics must be scale-free
# throughout it.
REAL_TYPES = [
    ("numpy", np.float64, 300), ("numpy", np.float32, 30), ("numpy", np.float16, 2),
    ("numpy", np.longdouble, 300), ("numpy", np.dtype(">f8"), 300),
    ("numpy", np.int8, 0), ("numpy", np.int16, 2), ("numpy", np.int32, 6),
    ("numpy", np.int64, 12), ("numpy", np.uint8, 0), ("numpy", np.uint16, 2),
    ("numpy", np.uint32, 6), ("numpy", np.uint64, 12), ("numpy", np.bool_, 0),
    ("torch", torch.float64, 300), ("torch", torch.float32, 30),
    ("torch", torch.float16, 2), ("torch", torch.bfloat16, 30), ("torch", torch.int32, 6),
    ("torch", torch.uint8, 0), ("torch", torch.bool, 0),
]
OTHER_TYPES = [
    ("numpy", np.complex64, 0), ("numpy", np.complex128, 0), ("numpy", object, 0),
    ("numpy", "U12", 0), ("numpy", "S12", 0), ("numpy", "datetime64[s]", 0),
    ("numpy", "timedelta64[ms]", 0), ("numpy", [("a", "f8")], 0),
    ("torch", torch.complex64, 0),
]
LABEL_FAULTS = ["negative", "huge", "int64_max", "uint64_top", "fractional", "nan", "inf",
                "bool", "str", "float_huge", "complex", "two_d", "too_few"]
FEATURE_FAULTS = ["dtype", "0d", "1d", "3d", "no_columns", "no_rows", "nan", "inf",
                  "overflow"]
FAULTS = ["none"] * 2 * (len(LABEL_FAULTS) + len(FEATURE_FAULTS)) + LABEL_FAULTS + FEATURE_FAULTS
LABEL_TYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
               np.uint64, np.float16, np.float32, np.float64]


# ------------------------------------------------------------------ brute-force reference
def reference(H: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """nc1, nc1_trace, cdnv, equinorm_means by loops over samples and classes (float64)."""
    classes = sorted(set(y.tolist()))
    N, d = H.shape
    mu = np.array([H[y == c].mean(axis=0) for c in classes])
    centred = mu - mu.mean(axis=0)
    sigma_w = sum(np.outer(H[i] - mu[classes.index(y[i])], H[i] - mu[classes.index(y[i])])
                  for i in range(N)) / N
    sigma_b = sum(np.outer(m, m) for m in centred) / len(classes)
    values, vectors = np.linalg.eigh(sigma_b)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    cutoff = max(d, len(classes)) * np.finfo(float).eps * values[0]
    pinv = sum(np.outer(vectors[:, k], vectors[:, k]) / values[k]
               for k in range(min(len(classes) - 1, d)) if values[k] > cutoff)
    sigma2 = [np.mean(np.sum((H[y == c] - mu[k]) ** 2, axis=1)) for k, c in enumerate(classes)]
    pairs = [(a, b) for a in range(len(classes)) for b in range(a + 1, len(classes))]
    with np.errstate(divide="ignore", invalid="ignore"):
        cdnv = np.mean([(sigma2[a] + sigma2[b]) / (2 * np.sum((mu[a] - mu[b]) ** 2))
                        for a, b in pairs])
    norms = np.sqrt(np.sum(centred * centred, axis=1))
    return {"nc1": float(np.trace(sigma_w @ pinv) / len(classes)),
            "nc1_trace": float(np.trace(sigma_w) / np.trace(sigma_b)),
            "cdnv": float(cdnv), "equinorm_means": float(norms.std() / norms.mean()),
            "ambiguous_rank": bool(np.any((values > 1e-13 * values[0])
                                          & (values < 1e-6 * values[0])))}


def class_means(H: np.ndarray, y: np.ndarray, num_classes: int) -> tuple[np.ndarray, ...]:
    counts = np.array([np.sum(y == c) for c in range(num_classes)])
    means = np.array([H[y == c].mean(axis=0) if counts[c] else np.zeros(H.shape[1])
                      for c in range(num_classes)])
    return counts, means


# ------------------------------------------------------------------ drawing inputs
@st.composite
def cases(draw):
    """At most one fault per case (about two thirds have none): both ends are reached."""
    fault = draw(st.sampled_from(FAULTS))
    kind, dtype, max_exp = draw(st.sampled_from(OTHER_TYPES if fault == "dtype"
                                                else REAL_TYPES))
    return {
        "fault": fault, "kind": kind, "dtype": dtype,
        "n": 0 if fault == "no_rows" else draw(st.integers(6, 30)),
        "d": 0 if fault == "no_columns" else draw(st.integers(1, 5)),
        "classes": draw(st.integers(2, 5)),
        "exponent": round(draw(st.floats(-1, 1)) * max_exp),
        "label_type": draw(st.sampled_from(LABEL_TYPES)),
        "seed": draw(st.integers(0, 2**16)),
    }


def make_features(case, rng, y):
    n, d, fault = case["n"], case["d"], case["fault"]
    mu = 3.0 * rng.normal(size=(case["classes"], d))
    base = mu[y] + rng.normal(size=(n, d))
    if fault in ("nan", "inf") and base.size:
        base[rng.integers(n), rng.integers(d)] = np.nan if fault == "nan" else np.inf
    shaped = {"0d": lambda: base.sum(), "1d": lambda: base.sum(axis=1),
              "3d": lambda: base[..., None]}
    base = np.asarray(shaped.get(fault, lambda: base)())
    scaled = np.asarray(base * 10.0 ** (40 if fault == "overflow" else case["exponent"]))
    if case["kind"] == "torch":
        whole = not case["dtype"].is_floating_point and case["dtype"] != torch.bool
        return torch.from_numpy(np.asarray(np.round(scaled) if whole else scaled)).to(
            case["dtype"])
    dtype = np.dtype(case["dtype"])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        with np.errstate(invalid="ignore"):  # NaN has no integer: some value stands for it
            return np.clip(np.round(scaled), info.min, info.max).astype(dtype)
    if dtype.kind == "b":
        return scaled > 0
    if dtype.kind == "c":
        return (scaled + 1j * scaled).astype(dtype)
    if dtype.kind in "Mm":
        return np.nan_to_num(np.round(scaled)).astype(np.int64).astype(dtype)
    if dtype.kind == "V":
        return np.zeros(scaled.shape, dtype=dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        return scaled.astype(dtype)


def make_labels(case, rng):
    """(labels as passed, the same as int64 where they are valid, else None)."""
    n, fault = case["n"], case["fault"]
    y = rng.integers(0, case["classes"], size=n)
    bad = {"negative": -1, "huge": 10**12, "int64_max": 2**63 - 1, "fractional": 0.5,
           "nan": np.nan, "inf": np.inf, "float_huge": 1e20}
    if fault not in LABEL_FAULTS or n == 0:
        return y.astype(case["label_type"]), y
    if fault == "too_few":
        return y[:-1], None
    if fault in bad:
        values = y.astype(np.float64 if isinstance(bad[fault], float) else np.int64)
        values[rng.integers(n)] = bad[fault]
        return values, None
    if fault == "uint64_top":
        values = y.astype(np.uint64)
        values[rng.integers(n)] = np.uint64(2**64 - 1)
        return values, None
    return {"bool": y > 0, "str": y.astype(str), "complex": y + 0j,
            "two_d": y[:, None]}[fault], None


def as_float64(features) -> np.ndarray | None:
    """The values passed, in float64, or None when they are not real numbers."""
    if torch.is_tensor(features):
        if features.is_complex():
            return None
        return features.to(torch.float64).numpy()
    if np.asarray(features).dtype.kind not in "biuf":
        return None
    return np.asarray(features).astype(np.float64)


def valid_features(H64) -> bool:
    return H64 is not None and H64.ndim == 2 and H64.shape[1] >= 1 and np.isfinite(H64).all()


def rescaled(H64: np.ndarray) -> np.ndarray:
    peak = np.abs(H64).max()
    return H64 / peak if peak > 0 else H64


def tolerance(features) -> float:
    """Relative tolerance: narrow floats are computed in float32, the rest in float64."""
    narrow = (features.dtype in (torch.float16, torch.bfloat16, torch.float32)
              if torch.is_tensor(features) else np.asarray(features).dtype.itemsize <= 4
              and np.asarray(features).dtype.kind == "f")
    return 2e-3 if narrow else 1e-7


def expect_one_line_error(call):
    with pytest.raises(NCInputError) as info:
        call()
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ the properties
@FUZZ
@given(case=cases())
def test_measure_is_right_or_refuses(case):
    rng = np.random.default_rng(case["seed"])
    labels, y = make_labels(case, rng)
    features = make_features(case, rng, y if y is not None else
                             rng.integers(0, case["classes"], size=case["n"]))
    H64 = as_float64(features)
    valid = valid_features(H64) and y is not None and len(y) >= 1
    if valid:
        present = np.unique(y)
        counts = np.bincount(y)
        centred = np.array([H64[y == c].mean(axis=0) for c in present])
        centred -= centred.mean(axis=0)
        valid = len(present) >= 2 and counts.max() >= 2 and centred.any()
    if not valid:
        expect_one_line_error(lambda: measure(features, labels))
        return
    try:
        result = measure(features, labels)
    except NCInputError as exc:  # a valid input must be measured
        pytest.fail(f"valid input refused: {exc}")
    ref = reference(rescaled(H64), y)
    rel = tolerance(features)
    names = ("nc1_trace", "cdnv", "equinorm_means") + (() if ref["ambiguous_rank"]
                                                       else ("nc1",))
    for name in names:
        if not np.isfinite(ref[name]):  # coinciding class means: cdnv divides by zero
            assert not np.isfinite(getattr(result, name)), name
            continue
        assert getattr(result, name) == pytest.approx(ref[name], rel=rel, abs=1e-12), name


@FUZZ
@given(case=cases(), num_classes=st.integers(1, 6))
def test_collapse_stats_update_is_right_or_refuses(case, num_classes):
    rng = np.random.default_rng(case["seed"])
    labels, y = make_labels(case, rng)
    features = make_features(case, rng, y if y is not None else
                             rng.integers(0, case["classes"], size=case["n"]))
    H64 = as_float64(features)
    stats = CollapseStats(num_classes)
    valid = valid_features(H64) and y is not None and (len(y) == 0 or y.max() < num_classes)
    if not valid:
        expect_one_line_error(lambda: stats.update(features, labels))
        return
    stats.update(features, labels)
    scale = np.abs(H64).max() if H64.size else 1.0
    counts, means = class_means(H64, y, num_classes)
    np.testing.assert_array_equal(stats.counts, counts)
    np.testing.assert_allclose(stats.means, means, rtol=0,
                               atol=tolerance(features) * max(scale, 1e-300))
