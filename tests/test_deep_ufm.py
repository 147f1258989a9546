"""The deep unconstrained features model: objective, per-layer metrics, deep collapse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nclab.core.errors import NCInputError
from nclab.ufm.deep import DeepUFM


def brute_objective(params, labels, activation, lam_w, lam_h) -> float:
    """f in float64 numpy with columns as samples, as in Sukenik et al."""
    h = params[0].T  # d x N
    for weight in params[1:-1]:
        h = weight @ h
        h = np.maximum(h, 0) if activation == "relu" else h
    out = params[-1] @ h
    targets = np.eye(out.shape[0])[:, labels]
    return float(np.sum((out - targets) ** 2) / (2 * len(labels))
                 + lam_w / 2 * sum(np.sum(w**2) for w in params[1:])
                 + lam_h / 2 * np.sum(params[0] ** 2))


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_objective_and_gradient_match_a_brute_force(activation):
    ufm = DeepUFM(3, 4, 2, layers=3, activation=activation, lambda_w=0.1, lambda_h=0.05)
    start = ufm.random_start([0, 1])
    value, grads = ufm.evaluate(start)
    labels = ufm.labels().numpy()
    for run in range(2):
        params = [p[run].numpy() for p in start]
        assert float(value[run]) == pytest.approx(
            brute_objective(params, labels, activation, 0.1, 0.05), rel=1e-12)
        # central differences of the brute force along a random direction
        rng = np.random.default_rng(run)
        direction = [rng.standard_normal(p.shape) for p in params]
        eps = 1e-6
        plus = brute_objective([p + eps * v for p, v in zip(params, direction, strict=True)],
                               labels, activation, 0.1, 0.05)
        minus = brute_objective([p - eps * v for p, v in zip(params, direction, strict=True)],
                                labels, activation, 0.1, 0.05)
        slope = sum(float(np.sum(g[run].numpy() * v)) for g, v in zip(grads, direction,
                                                                       strict=True))
        assert slope == pytest.approx((plus - minus) / (2 * eps), rel=1e-6)


def test_linear_deep_ufm_collapses_at_every_layer():
    ufm = DeepUFM(4, 6, 3, layers=3, activation="linear", lambda_w=5e-3, lambda_h=5e-3)
    solution = ufm.solve(range(4), steps=3000)
    assert float(solution.grad_norm.max()) < 1e-8
    # every start ends at the same value (no spurious minimum on this tiny case)
    assert float(solution.objective.max() - solution.objective.min()) < 1e-10
    layers = solution.layer_metrics(solution.best)
    assert len(layers) == 3
    assert all(m.nc1 <= 1e-3 for m in layers)
    assert layers[-1].etf_error_means < 1e-6
    # no bias and targets e_k: the last classifier's rows are orthogonal of equal norm
    # (its Gram is proportional to I, not to the centred simplex ETF)
    weight = solution.params[-1][solution.best].numpy()
    gram = weight @ weight.T
    assert np.allclose(gram / np.trace(gram), np.eye(4) / 4, atol=1e-8)


def test_relu_deep_ufm_collapses_for_two_classes():
    # K = 2: deep neural collapse is the optimum (Sukenik et al., 2023)
    ufm = DeepUFM(2, 4, 3, layers=3, activation="relu", lambda_w=5e-3, lambda_h=5e-3)
    solution = ufm.solve(range(6), steps=4000)
    best = solution.best
    assert float(solution.grad_norm[best]) < 1e-6
    assert all(m.nc1 <= 1e-3 for m in solution.layer_metrics(best))
    features = solution.layer_features(best)
    assert all(bool((h >= 0).all()) for h in features[1:])  # after a ReLU


def test_layer_features_are_the_forward_pass_of_the_run():
    ufm = DeepUFM(3, 4, 2, layers=2, activation="relu", lambda_w=0.1, lambda_h=0.1)
    solution = ufm.solve(range(2), steps=0)
    h1, w1 = solution.params[0][1], solution.params[1][1]
    first, second = solution.layer_features(1)
    assert torch.equal(first, h1)
    assert torch.allclose(second, torch.relu(h1 @ w1.T), atol=1e-14, rtol=0)


@pytest.mark.parametrize("kwargs", [{"layers": 0}, {"layers": 2.5}, {"layers": True},
                                    {"activation": "tanh"}, {"lambda_w": 0.0},
                                    {"lambda_h": float("nan")}, {"lambda_w": "x"},
                                    {"lambda_h": True}])
def test_bad_settings_are_one_line(kwargs):
    with pytest.raises(NCInputError) as error:
        DeepUFM(3, 4, 2, **kwargs)
    assert "\n" not in str(error.value)


def test_nclab_ufm_layers_writes_the_metrics_of_every_layer(tmp_path, capsys):
    import json

    from cli_helpers import run_cli

    out = tmp_path / "deep"
    code, text, err = run_cli(["ufm", "--layers", "3", "--activation", "linear", "--classes",
                               "3", "--dim", "4", "--per-class", "2", "--seeds", "2",
                               "--steps", "2000", "--threads", "1", "--out", out], capsys)
    assert code == 0, err
    document = json.loads((out / "ufm.json").read_text())
    assert [row["layer"] for row in document["layers"]] == [1, 2, 3]
    assert all(row["nc1"] <= 1e-3 for row in document["layers"])
    assert document["config"]["layers"] == 3 and document["config"]["loss"] == "mse"
    assert "collapse metrics of each layer" in text


@pytest.mark.parametrize("args, message", [
    (["--layers", "0"], "--layers must be >= 1"),
    (["--layers", "2", "--imbalance", "step:0.1,2"], "--imbalance: not available with --layers"),
    (["--layers", "2", "--loss", "ce"], "squared error"),
    (["--layers", "2", "--activation", "tanh"], "activation must be one of relu, linear"),
])
def test_nclab_ufm_layers_refuses_bad_combinations_in_one_line(args, message, tmp_path, capsys):
    from cli_helpers import run_cli

    out = tmp_path / "none"
    code, _, err = run_cli(["ufm", *args, "--out", out], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not out.exists()


def test_nclab_ufm_layers_says_when_the_outputs_vanish(tmp_path, capsys):
    import json

    from cli_helpers import run_cli

    out = tmp_path / "zero"
    code, text, err = run_cli(["ufm", "--layers", "3", "--lambda-w", "1", "--lambda-h", "1",
                               "--classes", "3", "--dim", "4", "--per-class", "2",
                               "--steps", "500", "--threads", "1", "--out", out], capsys)
    assert code == 0, err
    assert json.loads((out / "ufm.json").read_text())["vanishing"] is True
    assert "outputs of the best start vanish" in " ".join(text.split())
