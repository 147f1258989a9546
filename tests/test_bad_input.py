"""Bad input to the Python API: one NCInputError line each, never another exception.

Also the inputs next to them that must keep working: half-precision classifiers,
unusual but real dtypes, many classes when they are asked for.
"""

import io
import warnings
import zipfile

import numpy as np
import pytest
import torch
from reference import gaussian_classes, reference_metrics

from nclab import CollapseStats, NCInputError, compute_metrics, measure
from nclab.core.io import load_npz
from nclab.data.npz import npz_labels

RNG = np.random.default_rng(0)
H, Y = gaussian_classes(RNG, C=4, d=3, sizes=[6, 5, 7, 6])
W = RNG.normal(size=(4, 3))


def _with(values, index, value, dtype=None):
    out = np.array(values, dtype=dtype)
    out[index] = value
    return out


def _quantized():
    with warnings.catch_warnings():  # quantized tensors are deprecated, not yet gone
        warnings.simplefilter("ignore")
        return torch.quantize_per_tensor(torch.from_numpy(H).float(), 0.1, 0, torch.qint8)


# (name, call, words the message must hold)
BAD_CALLS = [
    ("complex features", lambda: measure(H + 1j, Y), "complex"),
    ("complex tensor", lambda: measure(torch.from_numpy(H + 0j), Y), "complex"),
    ("string features", lambda: measure(H.astype(str), Y), "real numbers"),
    ("bytes features", lambda: measure(H.astype("S8"), Y), "real numbers"),
    ("object features", lambda: measure(H.astype(object), Y), "real numbers"),
    ("datetime features", lambda: measure(H.astype("datetime64[s]"), Y), "real numbers"),
    ("timedelta features", lambda: measure(H.astype("timedelta64[s]"), Y), "real numbers"),
    ("structured features", lambda: measure(np.zeros((24, 3), [("a", "f8")]), Y),
     "real numbers"),
    ("ragged features", lambda: measure([[1.0, 2.0], [3.0]], [0, 1]), "rectangular"),
    ("None features", lambda: measure(None, Y), "real numbers"),
    ("meta features", lambda: measure(torch.empty(24, 3, device="meta"), Y), "meta"),
    ("sparse features", lambda: measure(torch.from_numpy(H).to_sparse(), Y), "dense"),
    ("quantized features", lambda: measure(_quantized(), Y), "dequantize"),
    ("zero-width features", lambda: measure(np.zeros((24, 0)), Y), "no feature columns"),
    ("3-d features", lambda: measure(H[..., None], Y), "2-D"),
    ("0-d features", lambda: measure(np.float64(1.0), Y), "2-D"),
    ("no rows", lambda: measure(np.zeros((0, 3)), np.zeros(0, int)), "no rows"),
    ("long double beyond float64",
     lambda: measure(_with(H, (0, 0), np.longdouble("1e400"), np.longdouble), Y),
     "float64 range"),
    ("complex labels", lambda: measure(H, Y + 0j), "complex"),
    ("string labels", lambda: measure(H, Y.astype(str)), "real numbers"),
    ("datetime labels", lambda: measure(H, Y.astype("datetime64[D]")), "real numbers"),
    ("bool labels", lambda: measure(H, Y > 1), "integers"),
    ("meta labels", lambda: measure(H, torch.empty(24, device="meta")), "meta"),
    ("labels 1e20", lambda: measure(H, _with(Y, 3, 1e20, float)), "64-bit"),
    ("labels -1e20", lambda: measure(H, _with(Y, 3, -1e20, float)), "-1e+20"),
    ("label 1e12, no weight", lambda: measure(H, _with(Y, 3, 10**12)), "num_classes"),
    ("uint64 label 2**63", lambda: measure(H, _with(Y, 3, 2**63, np.uint64)), "64-bit"),
    ("uint64 label 2**64-1", lambda: measure(H, _with(Y, 3, 2**64 - 1, np.uint64)),
     "64-bit"),
    ("uint64 label 2**63-1", lambda: measure(H, _with(Y, 3, 2**63 - 1, np.uint64)),
     "num_classes"),
    ("label nan", lambda: measure(H, _with(Y, 3, np.nan, float)), "found nan"),
    ("label inf", lambda: measure(H, _with(Y, 3, np.inf, float)), "found inf"),
    ("label 2.5", lambda: measure(H, _with(Y, 3, 2.5, float)), "found 2.5"),
    ("label beyond weight rows", lambda: measure(H, _with(Y, 3, 4), W), "out of range"),
    ("2-D labels", lambda: measure(H, Y[:, None]), "1-D"),
    ("0-d weight", lambda: measure(H, Y, np.array(3.0)), "2-D"),
    ("1-D weight", lambda: measure(H, Y, W[0]), "2-D"),
    ("complex weight", lambda: measure(H, Y, W + 1j), "complex"),
    ("string weight", lambda: measure(H, Y, W.astype(str)), "real numbers"),
    ("meta weight", lambda: measure(H, Y, torch.empty(4, 3, device="meta")), "meta"),
    ("complex bias", lambda: measure(H, Y, W, np.ones(4) + 1j), "complex"),
    ("string bias", lambda: measure(H, Y, W, np.array(list("abcd"))), "real numbers"),
    ("batch_size 0", lambda: measure(H, Y, batch_size=0), "batch_size"),
    ("batch_size -3", lambda: measure(H, Y, batch_size=-3), "batch_size"),
    ("batch_size 2.5", lambda: measure(H, Y, batch_size=2.5), "batch_size"),
    ("complex update", lambda: CollapseStats(4).update(H + 1j, Y), "complex"),
    ("string update labels", lambda: CollapseStats(4).update(H, Y.astype(str)), "real"),
    ("uint64 update label", lambda: CollapseStats(4).update(H, _with(Y, 0, 2**63, np.uint64)),
     "out of range"),
]
BLOCKS = [0, -1, 2.5, True, "8", None]


@pytest.mark.parametrize("call, words", [case[1:] for case in BAD_CALLS],
                         ids=[case[0] for case in BAD_CALLS])
def test_bad_input_is_one_line_error(call, words):
    with pytest.raises(NCInputError) as info:
        call()
    message = str(info.value)
    assert words in message and "\n" not in message


@pytest.mark.parametrize("block", BLOCKS)
def test_block_must_be_a_positive_integer(block):
    """block=0 / -1 used to give cdnv = equiangularity = maxangle = 0."""
    stats = CollapseStats(4).update(H, Y)
    with pytest.raises(NCInputError, match="block must be an integer >= 1"):
        compute_metrics(stats, block=block)
    assert compute_metrics(stats, block=np.int64(2)).cdnv == pytest.approx(
        reference_metrics(H, Y)["cdnv"], rel=1e-10)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_classifier_is_read_in_float64(dtype):
    weight, bias = torch.from_numpy(W).to(dtype), torch.ones(4, dtype=dtype)
    result = measure(H, Y, weight, bias)
    exact = reference_metrics(H, Y, weight.double().numpy(), bias.double().numpy())
    for name in ("etf_error_weights", "self_duality", "wh_duality", "accuracy"):
        assert getattr(result, name) == pytest.approx(exact[name], rel=1e-9), name


@pytest.mark.parametrize("features", [
    H.astype(">f8"), H.astype(np.longdouble), torch.from_numpy(H).to(torch.bfloat16),
    np.round(H * 100).astype(np.int16), np.round(H * 100).astype(np.int64),
], ids=["big-endian", "longdouble", "bfloat16", "int16", "int64"])
def test_real_dtypes_are_measured_as_their_float64_values(features):
    values = (features.double().numpy() if torch.is_tensor(features)
              else np.asarray(features, dtype=np.float64))
    rel = 1e-4 if torch.is_tensor(features) else 1e-9  # bf16 is computed in float32
    assert measure(features, Y).nc1 == pytest.approx(reference_metrics(values, Y)["nc1"],
                                                     rel=rel)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64, np.float16])
def test_unusual_label_dtypes(dtype):
    assert measure(H, Y.astype(dtype)).nc1 == pytest.approx(reference_metrics(H, Y)["nc1"],
                                                           rel=1e-10)


def test_reversed_numpy_views_are_measured():
    """torch.from_numpy takes no negative strides: a reversed view was a ValueError."""
    want = reference_metrics(H, Y)["nc1"]
    assert measure(H[::-1], Y[::-1]).nc1 == pytest.approx(want, rel=1e-10)
    assert measure(H[:, ::-1], Y).nc1 == pytest.approx(want, rel=1e-10)  # coordinates permuted


def test_many_classes_when_asked_for():
    """A label far beyond the sample count is refused alone and accepted with C given."""
    labels = _with(Y, 0, 4999)
    with pytest.raises(NCInputError, match="5000 classes for 24 samples"):
        measure(H, labels)
    result = measure(H, labels, num_classes=5000)
    assert result.num_classes == 5 and len(result.empty_classes) == 4995


def test_tiny_features_do_not_claim_coinciding_means():
    """1e-300 features used to say 'all class means coincide' (their squares underflow)."""
    for scale in (1e-300, 1e-200, 1e-160):
        try:
            measure(H * scale, Y)
        except NCInputError as exc:
            assert "coincide" not in str(exc), scale
    with pytest.raises(NCInputError, match="coincide"):
        measure(np.ones((24, 3)) + 0 * H, Y)


# ------------------------------------------------------------------ .npz files
def _npy(array, shape=None):
    buffer = io.BytesIO()
    if shape is None:
        np.save(buffer, array)
    else:  # a header that lies about the shape, followed by the true few bytes
        header = np.lib.format.header_data_from_array_1_0(array)
        header["shape"] = shape
        np.lib.format.write_array_header_1_0(buffer, header)
        buffer.write(array.tobytes())
    return buffer.getvalue()


def _zip(path, members, method=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


LABELS_NPY = _npy(np.array([0, 1, 0, 1]))
BAD_ARCHIVES = [
    ("giant shape", {"features.npy": _npy(np.ones((4, 2)), (10**12, 10)),
                     "labels.npy": LABELS_NPY}, zipfile.ZIP_STORED, "declares shape"),
    ("giant shape, deflated", {"features.npy": _npy(np.ones((4, 2)), (10**9, 10)),
                               "labels.npy": LABELS_NPY}, zipfile.ZIP_DEFLATED,
     "declares shape"),
    ("not an array", {"features.npy": b"plain bytes", "labels.npy": LABELS_NPY},
     zipfile.ZIP_STORED, "not a numpy array"),
    ("bzip2", {"features.npy": _npy(np.ones((4, 2))), "labels.npy": LABELS_NPY},
     zipfile.ZIP_BZIP2, "compression method"),
    ("truncated header", {"features.npy": b"\x93NUMPY\x01", "labels.npy": LABELS_NPY},
     zipfile.ZIP_STORED, "not a readable .npz"),
]


@pytest.mark.parametrize("members, method, words", [c[1:] for c in BAD_ARCHIVES],
                         ids=[c[0] for c in BAD_ARCHIVES])
def test_hostile_archives_are_refused_before_allocating(tmp_path, members, method, words):
    path = _zip(tmp_path / "bad.npz", members, method)
    with pytest.raises(NCInputError) as info:
        load_npz(path)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_lying_zip_directory_is_refused(tmp_path):
    path = _zip(tmp_path / "f.npz", {"features.npy": _npy(np.ones((4, 2))),
                                     "labels.npy": LABELS_NPY})
    raw = bytearray(path.read_bytes())
    central = raw.rfind(b"PK\x01\x02")  # the last member's central directory entry
    raw[central + 24:central + 28] = (10**9).to_bytes(4, "little")  # uncompressed size
    path.write_bytes(bytes(raw))
    with pytest.raises(NCInputError, match="damaged"):
        load_npz(path)


def test_honest_archives_still_load(tmp_path):
    np.savez_compressed(tmp_path / "z.npz", features=np.zeros((1000, 100)), labels=np.ones(3))
    arrays = load_npz(tmp_path / "z.npz")  # zeros compress ~1000:1 and are still accepted
    assert arrays["features"].shape == (1000, 100)


BAD_DATASETS = [
    ("label 1e12", {"y": _with([0, 1] * 5, 3, 10**12)}, "classes for 10 samples"),
    ("uint64 label 2**63", {"y": _with([0, 1] * 5, 3, 2**63, np.uint64)}, "64-bit"),
    ("float samples 1e300", {"x": np.ones((10, 3)) * 1e300}, "float32 range"),
    ("complex samples", {"x": np.ones((10, 3)) + 1j}, "complex"),
    ("2-D class_names", {"class_names": np.array([["a", "b"]])}, "class_names has shape"),
]


@pytest.mark.parametrize("change, words", [c[1:] for c in BAD_DATASETS],
                         ids=[c[0] for c in BAD_DATASETS])
def test_bad_npz_datasets(tmp_path, change, words):
    arrays = {"x": np.random.default_rng(0).random((10, 3), dtype=np.float32),
              "y": np.array([0, 1] * 5), **change}
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(NCInputError) as info:
        npz_labels(tmp_path / "d.npz", channels="none")
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("value", "kind", "bounds", "expected"), [
    (3, int, {"min_val": 1}, 3),
    (np.int64(7), int, {"min_val": 1}, 7),
    (torch.tensor(5), int, {}, 5),
    (2**63, int, {}, 2**63),
    (0.5, float, {"min_val": 0, "max_val": 1, "include_boundaries": "neither"}, 0.5),
    (2, float, {"min_val": 0}, 2.0),
    (np.float32(0.25), float, {}, 0.25),
    (0, float, {"min_val": 0}, 0.0),
    (1, float, {"max_val": 1, "include_boundaries": "left"}, None),
    (True, bool, {}, True),
    (True, int, {}, None),
    (3.0, int, {"min_val": 1}, None),
    ("3", int, {}, None),
    ("0.5", float, {}, None),
    (float("nan"), float, {}, None),
    (float("inf"), float, {"min_val": 0}, None),
    (np.array([1.0]), float, {}, None),
    (0, int, {"min_val": 1}, None),
    (0.0, float, {"min_val": 0, "include_boundaries": "right"}, None),
    (1 + 2j, float, {}, None),
])
def test_check_scalar_is_the_one_type_and_range_check(value, kind, bounds, expected):
    from nclab.core.validation import check_scalar

    if expected is None:
        with pytest.raises(NCInputError) as info:
            check_scalar(value, "x", kind, **bounds)
        message = str(info.value)
        assert message.startswith("x must be ") and "\n" not in message and "; got " in message
    else:
        result = check_scalar(value, "x", kind, **bounds)
        assert result == expected and type(result) is type(expected)


def test_the_scalar_checks_of_every_module_say_the_same_thing():
    from nclab.core.validation import check_scalar
    from nclab.kernels import nngp
    from nclab.ufm import SphereUFM
    from nclab.ufm.regression import optimal_loss

    def message(call):
        with pytest.raises(NCInputError) as info:
            call()
        return str(info.value)

    positive = {"min_val": 0, "include_boundaries": "right"}
    assert message(lambda: SphereUFM(3, 3, tau=0.0)) == message(
        lambda: check_scalar(0.0, "tau", float, **positive)) == "tau must be a finite number " \
                                                                "> 0; got 0.0"
    assert message(lambda: nngp(np.ones((3, 2)), sigma_w=-1.0)) == \
        "sigma_w must be a finite number > 0; got -1.0"
    assert message(lambda: SphereUFM(1, 3)) == "num_classes must be an integer >= 2; got 1"
    assert message(lambda: optimal_loss(np.ones((4, 2)), -1.0, 1.0, 2)) == \
        "lambda_H must be a finite number >= 0; got -1.0"
    assert message(lambda: check_scalar(5, "k", int, min_val=0, max_val=4)) == \
        "k must be an integer in [0, 4]; got 5"


def test_check_memory_names_the_need_and_what_is_free(monkeypatch):
    from nclab.core import validation

    monkeypatch.setattr(validation, "available_memory", lambda device: 2**30)
    validation.check_memory(2**30, "cpu", "this")
    with pytest.raises(NCInputError, match=r"^this needs about 2 GiB; cpu has 1 GiB free: use "):
        validation.check_memory(2**31, "cpu", "this")
    monkeypatch.undo()
    free = validation.available_memory("cpu")
    assert free is not None and 0 < free < 2**50
