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
