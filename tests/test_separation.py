"""The law of data separation: the fit of log D_l against l, and nclab profile's use of it."""

from __future__ import annotations

import json
import math

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
        epochs=300, batch_size=32, lr=0.05, log_points=2, eval_batch_size=64)
    run_dir = tmp_path_factory.mktemp("run") / "deep"
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        Trainer(config, run_dir, progress=False).fit()
    return run_dir


def test_nclab_profile_fits_the_law_on_a_trained_mlp(deep_run, tmp_path, capsys):
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


def test_a_profile_of_two_layers_says_why_there_is_no_fit(tmp_path):
    from nclab.studies.layer_profile import separation_entry

    class Two:
        metrics = [type("M", (), {"nc1": 1.0, "num_classes": 3})(),
                   type("M", (), {"nc1": 0.5, "num_classes": 3})()]

    entry = separation_entry(Two())
    assert entry["separation"] is None and "at least 3 layers" in entry["separation_error"]
