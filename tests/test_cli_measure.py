"""``nclab measure`` on real .npz files, good and bad."""

import json

import numpy as np
import pytest
from cli_helpers import run_cli
from reference import gaussian_classes, reference_metrics


@pytest.fixture
def feature_file(tmp_path):
    rng = np.random.default_rng(0)
    H, y = gaussian_classes(rng, C=4, d=6, sizes=[20, 30, 25, 10])
    W, b = rng.normal(size=(4, 6)), rng.normal(size=4)
    path = tmp_path / "feats.npz"
    np.savez(path, features=H.astype(np.float32), labels=y, weight=W, bias=b)
    return path, H.astype(np.float32), y, W, b


def test_measure_prints_table_and_writes_json(feature_file, tmp_path, capsys):
    path, H, y, W, b = feature_file
    out_json = tmp_path / "m.json"
    code, out, _ = run_cli(["measure", path, "--json", out_json], capsys)
    assert code == 0
    assert "nc1" in out and "self_duality" in out
    data = json.loads(out_json.read_text())
    ref = reference_metrics(H, y, W, b)
    for name, value in ref.items():
        assert data[name] == pytest.approx(value, rel=1e-5), name
    assert data["num_samples"] == 85 and data["weighted_mean"] is False


def test_measure_without_weight_gives_null(tmp_path, capsys):
    rng = np.random.default_rng(1)
    H, y = gaussian_classes(rng, C=3, d=4)
    np.savez(tmp_path / "f.npz", features=H, labels=y)
    code, out, _ = run_cli(["measure", tmp_path / "f.npz", "--json", tmp_path / "o.json",
                            "--weighted-mean"], capsys)
    data = json.loads((tmp_path / "o.json").read_text())
    assert code == 0 and data["self_duality"] is None and data["ncc_mismatch"] is None
    assert data["weighted_mean"] is True
    assert data["nc1"] == pytest.approx(reference_metrics(H, y, weighted=True)["nc1"], rel=1e-8)
    assert "n/a" in out


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"features": np.full((6, 2), np.inf), "labels": [0, 1] * 3}, "NaN or inf"),
        ({"features": np.ones((6, 2)), "labels": [0, 1, 2] * 2,
          "weight": np.ones((2, 2))}, "out of range"),
        ({"features": np.ones((6, 2)), "labels": [0.5] * 6}, "must be integers"),
        ({"features": np.ones((6, 2))}, "no array named 'labels'"),
        ({"features": np.random.rand(6, 3), "labels": [0, 1] * 3, "weight": np.ones((2, 2))},
         "weight must have shape"),
        ({"features": np.random.rand(3, 3), "labels": [0, 1, 2]}, "single sample"),
        ({"features": np.random.rand(5, 3), "labels": [0, 1] * 2}, "4 entries"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, capsys, arrays, message):
    np.savez(tmp_path / "bad.npz", **{k: np.asarray(v) for k, v in arrays.items()})
    code, _, err = run_cli(["measure", tmp_path / "bad.npz"], capsys)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert err.strip().count("\n") == 0


def test_pickled_npz_is_refused(tmp_path, capsys):
    path = tmp_path / "pickled.npz"
    np.savez(path, features=np.array([{"evil": 1}], dtype=object), labels=np.zeros(1))
    code, _, err = run_cli(["measure", path], capsys)
    assert code == 2 and "pickled objects" in err


def test_missing_and_corrupt_files(tmp_path, capsys):
    code, _, err = run_cli(["measure", tmp_path / "nope.npz"], capsys)
    assert code == 2 and "no such file" in err
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    code, _, err = run_cli(["measure", tmp_path / "junk.npz"], capsys)
    assert code == 2 and "not a readable .npz" in err


def test_many_classes_flag_etf_and_empty_class(tmp_path, capsys):
    rng = np.random.default_rng(2)
    H, y = gaussian_classes(rng, C=6, d=3, sizes=[10, 10, 0, 10, 10, 10])
    np.savez(tmp_path / "f.npz", features=H, labels=y, weight=rng.normal(size=(6, 3)))
    code, _, err = run_cli(["measure", tmp_path / "f.npz", "--json", tmp_path / "o.json"], capsys)
    data = json.loads((tmp_path / "o.json").read_text())
    assert code == 0 and data["etf_meaningful"] is False and data["empty_classes"] == [2]
    assert "no samples" in err and "d+1" in err


# ------------------------------------------------------------------ hostile files, one line each
def _npz_with_header(path, features_shape):
    """A stored .npz whose 'features' header declares ``features_shape`` over 64 bytes."""
    import io
    import zipfile

    def member(array, shape=None):
        buffer = io.BytesIO()
        header = np.lib.format.header_data_from_array_1_0(array)
        header["shape"] = shape or array.shape
        np.lib.format.write_array_header_1_0(buffer, header)
        buffer.write(array.tobytes())
        return buffer.getvalue()

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("features.npy", member(np.ones((4, 2)), features_shape))
        archive.writestr("labels.npy", member(np.array([0, 1, 0, 1])))


def _labels_with(value, dtype=None):
    labels = np.array([0, 1, 2] * 4, dtype=dtype)
    labels[5] = value
    return labels


FEATURES = np.random.default_rng(3).normal(size=(12, 3))
LABELS = np.array([0, 1, 2] * 4)
BAD_MEASURE_FILES = [
    ("complex features", {"features": FEATURES + 1j}, "complex"),
    ("string features", {"features": FEATURES.astype(str)}, "real numbers"),
    ("bytes features", {"features": FEATURES.astype("S6")}, "real numbers"),
    ("datetime features", {"features": FEATURES.astype("datetime64[s]")}, "real numbers"),
    ("structured features", {"features": np.zeros((12, 3), [("a", "f4"), ("b", "i2")])},
     "real numbers"),
    ("string labels", {"labels": LABELS.astype(str)}, "real numbers"),
    ("bytes labels", {"labels": LABELS.astype("S2")}, "real numbers"),
    ("datetime labels", {"labels": LABELS.astype("datetime64[D]")}, "real numbers"),
    ("structured labels", {"labels": np.zeros(12, [("a", "i8")])}, "real numbers"),
    ("complex labels", {"labels": LABELS + 0j}, "complex"),
    ("0-d weight", {"weight": np.array(2.0)}, "weight must be 2-D"),
    ("complex weight", {"weight": np.ones((3, 3)) + 1j}, "complex"),
    ("label 1e12, no weight", {"labels": _labels_with(10**12)}, "--num-classes"),
    ("labels 1e20", {"labels": _labels_with(1e20, float)}, "64-bit"),
    ("uint64 label 2**63", {"labels": _labels_with(2**63, np.uint64)}, "64-bit"),
    ("uint64 label 2**63 - 1", {"labels": _labels_with(2**63 - 1, np.uint64)},
     "--num-classes"),
    ("zero-width features", {"features": np.zeros((12, 0))}, "no feature columns"),
    ("no rows", {"features": np.zeros((0, 3)), "labels": np.zeros(0, int)}, "no rows"),
]


@pytest.mark.parametrize("change, words", [c[1:] for c in BAD_MEASURE_FILES],
                         ids=[c[0] for c in BAD_MEASURE_FILES])
def test_hostile_feature_files_give_one_line(tmp_path, capsys, change, words):
    np.savez(tmp_path / "bad.npz", **{"features": FEATURES, "labels": LABELS, **change})
    code, _, err = run_cli(["measure", tmp_path / "bad.npz"], capsys)
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("shape", [(10**12, 10), (10**9, 10), (5, 2)])
def test_header_declaring_a_giant_shape_is_refused_before_reading(tmp_path, capsys, shape):
    _npz_with_header(tmp_path / "giant.npz", shape)
    code, _, err = run_cli(["measure", tmp_path / "giant.npz"], capsys)
    assert code == 2 and err.count("\n") == 1 and "declares shape" in err, err


def test_num_classes_option_allows_sparse_labels(tmp_path, capsys):
    labels = _labels_with(2999)
    np.savez(tmp_path / "f.npz", features=FEATURES, labels=labels)
    code, _, err = run_cli(["measure", tmp_path / "f.npz"], capsys)
    assert code == 2 and "--num-classes" in err
    code, _, err = run_cli(["measure", tmp_path / "f.npz", "--num-classes", "3000", "--json",
                            tmp_path / "o.json"], capsys)
    data = json.loads((tmp_path / "o.json").read_text())
    assert code == 0 and data["num_classes"] == 4 and len(data["empty_classes"]) == 2996
    assert data["nc1"] == pytest.approx(reference_metrics(FEATURES, labels)["nc1"], rel=1e-9)
    code, _, err = run_cli(["measure", tmp_path / "f.npz", "--num-classes", "0"], capsys)
    assert code == 2 and err.count("\n") == 1


TARGETS = np.random.default_rng(4).normal(size=(12, 2))
BAD_REGRESSION_FILES = [
    ("string targets", {"targets": TARGETS.astype(str)}, "real numbers"),
    ("complex targets", {"targets": TARGETS + 1j}, "complex"),
    ("targets 1e300", {"targets": TARGETS * 1e300}, "rescale"),
    ("targets 1e-300", {"targets": TARGETS * 1e-300}, "rescale"),
    ("features 1e300", {"features": FEATURES * 1e300}, "rescale"),
    ("weight 1e200", {"weight": np.ones((2, 3)) * 1e200}, "rescale"),
    ("object bias", {"weight": np.ones((2, 3)), "bias": np.array([1, "a"], dtype=object)},
     "pickled"),
]


@pytest.mark.parametrize("change, words", [c[1:] for c in BAD_REGRESSION_FILES],
                         ids=[c[0] for c in BAD_REGRESSION_FILES])
def test_hostile_regression_files_give_one_line(tmp_path, capsys, change, words):
    np.savez(tmp_path / "bad.npz", **{"features": FEATURES, "targets": TARGETS, **change})
    code, _, err = run_cli(["regress", "measure", tmp_path / "bad.npz"], capsys)
    assert code == 2 and err.count("\n") == 1 and words in err, err


def test_key_options_rename_the_arrays(feature_file, tmp_path, capsys):
    path, H, y, W, b = feature_file
    renamed = tmp_path / "renamed.npz"
    np.savez(renamed, h=H, c=y, w=W, bias=b)
    np.savez(tmp_path / "ood.npz", h=H[:5] + 1.0)
    code, _, err = run_cli(["measure", renamed, "--features-key", "h", "--labels-key", "c",
                            "--weight-key", "w", "--ood", tmp_path / "ood.npz",
                            "--json", tmp_path / "m.json"], capsys)
    assert code == 0, err
    data = json.loads((tmp_path / "m.json").read_text())
    for name, value in reference_metrics(H, y, W, b).items():
        assert data[name] == pytest.approx(value, rel=1e-5), name
    assert data["nc5_ood_orthogonality"] is not None
    code, _, err = run_cli(["measure", renamed, "--features-key", "h"], capsys)
    assert code == 2 and "no array named 'labels' (found: bias, c, h, w)" in err
    code, _, err = run_cli(["measure", renamed, "--features-key", "h", "--labels-key", "h"],
                           capsys)
    assert code == 2 and "h is given twice" in err and err.count("\n") == 1
