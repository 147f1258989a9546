"""Regression in the shared trainer: the task trains, the NRC evaluator measures what a
hand-made pass measures, NRC3 uses the gamma of the final W, the sweep command writes its
JSON and figure, and bad input is refused in one line."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from regression_reference import nrc3_grid_minimum, nrc3_reference, nrc_reference
from scipy.linalg import sqrtm
from threadpoolctl import threadpool_limits
from torch_threads import one_thread  # noqa: F401

from nclab import NCInputError
from nclab.core.regression_metrics import compute_regression_metrics
from nclab.core.regression_stats import RegressionStats
from nclab.data.teacher import teacher
from nclab.histories import nrc3_history
from nclab.models import build_model
from nclab.train import Trainer, regression_config

pytestmark = pytest.mark.usefixtures("one_thread", "one_blas_thread")


@pytest.fixture
def one_blas_thread():
    with threadpool_limits(1):
        yield

SMALL = {"model_options": {"widths": [24, 24]}, "epochs": 30, "batch_size": 32, "lr": 0.05,
         "momentum": 0.9, "weight_decay": 5e-3, "log_points": 6, "eval_batch_size": 50}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "teacher.npz"
    teacher(150, input_dim=5, target_dim=2, target_cov=[1.0, 0.3], seed=3).save(path)
    return path


@pytest.fixture(scope="module")
def trained(data_file, tmp_path_factory):
    """One small run, shared by the tests that read it."""
    run_dir = tmp_path_factory.mktemp("run")
    config = regression_config(dataset="npz_targets", root=str(data_file), **SMALL)
    torch.set_num_threads(1)
    with threadpool_limits(1):
        summary = Trainer(config, run_dir, progress=False).fit()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return config, run_dir, summary, rows


def test_task_trains_and_logs_nrc(trained):
    _, _, summary, rows = trained
    assert [row["epoch"] for row in rows] == [1, 2, 4, 8, 15, 30]
    assert rows[-1]["train_loss"] < 0.5 * rows[0]["train_loss"]
    for row in rows:
        assert row["train_error"] is None and row["tpt_onset"] is None  # no error rate
        assert row["train_loss"] == pytest.approx(row["train_mse"], rel=1e-5)
        for key in ("train_nrc1", "train_nrc2", "test_nrc1", "test_nrc2",
                    "train_nrc1_centred", "train_nrc2_centred"):
            assert 0 <= row[key] <= 1, key
        assert np.asarray(row["head_gram"]).shape == (2, 2)
    np.testing.assert_allclose(rows[0]["target_cov"], [[1, 0], [0, 0.3]], atol=1e-5)
    nrc3 = summary["nrc3"]
    assert nrc3["epoch"] == [row["epoch"] for row in rows] and nrc3["gamma_epoch"] == 30
    assert 0 < nrc3["gamma"] < nrc3["lambda_min"] and len(nrc3["curve"]["gamma"]) == 64
    # the searched gamma is at least as good as every point of the curve, and close to its best
    assert min(nrc3["curve"]["nrc3"]) * 0.9 <= nrc3["nrc3"][-1] <= min(nrc3["curve"]["nrc3"])


def _final_model(config, run_dir, data):
    model = build_model("mlp", data.input_shape, 2, **config.model_options)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    model.load_state_dict(state)
    return model.eval()


def test_evaluator_equals_a_pass_by_hand(trained, data_file):
    config, run_dir, summary, rows = trained
    arrays = np.load(data_file, allow_pickle=False)
    mean, std = arrays["x"].mean(axis=0), arrays["x"].std(axis=0) + 1e-8
    from nclab.data.regression_base import load_regression

    model = _final_model(config, run_dir, load_regression(data_file))
    W = model.classifier.weight.detach().double().numpy()
    b = model.classifier.bias.detach().double().numpy()
    last = rows[-1]
    for split in ("train", "test"):
        x = torch.as_tensor((arrays[f"x{'' if split == 'train' else '_test'}"] - mean) / std,
                            dtype=torch.float32)
        y = arrays["y" if split == "train" else "y_test"]
        with torch.no_grad():
            features = model.body(x).double().numpy()
        by_hand = compute_regression_metrics(RegressionStats().update(features, y), W, b,
                                             gamma=None)
        for key in ("nrc1", "nrc2", "mse", "r2"):
            assert last[f"{split}_{key}"] == pytest.approx(getattr(by_hand, key), rel=1e-5,
                                                           abs=1e-9), (split, key)
        reference = nrc_reference(features, y, W)  # brute force, sklearn PCA
        assert last[f"{split}_nrc1"] == pytest.approx(reference["nrc1"], rel=1e-4)
        assert last[f"{split}_nrc2"] == pytest.approx(reference["nrc2"], rel=1e-4)
        centred = nrc_reference(features - features.mean(axis=0), y, W)
        assert last[f"{split}_nrc1_centred"] == pytest.approx(centred["nrc1"], rel=1e-4)
        assert last[f"{split}_nrc2_centred"] == pytest.approx(centred["nrc2"], rel=1e-4)
    # NRC3: gamma searched on the final W (a fine brute-force grid agrees)
    best, gamma = nrc3_grid_minimum(W, arrays["y"], points=1000)
    assert summary["nrc3"]["nrc3"][-1] == pytest.approx(best, rel=1e-3, abs=1e-7)
    assert summary["nrc3"]["gamma"] == pytest.approx(gamma, rel=0.02)


def test_nrc3_history_holds_the_final_gamma_for_every_epoch():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(200, 3)) @ rng.normal(size=(3, 3))
    sigma = np.cov(Y.T, bias=True)
    # the final W: W W^T close to A_gamma at gamma = lambda_min / 3 (an interior minimum)
    values, vectors = np.linalg.eigh(sigma)
    a = vectors @ np.diag(np.sqrt(values) - np.sqrt(values[0] / 3)) @ vectors.T
    rows_of_q = np.linalg.qr(rng.normal(size=(7, 3)))[0].T
    final = np.real(sqrtm(a)) @ rows_of_q + 0.02 * rng.normal(size=(3, 7))
    heads = [rng.normal(size=(3, 7)) for _ in range(3)] + [final]
    rows = [{"epoch": e, "head_gram": (w @ w.T).tolist(), "target_cov": sigma.tolist()}
            for e, w in zip((1, 3, 9, 27), heads, strict=True)]
    history = nrc3_history(rows)
    _, final_gamma = nrc3_grid_minimum(heads[-1], Y, points=1000)
    assert history["gamma"] == pytest.approx(final_gamma, rel=0.01)
    assert history["gamma"] == pytest.approx(values[0] / 3, rel=0.2)
    for w, value in zip(heads, history["nrc3"], strict=True):
        assert value == pytest.approx(nrc3_reference(w, Y, history["gamma"]), rel=1e-8)
    # an earlier W's own best gamma would give a smaller value: the gamma is not re-searched
    own_best = nrc3_grid_minimum(heads[0], Y, points=1000)[0]
    assert own_best <= history["nrc3"][0] + 1e-12
    assert nrc3_history(rows, gamma=0.5 * history["lambda_min"])["gamma_searched"] is False


def test_nrc3_history_explains_what_is_missing():
    one = [{"epoch": 1, "head_gram": [[2.0]], "target_cov": [[1.0]]}]
    assert "n = 1" in nrc3_history(one)["warning"]
    singular = [{"epoch": 1, "head_gram": [[1.0, 0], [0, 1]], "target_cov": [[1.0, 0], [0, 0]]}]
    assert "column 1 is constant" in nrc3_history(singular)["warning"]
    assert "nrc" in nrc3_history([{"epoch": 1}])["warning"]


TEACHER_ARGS = ["--samples", "100", "--input-dim", "4", "--n", "2", "--spectrum", "1,0.4"]
TRAIN_ARGS = ["--widths", "16,16", "--epochs", "8", "--log-points", "4", "--batch-size", "40",
              "--lr", "0.05", "--momentum", "0.9", "--threads", "1", "--no-progress"]
SWEEP_ARGS = TEACHER_ARGS + TRAIN_ARGS


def test_sweep_command_writes_json_and_figures(tmp_path, capsys):
    out = tmp_path / "sweep"
    code, text, _ = run_cli(["regress", "sweep", "teacher", "--out", out,
                             "--weight-decays", "0,0.01", *SWEEP_ARGS], capsys)
    assert code == 0 and "wd 0.01" in text and "centred" in text
    result = json.loads((out / "sweep.json").read_text())
    assert [run["weight_decay"] for run in result["runs"]] == [0.0, 0.01]
    assert result["data"]["spec"]["dataset"] == "teacher"
    for run in result["runs"]:
        history = run["history"]
        assert history["epoch"] == [1, 2, 4, 8]
        assert all(v is not None for v in history["train_nrc1"] + history["nrc3"])
        assert run["drop"]["nrc1"] == pytest.approx(history["train_nrc1"][0]
                                                    / history["train_nrc1"][-1])
        assert 0 < run["gamma"] < run["lambda_min"]
        config = json.loads((Path(run["run_dir"]) / "config.json").read_text())
        assert config["weight_decay"] == run["weight_decay"] and config["dataset"] == "npz_targets"
    for name in ("sweep.png", "gamma.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same data set and the same seed: the two runs start from the same point
    first = [run["history"]["train_mse"][0] for run in result["runs"]]
    assert first[0] == pytest.approx(first[1], rel=0.05)
    # a sweep on other data into the same folder is refused
    code, _, err = run_cli(["regress", "sweep", "teacher", "--out", out, "--data-seed", "5",
                            *SWEEP_ARGS], capsys)
    assert code == 2 and "holds a sweep on other data" in err


def test_train_command_and_report(tmp_path, capsys, data_file):
    run_dir = tmp_path / "run"
    code, text, _ = run_cli(["regress", "train", data_file, "--run-dir", run_dir,
                             "--weight-decay", "0.01", "--json", tmp_path / "out.json",
                             *TRAIN_ARGS], capsys)
    assert code == 0 and "report:" in text
    outcome = json.loads((tmp_path / "out.json").read_text())
    assert outcome["config"]["task"] == "regression" and outcome["last_epoch"] == 8
    assert {"nrc.png", "gamma.png", "report.html"} <= {p.name for p in run_dir.iterdir()}
    assert "NRC3" in (run_dir / "report.html").read_text()


@pytest.mark.parametrize("changes, message", [
    ({"dataset": "cifar10"}, "unknown dataset 'cifar10' for regression"),
    ({"loss": "ce"}, "regression trains with loss 'mse'"),
    ({"evaluators": ("collapse",)}, "'collapse' evaluator needs class labels"),
    ({"dataset": "npz_targets"}, "needs the file"),
    ({"dataset_options": {"hidden_size": 3}}, "has no option hidden_size"),
    ({"options": {"normalize": True}}, "regression has no option normalize"),
])
def test_bad_configs_are_refused(changes, message, tmp_path):
    config = regression_config(**{"dataset": "teacher", **SMALL, **changes})
    with pytest.raises(NCInputError, match=message):
        Trainer(config, tmp_path, progress=False)


@pytest.mark.parametrize("args, message", [
    (["regress", "train", "missing.npz"], "neither a data set"),
    (["regress", "sweep", "teacher", "--out", "X", "--weight-decays", "0,-1"],
     "distinct values >= 0"),
    (["regress", "sweep", "teacher", "--out", "X", "--weight-decays", "0,a"],
     "comma-separated list of float"),
    (["regress", "train", "teacher", "--spectrum", "1,x"], "--spectrum expects"),
])
def test_bad_command_lines(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(args, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_train_command_resumes_a_run_saved_as_npz(tmp_path, capsys):
    rng = np.random.default_rng(4)
    data = tmp_path / "named.npz"
    np.savez(data, inputs=rng.normal(size=(60, 3)), actions=rng.normal(size=(60, 2)))
    run_dir = tmp_path / "run"
    args = ["regress", "train", data, "--x-key", "inputs", "--y-key", "actions",
            "--out", run_dir, *TRAIN_ARGS, "--epochs", "2"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset"] == "npz_targets"
    assert config["dataset_options"] == {"x_key": "inputs", "y_key": "actions"}
    (run_dir / "config.json").write_text(json.dumps({**config, "dataset": "npz"}))
    code, _, err = run_cli([*args, "--resume"], capsys)
    assert code == 0, err
    assert "'npz' is renamed 'npz_targets'" in err and "refusing" not in err
    code, _, err = run_cli([*args, "--resume", "--lr", "0.5"], capsys)
    assert code == 2 and "refusing to resume" in err and "lr: " in err
    assert "dataset" not in err  # the renamed name is not a difference
