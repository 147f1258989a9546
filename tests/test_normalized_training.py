"""Normalized-feature training (definitions §4, "In training") and `nclab normcompare`."""

import json
import math
import re

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import reference_metrics
from torch import nn
from torch_threads import one_thread  # noqa: F401
from train_helpers import TINY, TINY_ARGS, rows

from nclab import NCInputError
from nclab.capture import find_classifier
from nclab.cli.train import default_run_dir
from nclab.data import load_dataset
from nclab.models import build_model
from nclab.runs import RunRecord
from nclab.studies.normcompare import compare_normalized, comparison_configs, epochs_to_reach
from nclab.train import (
    ClassificationTask,
    NormalizedTask,
    Trainer,
    config_diff,
    make_task,
    normalized_config,
)
from nclab.train.normalized import (
    DEFAULT_TAU,
    FeatureNormalization,
    SphereClassifier,
    normalize_features,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TAU = 12.5  # not the default, so that a lost tau shows
NORM = normalized_config(TINY, TAU)


def tiny_data():
    return load_dataset(TINY.dataset, per_class=TINY.per_class,
                        per_class_test=TINY.per_class_test, **TINY.dataset_options)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("normalized")
    torch.set_num_threads(1)
    summary = Trainer(NORM, run_dir, progress=False).fit()
    return run_dir, summary


def checkpointed_model(run_dir):
    model = NormalizedTask(NORM).build_model(tiny_data())
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    model.load_state_dict(checkpoint["model"])
    return model.eval()


def row_norms(weight):
    return weight.detach().double().norm(dim=1)


# ---------------------------------------------------------------- the model
@settings(max_examples=25, deadline=None)
@given(d=st.integers(2, 12), classes=st.integers(2, 6), batch=st.integers(1, 9),
       tau=st.floats(0.1, 50.0), seed=st.integers(0, 2**16))
def test_logits_are_tau_times_cosines_of_features_and_unit_rows(d, classes, batch, tau, seed):
    torch.manual_seed(seed)
    model = normalize_features(build_model("mlp", (d,), classes, widths=[d + 3]), tau)
    assert model.classifier.bias is None
    x = torch.randn(batch, d)
    with torch.no_grad():
        raw = model.body[0](x).double().numpy()  # the body before the normalization
        logits = model(x).double().numpy()
    w = model.classifier.weight.detach().double().numpy()
    # float64 reference: tau * cos(w_k, h), with h = 0 mapped to 0 (F.normalize's eps)
    norms = np.linalg.norm(raw, axis=1, keepdims=True)
    unit_h = np.divide(raw, norms, out=np.zeros_like(raw), where=norms > 0)
    expected = tau * unit_h @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5 * tau)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, rtol=1e-6)


def test_rows_are_back_on_the_sphere_after_each_step():
    data = tiny_data()
    task = NormalizedTask(NORM)
    model = task.build_model(data)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    for _ in range(3):
        loss = task.loss(model(data.train.x), data.train.y) / len(data.train.y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        drift = (row_norms(model.classifier.weight) - 1).abs().max()
        assert drift > 1e-4  # the step leaves the sphere: the hook has work to do
        task.after_step(model)
        np.testing.assert_allclose(row_norms(model.classifier.weight), 1.0, atol=1e-6)


def test_the_trainer_calls_the_hook(finished):
    run_dir, summary = finished
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    weight = checkpoint["model"]["classifier.weight"]
    np.testing.assert_allclose(row_norms(weight), 1.0, atol=1e-6)
    assert "classifier.bias" not in checkpoint["model"]
    assert summary["tpt_onset"] is not None  # it trains


def test_tracked_features_are_unit_norm_and_the_logged_metrics_are_theirs(finished):
    run_dir, _ = finished
    model = checkpointed_model(run_dir)
    data = tiny_data()
    head = model.get_submodule(find_classifier(model))
    assert isinstance(head, SphereClassifier)
    captured = []
    handle = head.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0]))
    with torch.no_grad():
        model(data.train.x)
        raw = model.body[0](data.train.x).double().numpy()
    handle.remove()
    np.testing.assert_allclose(row_norms(captured[0]), 1.0, rtol=1e-5)
    weight = head.weight.detach().double().numpy()
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    expected = reference_metrics(unit, data.train.y.numpy(), weight)
    last = rows(run_dir)[-1]
    for name in ("nc1", "etf_error_means", "wh_duality", "ncc_mismatch"):
        assert last[f"train_{name}"] == pytest.approx(expected[name], rel=1e-4, abs=1e-7), name
    on_raw = reference_metrics(raw, data.train.y.numpy(), weight)["nc1"]
    assert not math.isclose(on_raw, expected["nc1"], rel_tol=1e-2)  # it matters which


# ---------------------------------------------------------------- config and resume
def test_config_round_trips_and_resume_with_another_tau_is_refused(finished):
    run_dir, _ = finished
    assert round_trip(NORM) == NORM
    stored = json.loads((run_dir / "config.json").read_text())
    assert stored == NORM.to_dict()
    assert stored["task"] == "normalized" and stored["options"] == {"tau": TAU}
    before = rows(run_dir)
    Trainer(NORM, run_dir, progress=False).fit(resume=True)  # same tau: nothing to redo
    assert rows(run_dir) == before
    with pytest.raises(NCInputError, match=r'refusing to resume.*options: \{"tau": 12.5\} -> '
                                           r'\{"tau": 20.0\}'):
        Trainer(normalized_config(TINY, 20.0), run_dir, progress=False).fit(resume=True)


def round_trip(config):
    return type(config).from_dict(json.loads(json.dumps(config.to_dict())))


def test_cli_flags_reach_the_config_and_another_tau_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, out, err = run_cli(["train", *TINY_ARGS, "--epochs", "2", "--log-points", "2",
                              "--normalize-features", "--tau", TAU, "--no-report",
                              "--out", run_dir], capsys)
    assert code in (0, None), err
    stored = json.loads((run_dir / "config.json").read_text())
    assert stored == {**NORM.to_dict(), "epochs": 2, "log_points": 2}
    code, out, err = run_cli(["train", "--out", run_dir, "--resume", "--no-progress",
                              "--no-report", "--threads", "1"], capsys)
    assert code in (0, None) and "trained 2 epochs" in out, err
    code, _, err = run_cli(["train", "--out", run_dir, "--resume", "--tau", "20",
                            "--no-progress"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert 'refusing to resume' in err and 'options: {"tau": 12.5} -> {"tau": 20.0}' in err
    code, _, err = run_cli(["train", *TINY_ARGS, "--epochs", "1", "--log-points", "1",
                            "--normalize-features", "--no-report",
                            "--out", tmp_path / "default_tau"], capsys)
    assert code in (0, None), err
    stored = json.loads((tmp_path / "default_tau" / "config.json").read_text())
    assert stored["options"] == {"tau": DEFAULT_TAU} and stored["task"] == "normalized"


@pytest.mark.parametrize(("args", "message"), [
    (["--tau", "5"], "--tau is the inverse temperature of --normalize-features: pass both"),
    (["--normalize-features", "--tau", "0"], "--tau must be > 0; got 0"),
    (["--normalize-features", "--tau", "nan"], "tau must be a finite number > 0; got nan"),
    (["--normalize-features", "--loss", "mse"], "trains with the cross-entropy loss"),
])
def test_bad_flags_give_one_line_errors(args, message, tmp_path, capsys):
    code, _, err = run_cli(["train", "--out", tmp_path / "r", "--no-progress",
                            "--epochs", "1", *args], capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def test_bad_configs_are_refused(tmp_path):
    for tau in (0, -1.0, float("inf"), "10", True):
        with pytest.raises(NCInputError, match="tau must be"):
            normalized_config(TINY, tau)
    with pytest.raises(NCInputError, match="normalized option tau must be a finite number"):
        Trainer(TINY.updated(task="normalized", options={"tau": "10"}), tmp_path,
                progress=False)
    with pytest.raises(NCInputError, match="tau must be a finite number > 0"):
        Trainer(TINY.updated(task="normalized", options={"tau": 0}), tmp_path, progress=False)
    # without options the task uses its declared default tau
    assert make_task(TINY.updated(task="normalized")).tau == DEFAULT_TAU


def test_default_runs_are_unchanged():
    model = ClassificationTask(TINY).build_model(tiny_data())
    assert type(model.classifier) is nn.Linear and model.classifier.bias is not None
    assert not any(isinstance(m, FeatureNormalization) for m in model.modules())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ClassificationTask(TINY).after_step(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert str(default_run_dir(TINY)) == "runs/gaussian-mlp-ce-seed0"
    assert str(default_run_dir(NORM)) == "runs/gaussian-mlp-ce-normalized-seed0"


# ---------------------------------------------------------------- normcompare
def test_epochs_to_reach_is_the_first_logged_epoch_below():
    values = [5.0, None, 0.02, 0.009, 0.02, 0.001]
    record = RunRecord(path=None, label="r",
                       rows=[{"epoch": e, "train_nc1": v} for e, v in
                             zip([1, 2, 3, 5, 8, 13], values, strict=True)])
    for threshold in (1e-4, 1e-3, 5e-3, 1e-2, 0.05, 10.0):
        expected = next((e for e, v in zip([1, 2, 3, 5, 8, 13], values, strict=True)
                         if v is not None and v < threshold), None)
        assert epochs_to_reach(record, threshold) == expected


def test_the_configs_differ_only_in_the_last_layer_constraint():
    configs = comparison_configs(TINY.updated(weight_decay=1e-3), taus=[TAU, 3],
                                 weight_decays=[5e-3, 5e-4])
    assert list(configs) == ["normalized-tau12.5", "normalized-tau3", "regularized-wd0.005",
                             "regularized-wd0.0005"]
    regularized, normalized = configs["regularized-wd0.005"], configs["normalized-tau12.5"]
    diff = config_diff(regularized.to_dict(), normalized.to_dict())
    assert [line.split(":")[0] for line in diff] == ["options", "task", "weight_decay"]
    assert regularized.weight_decay == 5e-3 and regularized.task == "classification"
    assert normalized.weight_decay == 0 and normalized.options == {"tau": TAU}
    assert configs["normalized-tau3"].options == {"tau": 3.0}
    for taus, decays, message in [([TAU], [0.0], "needs a weight decay > 0"),
                                  ([], [5e-4], "at least one tau"),
                                  ([3, 3.0], [5e-4], "given twice"),
                                  ([-1], [5e-4], "tau must be a finite number > 0")]:
        with pytest.raises(NCInputError, match=message):
            comparison_configs(TINY, taus=taus, weight_decays=decays)


def test_normcompare_cli_trains_both_plots_and_resumes(tmp_path, capsys):
    args = ["normcompare", "--dataset", "gaussian", "--data-opt", "num_classes=4",
            "--data-opt", "dim=8", "--data-opt", "separation=8.0", "--per-class", "40",
            "--per-class-test", "10", "--widths", "32,32", "--epochs", "6",
            "--batch-size", "32", "--tau", TAU, "--threshold", "0.5", "--threads", "1",
            "--no-progress", "--out", tmp_path]
    code, out, err = run_cli(args, capsys)
    assert code in (0, None), err
    result = json.loads((tmp_path / "normcompare.json").read_text())
    names = ["normalized-tau12.5", "regularized-wd0.0005"]  # the default weight decay
    assert list(result["runs"]) == names
    assert result["runs"][names[0]]["tau"] == TAU
    for name, run in result["runs"].items():
        logged = rows(tmp_path / name)
        assert [r["epoch"] for r in logged] == list(range(1, 7))  # every epoch by default
        curves = run["curves"]
        assert curves["train_nc1"] == [r["train_nc1"] for r in logged]
        assert curves["train_wh_duality"] == [r["train_wh_duality"] for r in logged]
        below = [e for e, v in zip(curves["epoch"], curves["train_nc1"], strict=True)
                 if v < 0.5]
        assert run["epochs_to_threshold"] == (below[0] if below else None)
        shown = "not reached" if not below else f"epoch {below[0]}"
        assert re.search(rf"^{re.escape(name)}:\s+train nc1 < 0.5: {shown};", out, re.M), out
    png = (tmp_path / "normcompare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    before = rows(tmp_path / names[0])
    code, _, err = run_cli(args, capsys)  # finished runs are resumed, not redone
    assert code in (0, None), err
    assert rows(tmp_path / names[0]) == before
    code, _, err = run_cli([*args, "--epochs", "7"], capsys)
    assert code == 2 and "refusing to resume" in err and "epochs: 6 -> 7" in err


def test_a_diverged_run_is_reported_and_the_others_still_run(tmp_path):
    # lr 1e3 blows the biased classifier up in epoch 1; the normalized logits are
    # bounded by tau, so that run survives
    base = TINY.updated(epochs=3, lr=1e3, log_points=3)
    for _ in range(2):  # the second call finds the diverged run and does not retry it
        result = compare_normalized(base, tmp_path, taus=[TAU], weight_decays=[5e-4],
                                    progress=False)
        normalized, regularized = result["runs"].values()
        assert normalized["status"] == "complete" and normalized["final"]["epoch"] == 3
        assert regularized["status"] == "diverged" and regularized["final"] is None
        assert "epoch 1" in regularized["message"]
    assert (tmp_path / "normcompare.png").is_file()
