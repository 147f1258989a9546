"""``nclab regress`` end to end: ufm, data teacher, measure (good and bad files)."""

import json

import numpy as np
import pytest
from cli_helpers import run_cli
from regression_reference import nrc_reference, regression_problem


def test_ufm_command_reports_every_regime(tmp_path, capsys):
    out_json = tmp_path / "ufm.json"
    code, out, _ = run_cli(["regress", "ufm", "--dim", "6", "--samples", "60", "--lambdas",
                            "0.1,0.1", "--lambdas", "1,1.5", "--lambdas", "0,0",
                            "--json", out_json], capsys)
    assert code == 0
    assert "collapse" in out and "partial" in out and "none" in out
    rows = json.loads(out_json.read_text())["results"]
    collapse, partial, none = rows
    assert collapse["gram_error"] < 1e-6 and collapse["nrc1"] < 1e-8 and collapse["nrc3"] < 1e-8
    assert collapse["gamma"] == pytest.approx(0.01)
    assert abs(collapse["loss"] - collapse["optimal_loss"]) < 1e-10
    assert partial["gram_error"] < 1e-6
    assert none["nrc1"] > 1e-2 and none["gram_error"] is None


def test_data_teacher_writes_npz_and_info(tmp_path, capsys):
    out = tmp_path / "teacher.npz"
    code, text, _ = run_cli(["regress", "data", "teacher", "--out", out, "--samples", "100",
                             "--target-dim", "2", "--spectrum", "1,0.25", "--noise", "0"], capsys)
    assert code == 0 and "wrote" in text
    arrays = np.load(out, allow_pickle=False)
    assert arrays["x"].shape == (80, 16) and arrays["y_test"].shape == (20, 2)
    np.testing.assert_allclose(np.cov(arrays["y"].T, bias=True), np.diag([1, 0.25]), atol=1e-5)
    assert json.loads(out.with_suffix(".json").read_text())["target_cov"] == [[1, 0], [0, 0.25]]


def test_data_reacher_prints_expert_and_random(tmp_path, capsys):
    pytest.importorskip("mujoco")
    code, text, _ = run_cli(["regress", "data", "reacher", "--out", tmp_path / "r.npz",
                             "--samples", "50", "--episodes", "2"], capsys)
    assert code == 0 and "expert" in text and "random" in text
    info = json.loads((tmp_path / "r.json").read_text())
    assert info["expert_return"] > info["random_return"]


def test_measure_command_matches_reference(tmp_path, capsys):
    rng = np.random.default_rng(0)
    H, Y, W, b = regression_problem(rng, 120, 8, 2)
    path = tmp_path / "f.npz"
    np.savez(path, features=H, targets=Y, weight=W, bias=b)
    out_json = tmp_path / "m.json"
    code, out, _ = run_cli(["regress", "measure", path, "--gamma", "0.05", "--json", out_json],
                           capsys)
    assert code == 0 and "nrc1" in out
    data = json.loads(out_json.read_text())
    ref = nrc_reference(H, Y, W, 0.05)
    for name, value in ref.items():
        assert data[name] == pytest.approx(value, rel=1e-8), name


def test_measure_constant_column_explicit_gamma_is_an_error(tmp_path, capsys):
    rng = np.random.default_rng(1)
    H, Y, W, b = regression_problem(rng, 60, 6, 3)
    Y[:, 2] = 1.0
    path = tmp_path / "f.npz"
    np.savez(path, features=H, targets=Y, weight=W, bias=b)
    code, out, err = run_cli(["regress", "measure", path], capsys)
    assert code == 0 and "target column 2 is constant" in err
    code, _, err = run_cli(["regress", "measure", path, "--gamma", "0.1"], capsys)
    assert code == 2
    assert err.strip().startswith("error:") and "target column 2 is constant" in err
    assert len(err.strip().splitlines()) == 1


def test_measure_key_options_rename_the_arrays(tmp_path, capsys):
    rng = np.random.default_rng(2)
    H, Y, W, b = regression_problem(rng, 80, 6, 2)
    np.savez(tmp_path / "plain.npz", features=H, targets=Y, weight=W, bias=b)
    np.savez(tmp_path / "named.npz", h=H, actions=Y, head=W, offset=b)
    results = []
    for args in (["plain.npz"], ["named.npz", "--features-key", "h", "--targets-key", "actions",
                                 "--weight-key", "head", "--bias-key", "offset"]):
        code, _, err = run_cli(["regress", "measure", tmp_path / args[0], *args[1:], "--gamma",
                                "0.05", "--json", tmp_path / "m.json"], capsys)
        assert code == 0, err
        results.append(json.loads((tmp_path / "m.json").read_text()))
        results[-1].pop("file")
    assert results[0] == results[1] and results[0]["nrc3"] is not None
    code, _, err = run_cli(["regress", "measure", tmp_path / "named.npz", "--features-key", "h"],
                           capsys)
    assert code == 2 and "no array named 'targets'" in err
