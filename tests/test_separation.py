"""The law of data separation: the fit of log D_l against l, and nclab profile's use of it."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from nclab.core.errors import NCInputError
from nclab.core.separation import separation_fit


def brute_fit(d):
    """Slope, intercept and Pearson r of (l, log d_l), l = 1..L, by the textbook sums."""
    n = len(d)
    xs = list(range(1, n + 1))
    ys = [math.log(v) for v in d]
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / sxx, my - sxy / sxx * mx, sxy / math.sqrt(sxx * syy)


def brute_line(d):
    """Slope and Pearson r of (l, log d_l) by float64 least squares on the design matrix
    [1, l] and the covariance formula: another route than brute_fit's sums."""
    y = np.log(np.asarray(d, dtype=np.float64))
    x = np.arange(1.0, len(y) + 1)
    (_, slope), *_ = np.linalg.lstsq(np.stack([np.ones_like(x), x], axis=1), y, rcond=None)
    xc, yc = x - x.mean(), y - y.mean()
    return slope, (xc @ yc) / np.sqrt((xc @ xc) * (yc @ yc))


def test_fit_matches_the_textbook_sums():
    nc1 = [3.1, 1.7, 0.9, 0.52, 0.2]
    fit = separation_fit(nc1, num_classes=10)
    slope, intercept, r = brute_fit([10 * v for v in nc1])
    assert fit["slope"] == pytest.approx(slope, rel=1e-12)
    assert fit["intercept"] == pytest.approx(intercept, rel=1e-12)
    assert fit["pearson_r"] == pytest.approx(r, rel=1e-12)
    assert fit["decay_ratio"] == pytest.approx(math.exp(slope), rel=1e-12)
    assert fit["ratios"] == pytest.approx([b / a for a, b in zip(nc1, nc1[1:], strict=False)])


def test_an_exact_geometric_decay_has_its_ratio_and_r_minus_one():
    fit = separation_fit([5 * 0.5**layer for layer in range(1, 7)])
    assert fit["decay_ratio"] == pytest.approx(0.5, rel=1e-12)
    assert fit["pearson_r"] == pytest.approx(-1.0, abs=1e-12)


@pytest.mark.parametrize("values, message", [([1.0, 0.5], "at least 3 layers"),
                                             ([1.0, 0.0, 0.5], "layer 2"),
                                             ([1.0, float("nan"), 0.5], "layer 2")])
def test_bad_profiles_are_one_line(values, message):
    with pytest.raises(NCInputError, match=message) as error:
        separation_fit(values)
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def deep_run(tmp_path_factory):
    from nclab.train import TrainConfig, Trainer

    config = TrainConfig(
        dataset="gaussian", dataset_options={"num_classes": 4, "dim": 8, "separation": 2.0},
        per_class=40, per_class_test=10, model="mlp", model_options={"widths": [32] * 6},
        epochs=300, batch_size=32, lr=0.05, log_points=6, eval_batch_size=64,
        evaluators=("collapse", "layers"))
    run_dir = tmp_path_factory.mktemp("run") / "deep"
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        Trainer(config, run_dir, progress=False).fit()
    return run_dir


def test_nclab_profile_fits_the_law_at_the_checkpoint_and_every_logged_epoch(deep_run, tmp_path,
                                                                            capsys):
    from cli_helpers import run_cli

    out = tmp_path / "p"
    code, text, err = run_cli(["profile", deep_run, "--out", out, "--threads", "1"], capsys)
    assert code == 0, err
    document = json.loads((out / "profile.json").read_text())
    fit = document["separation"]
    nc1 = [row["nc1"] for row in document["layers"]]
    assert len(nc1) == 6
    slope, _, r = brute_fit([4 * v for v in nc1])
    assert fit["pearson_r"] == pytest.approx(r, rel=1e-9) and r < -0.95
    assert fit["decay_ratio"] == pytest.approx(math.exp(slope), rel=1e-9)
    assert fit["decay_ratio"] < 1
    assert "law of data separation" in text
    assert (out / "separation.png").stat().st_size > 10_000
    check_history(document, deep_run, text, out)


def check_history(document, deep_run, text, out):
    """The fit at every logged epoch, from the logged nc1 by brute force; the law emerges."""
    from nclab.runs import RunDir

    history = document["separation_by_epoch"]
    rows = RunDir(deep_run).read_rows()
    assert [entry["epoch"] for entry in history["epochs"]] == [row["epoch"] for row in rows]
    assert history["layers"] == [row["name"] for row in document["layers"]]
    for entry, row in zip(history["epochs"], rows, strict=True):
        slope, r = brute_line([4 * v for v in row["train_layer_nc1"]])
        assert entry["decay_ratio"] == pytest.approx(math.exp(slope), rel=1e-9)
        assert entry["pearson_r"] == pytest.approx(r, rel=1e-9)
    first, last = history["epochs"][0], history["epochs"][-1]
    # the law emerges with training: nc1 rises with depth at epoch 1, falls geometrically
    # at the end, where the fit is the checkpoint's
    assert first["pearson_r"] > 0 and first["decay_ratio"] > 1
    assert last["pearson_r"] < -0.95 and last["decay_ratio"] < 1
    assert last["decay_ratio"] == pytest.approx(document["separation"]["decay_ratio"],
                                                rel=1e-5)
    assert "law of data separation at the logged epochs" in text
    assert f"{len(rows)} of {len(rows)} logged epochs shown" in text
    assert (out / "separation_epochs.png").stat().st_size > 20_000


def test_a_profile_of_two_layers_says_why_there_is_no_fit(tmp_path):
    from nclab.studies.layer_profile import separation_entry

    class Two:
        metrics = [type("M", (), {"nc1": 1.0, "num_classes": 3})(),
                   type("M", (), {"nc1": 0.5, "num_classes": 3})()]

    entry = separation_entry(Two())
    assert entry["separation"] is None and "at least 3 layers" in entry["separation_error"]


# ---------------------------------------------------------------- the fit per logged epoch


def test_the_fit_per_epoch_is_the_fit_of_each_epoch():
    from nclab.core.separation import separation_history

    rng = np.random.default_rng(3)
    values = [list(rng.uniform(0.05, 4.0, size=5)) for _ in range(4)]
    values.append([1.0, None, 0.5, 0.2, 0.1])  # a layer without nc1 at one epoch
    values.append([1.0, 0.5])  # too few layers
    history = separation_history([1, 2, 4, 9, 20, 30], values, num_classes=7)
    assert [entry["epoch"] for entry in history] == [1, 2, 4, 9, 20, 30]
    for entry, nc1 in zip(history[:4], values[:4], strict=True):
        slope, r = brute_line([7 * v for v in nc1])
        assert entry["decay_ratio"] == pytest.approx(math.exp(slope), rel=1e-12)
        assert entry["pearson_r"] == pytest.approx(r, rel=1e-12)
        assert entry["D"] == pytest.approx([7 * v for v in nc1], rel=1e-15)
        ratios = [b / a for a, b in zip(nc1[:-1], nc1[1:], strict=True)]
        assert entry["ratios"] == pytest.approx(ratios, rel=1e-12)
    assert history[4] == {"epoch": 20, "error": "layer 2 has no nc1"}
    assert "at least 3 layers" in history[5]["error"]
    with pytest.raises(NCInputError, match="2 epochs but 1 lists"):
        separation_history([1, 2], [[1.0, 0.5, 0.2]])


def test_the_layers_evaluator_logs_the_nc1_of_every_stage(deep_run):
    from reference import reference_metrics
    from train_helpers import trained_model

    from nclab.runs import RunDir

    run = RunDir(deep_run)
    rows = run.read_rows()
    assert len(rows) >= 5 and all(len(row["train_layer_nc1"]) == 6 for row in rows)
    # the last row is the checkpoint's epoch: its values from the weights, by hand
    model, splits = trained_model(deep_run)
    with torch.no_grad():
        stages = [model.body[:end](splits.train.x) for end in (3, 5, 7, 9, 11, 13)]
    for got, h in zip(rows[-1]["train_layer_nc1"], stages, strict=True):
        want = reference_metrics(h.double().numpy(), splits.train.y.numpy())["nc1"]
        assert got == pytest.approx(want, rel=1e-6)


def test_a_run_without_layer_data_says_how_to_log_it(deep_run, tmp_path, capsys):
    from cli_helpers import run_cli

    code, text, err = run_cli(["profile", deep_run, "--out", tmp_path / "t", "--split", "test",
                               "--threads", "1"], capsys)
    assert code == 0, err
    lines = [line for line in text.splitlines() if "no fit per logged epoch" in line]
    assert lines == ["no fit per logged epoch: the run logged no test_layer_nc1: the layers "
                     "evaluator logs the train split; Trainer(evaluators=[LayerEvaluator("
                     "splits=('train', 'test'))]) logs both, to fit the law of data separation "
                     "at every logged epoch"]
    document = json.loads((tmp_path / "t" / "profile.json").read_text())
    assert document["separation_by_epoch"] is None
    assert not (tmp_path / "t" / "separation_epochs.png").exists()


def test_a_run_with_two_logged_layers_and_a_damaged_row(tmp_path, capsys):
    from cli_helpers import run_cli
    from train_helpers import TINY

    from nclab.runs import RunLogWarning
    from nclab.studies.layer_profile import history_entry
    from nclab.train import Trainer

    config = replace(TINY, epochs=2, log_points=2, evaluators=("layers",))
    run_dir = tmp_path / "two"
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        Trainer(config, run_dir, progress=False).fit()
    code, text, _ = run_cli(["profile", run_dir, "--threads", "1"], capsys)
    assert code == 0
    assert ("no fit per logged epoch: the run logged 2 layers in train_layer_nc1: the law of "
            "data separation needs at least 3 (a deeper network)") in text
    without = history_entry(tmp_path / "none", "train", 3, [])
    assert without["separation_by_epoch_error"] == (
        f"{tmp_path / 'none'}: no such run directory")
    (run_dir / "plain").mkdir()
    plain = [{key: value for key, value in row.items() if key != "train_layer_nc1"}
             for row in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]
    (run_dir / "plain" / "metrics.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in plain))
    assert history_entry(run_dir / "plain", "train", 3, [])["separation_by_epoch_error"] == (
        "the run logged no train_layer_nc1: train it with --evaluators collapse,layers, to "
        "fit the law of data separation at every logged epoch")
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    rows[0]["train_layer_nc1"] = "1.0, 0.5, 0.2"
    rows[1]["train_layer_nc1"] = [2.0, 1.0, 0.5]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.warns(RunLogWarning, match="epoch 1: train_layer_nc1 is not a list of numbers"):
        entry = history_entry(run_dir, "train", 3, ["a", "b"])
    epochs = entry["separation_by_epoch"]["epochs"]
    assert [e["epoch"] for e in epochs] == [2] and epochs[0]["decay_ratio"] == pytest.approx(0.5)
    assert entry["separation_by_epoch"]["layers"] is None  # 2 names for 3 values


def test_the_layers_evaluator_refuses_a_regression_run_before_writing(tmp_path):
    from nclab.train import TrainConfig, Trainer

    config = TrainConfig(task="regression", dataset="teacher", loss="mse",
                         evaluators=("nrc", "layers"), epochs=1)
    with pytest.raises(NCInputError, match="layers evaluator measures nc1, which needs class "
                                           "labels"):
        Trainer(config, tmp_path / "r", progress=False).fit()
    assert not (tmp_path / "r").exists()


def test_the_figure_of_a_history_without_any_fit_is_drawn(tmp_path):
    from nclab.report.profile import separation_history_figure

    path = tmp_path / "none.png"
    separation_history_figure({"epochs": [{"epoch": 1, "error": "layer 1 has no nc1"}]}, path)
    assert path.stat().st_size > 5_000


def test_evenly_spaced_keeps_the_ends():
    from nclab.train.layers import evenly_spaced

    assert evenly_spaced(list(range(5)), 12) == [0, 1, 2, 3, 4]
    picked = evenly_spaced(list(range(50)), 12)
    assert len(picked) == 12 and picked[0] == 0 and picked[-1] == 49
    assert picked == sorted(set(picked))


def test_the_report_of_a_profiled_run_shows_the_law_at_every_epoch(deep_run, tmp_path, capsys):
    import shutil

    from cli_helpers import run_cli

    from nclab.report import write_report

    run = tmp_path / "run"
    shutil.copytree(deep_run, run)
    assert run_cli(["profile", run, "--threads", "1"], capsys)[0] == 0
    page = write_report(run, tmp_path / "report").read_text()
    for name in ("profile.png", "separation.png", "separation_epochs.png"):
        assert f"src='{name}'" in page
        assert (tmp_path / "report" / name).read_bytes() == (run / name).read_bytes()
