"""Label smoothing and the focal loss in the regularized UFM: minimizers and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nclab.core.errors import NCInputError
from nclab.ufm import RegularizedUFM
from nclab.ufm.classification import smoothed_logit_gap


def brute_loss(logits: np.ndarray, labels: np.ndarray, loss: str) -> float:
    """Mean ls:EPS or focal:GAMMA loss in float64, written out."""
    k = logits.shape[1]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    name, value = loss.split(":")
    value = float(value)
    own = log_p[np.arange(len(labels)), labels]
    if name == "ls":
        return float(np.mean(-(1 - value) * own - value / k * log_p.sum(axis=1)))
    return float(np.mean(-((1 - np.exp(own)) ** value) * own))


def solved(loss: str, lam: float = 1e-2, k: int = 4, n: int = 3):
    ufm = RegularizedUFM(k, k, per_class=n, loss=loss, lambda_w=lam, lambda_h=lam,
                         lambda_b=lam)
    return ufm, ufm.solve(range(2), steps=3000)


def logit_gap(solution, run: int = 0) -> np.ndarray:
    """Own logit minus the mean of the others, per sample."""
    logits = (solution.features[run] @ solution.weight[run].T + solution.bias[run]).numpy()
    labels = solution.labels.numpy()
    own = logits[np.arange(len(labels)), labels]
    others = (logits.sum(axis=1) - own) / (logits.shape[1] - 1)
    return own - others


@pytest.mark.parametrize("loss", ["ls:0.1", "focal:2"])
def test_objective_matches_a_brute_force(loss):
    ufm, solution = solved(loss)
    w, h, b = (x[1].numpy() for x in (solution.weight, solution.features, solution.bias))
    logits = h @ w.T + b
    penalty = 0.5 * 1e-2 * (np.sum(w**2) + np.sum(h**2) + np.sum(b**2))
    expected = brute_loss(logits, solution.labels.numpy(), loss) + penalty
    assert float(solution.objective[1]) == pytest.approx(expected, rel=1e-12)


def test_label_smoothing_minimizer_has_the_closed_form_gap():
    ufm, solution = solved("ls:0.1")
    assert float(solution.grad_norm.max()) < 1e-8
    # u* = log((1 - (K-1) c)/c), c = EPS/K + gamma; brute force: the stationary point of
    # log(1 + (K-1) e^-u) + (K-1) c u found by bisection on its derivative
    k, c = 4, 0.1 / 4 + math.sqrt(3 * 1e-4)
    low, high = 0.0, 50.0
    for _ in range(200):
        mid = (low + high) / 2
        slope = -(k - 1) * math.exp(-mid) / (1 + (k - 1) * math.exp(-mid)) + (k - 1) * c
        low, high = (mid, high) if slope < 0 else (low, mid)
    assert smoothed_logit_gap(k, 0.1, math.sqrt(3 * 1e-4)) == pytest.approx(low, abs=1e-12)
    assert np.allclose(logit_gap(solution), low, atol=1e-7)
    assert float(solution.gap.max()) < 1e-10


def test_label_smoothing_without_decay_reproduces_the_smoothed_target():
    # gamma -> 0: the softmax of the own class is the smoothed target 1 - EPS + EPS/K
    k, eps = 10, 0.1
    u = smoothed_logit_gap(k, eps, 0.0)
    own = 1 / (1 + (k - 1) * math.exp(-u))
    assert own == pytest.approx(1 - eps + eps / k, rel=1e-12)


def test_label_smoothing_zero_is_cross_entropy_and_heavy_smoothing_is_zero():
    plain = RegularizedUFM(5, 6, per_class=2, loss="ce", lambda_w=0.01, lambda_h=0.02)
    zero = RegularizedUFM(5, 6, per_class=2, loss="ls:0", lambda_w=0.01, lambda_h=0.02)
    assert zero.logit_scale == pytest.approx(plain.logit_scale, rel=1e-12)
    assert zero.optimal_value == pytest.approx(plain.optimal_value, rel=1e-12)
    heavy = RegularizedUFM(5, 6, per_class=2, loss="ls:0.99", lambda_w=0.01, lambda_h=0.02)
    assert heavy.logit_scale == 0.0 and heavy.optimal_value == pytest.approx(math.log(5))


def test_focal_minimizer_collapses_at_the_one_dimensional_optimum():
    ufm, solution = solved("focal:2")
    assert float(solution.grad_norm.max()) < 1e-8 and ufm.optimal_value is None
    metrics = solution.metrics(0).to_dict()
    assert metrics["nc1"] < 1e-12 and metrics["etf_error_weights"] < 1e-6
    # the ETF family: u minimizes -(1-p)^2 log p + (K-1) gamma u, p = 1/(1 + (K-1) e^-u)
    k, gamma = 4, math.sqrt(3 * 1e-4)
    grid = np.linspace(0.0, 20.0, 2_000_001)
    p = 1 / (1 + (k - 1) * np.exp(-grid))
    values = -((1 - p) ** 2) * np.log(p) + (k - 1) * gamma * grid
    assert np.allclose(logit_gap(solution), grid[values.argmin()], atol=1e-4)


@pytest.mark.parametrize("loss", ["ls:1", "ls:-0.1", "focal:-1", "focal:x", "hinge"])
def test_bad_losses_are_one_line(loss):
    with pytest.raises(NCInputError) as error:
        RegularizedUFM(3, 3, loss=loss)
    assert "\n" not in str(error.value)


def test_trainer_import_path_still_works():
    from nclab.core.losses import ClassificationLoss as core_loss
    from nclab.train.losses import ClassificationLoss
    assert ClassificationLoss is core_loss


@pytest.mark.parametrize("loss", ["ce", "ls:0.1"])
def test_minimizer_norms_match_the_solver_and_a_two_dimensional_brute_force(loss):
    from scipy.optimize import minimize

    k, n, lambda_w, lambda_h = 4, 3, 2e-2, 4e-3  # unequal decays: a != s
    eps = float(loss.partition(":")[2] or 0)
    ufm = RegularizedUFM(k, k, per_class=n, loss=loss, lambda_w=lambda_w, lambda_h=lambda_h,
                         lambda_b=1e-2)
    solution = ufm.solve(range(2), steps=6000)
    assert float(solution.grad_norm.max()) < 1e-9

    def etf_objective(x):
        # the ETF family with ||w_k|| = a, ||h_{k,i}|| = s, b = 0, written out
        a, s = x
        u = a * s * k / (k - 1)
        return (np.logaddexp(0.0, math.log(k - 1) - u) + (k - 1) * eps / k * u
                + lambda_w * k * a**2 / 2 + lambda_h * k * n * s**2 / 2)

    best = minimize(etf_objective, [1.0, 1.0], method="BFGS", options={"gtol": 1e-13})
    a, s = ufm.minimizer_norms
    assert (a, s) == pytest.approx(tuple(np.abs(best.x)), rel=1e-5)
    for run in range(2):
        assert np.allclose(solution.weight[run].norm(dim=1).numpy(), a, rtol=1e-6)
        assert np.allclose(solution.features[run].norm(dim=1).numpy(), s, rtol=1e-6)


def test_minimizer_norms_are_none_without_a_known_etf_minimizer():
    assert RegularizedUFM(4, 4, per_class=2, loss="focal:2").minimizer_norms is None
    assert RegularizedUFM(5, 2, per_class=2, loss="ls:0.1").minimizer_norms is None  # d < K-1
    assert RegularizedUFM(3, 3, counts=[3, 1, 1]).minimizer_norms is None
    heavy = RegularizedUFM(5, 6, per_class=2, loss="ls:0.99", lambda_w=0.01, lambda_h=0.02)
    assert heavy.minimizer_norms == (0.0, 0.0)
