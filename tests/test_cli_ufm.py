"""``nclab ufm`` end to end: tables, JSON, figure, and one-line errors."""

import json

import pytest
from cli_helpers import run_cli


def read_json(folder):
    return json.loads((folder / "ufm.json").read_text())


def test_normalized_runs_reach_f_star(tmp_path, capsys):
    code, out, _ = run_cli(["ufm", "--normalized", "--classes", 4, "--dim", 5, "--per-class", 3,
                            "--seeds", 4, "--tau", 3, "--probe", "--out", tmp_path], capsys)
    assert code == 0
    assert "reached within 1e-06 by 4/4 random starts (100%)" in out
    data = read_json(tmp_path)
    assert data["model"] == "SphereUFM" and data["config"]["tau"] == 3.0
    assert data["fraction_reached"] == 1.0 and len(data["runs"]) == 4
    for run in data["runs"]:
        assert abs(run["gap"]) < 1e-6 and run["metrics"]["etf_error_weights"] < 1e-4
        assert run["probe"]["zero_modes"] == run["probe"]["symmetry_modes"] == 9
        assert run["probe"]["min_eigenvalue"] > -1e-8
    assert data["best_geometry"]["distinct_cosines"] == pytest.approx([-1 / 3], abs=1e-6)
    assert (tmp_path / "convergence.png").read_bytes()[:4] == b"\x89PNG"


def test_regularized_mse_low_dimension_has_a_closed_form(tmp_path, capsys):
    _, _, _ = run_cli(["ufm", "--classes", 5, "--dim", 2, "--per-class", 2, "--loss", "mse",
                            "--lambda-b", 0, "--lambda-w", 0.02, "--lambda-h", 0.02, "--seeds", 2,
                            "--out", tmp_path], capsys)
    data = read_json(tmp_path)
    assert data["f_star"] is not None and data["fraction_reached"] == 1.0
    assert data["runs"][0]["metrics"]["etf_meaningful"] is False


def test_low_dimension_without_closed_form_reports_the_best_run(tmp_path, capsys):
    code, out, _ = run_cli(["ufm", "--normalized", "--classes", 6, "--dim", 2, "--per-class", 1,
                            "--seeds", 3, "--out", tmp_path], capsys)
    assert "f* unknown (d < K - 1: no simplex ETF)" in out
    data = read_json(tmp_path)
    assert data["f_star"] is None and data["runs"][0]["gap"] is None
    assert data["fraction_at_best"] == 1.0
    assert data["best_objective"] > 0.1  # above the ETF value, which no point attains
    assert data["runs"][0]["metrics"] is None  # n = 1: within-class metrics undefined
    # The hexagon: cosines cos(2 pi j / 6).
    assert data["best_geometry"]["distinct_cosines"] == pytest.approx([-1, -0.5, 0.5], abs=1e-5)


@pytest.mark.parametrize("args, message", [
    (["--normalized", "--loss", "mse"], "cross-entropy"),
    (["--tau", "2"], "--tau applies to --normalized"),
    (["--normalized", "--lambda-w", "1e-3"], "no weight decay"),
    (["--probe"], "--probe needs --normalized"),
    (["--classes", "1"], "num_classes"),
    (["--loss", "hinge"], "loss must be"),
    (["--seeds", "0"], "--seeds"),
    (["--lambda-h", "0"], "--lambda-h must be > 0; got 0"),
    (["--tau", "nan", "--normalized"], "--tau must be a finite number > 0; got nan"),
    (["--device", "gpu7"], "not a torch device"),
])
def test_bad_options_give_one_line_errors(args, message, tmp_path, capsys):
    code, out, err = run_cli(["ufm", *args, "--out", tmp_path], capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "ufm.json").exists()


def test_heavy_decay_reports_the_vanishing_minimizer(tmp_path, capsys):
    code, out, _ = run_cli(["ufm", "--classes", 5, "--dim", 6, "--per-class", 2, "--lambda-w", 0.3,
                            "--lambda-h", 0.3, "--seeds", 2, "--out", tmp_path], capsys)
    assert code == 0 and "the minimizer is W = H = 0" in " ".join(out.split())
    data = read_json(tmp_path)
    assert data["f_star"] == pytest.approx(1.6094379124341003)  # log 5: all logits zero
    assert data["fraction_reached"] == 1.0


def test_solve_ufm_refuses_sizes_beyond_free_memory_from_python(tmp_path):
    import torch

    from nclab.core.errors import NCInputError
    from nclab.studies.ufm import build_ufm, solve_bytes, solve_ufm

    model = build_ufm(10**8, 16, 1, "ce", False, None, None, None, None)
    assert solve_bytes(model, 2) == 2 * 32 * (10**8 * 16 * 2 + 10**16)
    with pytest.raises(NCInputError, match=r"--classes 100000000 .* GiB free: use smaller"):
        solve_ufm(model, tmp_path / "out", seeds=1, steps=1, lr=1.0, grad_tol=0.0, tol=1e-6,
                  device=torch.device("cpu"))
    assert not (tmp_path / "out").exists()
