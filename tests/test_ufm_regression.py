"""The regression UFM: the solver reaches the closed form; regimes; no collapse at lambda = 0."""

import math

import numpy as np
import pytest
from scipy.linalg import sqrtm

from nclab import NCInputError
from nclab.ufm.regression import (
    closed_form,
    optimal_loss,
    solve,
    target_moments,
    ufm_loss,
)


def targets_with(eigenvalues, M=150, seed=0):
    """Targets whose covariance has exactly these eigenvalues, in a random basis."""
    rng = np.random.default_rng(seed)
    n = len(eigenvalues)
    raw = rng.normal(size=(M, n))
    raw -= raw.mean(0)
    values, vectors = np.linalg.eigh(raw.T @ raw / M)
    rotation, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (raw @ (vectors / np.sqrt(values)) @ vectors.T) @ (rotation * np.sqrt(eigenvalues)) \
        @ rotation.T + rng.normal(size=n)


def brute_force_gram(Y, lambda_H, lambda_W, d):
    """W W^T from the closed form of definitions §5, via a dense matrix square root."""
    Sigma = np.cov(Y.T, bias=True)
    c = lambda_H * lambda_W
    root = np.real(sqrtm(Sigma))
    return math.sqrt(lambda_H / lambda_W) * (root - math.sqrt(c) * np.eye(len(Sigma)))


def test_solver_reaches_the_closed_form_from_random_starts():
    Y = targets_with([2.0, 1.0, 0.5])
    lambda_H, lambda_W, d = 0.1, 0.2, 10
    c = lambda_H * lambda_W
    reference = brute_force_gram(Y, lambda_H, lambda_W, d)
    L_star = optimal_loss(Y, lambda_H, lambda_W, d)
    Sigma = np.cov(Y.T, bias=True)
    spec_L = 3 * c / 2 + math.sqrt(c) * np.trace(np.real(sqrtm(Sigma)) - math.sqrt(c) * np.eye(3))
    assert L_star == pytest.approx(spec_L, rel=1e-12)
    exact = closed_form(Y, lambda_H, lambda_W, d)
    np.testing.assert_allclose(exact.gram, reference, rtol=1e-10, atol=1e-12)
    assert exact.loss == pytest.approx(L_star, rel=1e-12)
    for seed in range(3):
        sol = solve(Y, lambda_H, lambda_W, d, seed=seed)
        assert sol.converged and sol.regime == "collapse"
        assert np.linalg.norm(sol.gram - reference) / np.linalg.norm(reference) < 1e-6
        assert sol.loss == pytest.approx(L_star, rel=1e-10)
        np.testing.assert_allclose(sol.bias, Y.mean(0), atol=1e-8)
        m = sol.metrics(Y, gamma=c)
        assert m.nrc1 < 1e-8 and m.nrc2 < 1e-8 and m.nrc3 < 1e-8
        pairs = zip(sol.history[1:], sol.history, strict=False)
        assert all(later <= earlier + 1e-12 for later, earlier in pairs)  # a descent method


def test_closed_form_features_are_spec_formula():
    Y = targets_with([3.0, 1.5], seed=1)
    lambda_H, lambda_W = 0.3, 0.2
    sol = closed_form(Y, lambda_H, lambda_W, 5)
    mean, Sigma = target_moments(Y)
    values, vectors = np.linalg.eigh(Sigma)
    inv_root = (vectors / np.sqrt(values)) @ vectors.T
    H_spec = math.sqrt(lambda_W / lambda_H) * sol.weight.T @ inv_root @ (Y - mean).T
    np.testing.assert_allclose(sol.features, H_spec.T, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("lambdas,regime,survivors", [
    ((1.0, 1.5), "partial", 1),   # c = 1.5: only lambda = 2 survives
    ((0.8, 1.0), "partial", 2),   # c = 0.8: lambda = 2 and 1 survive
    ((3.0, 3.0), "zero", 0),      # c = 9 > lambda_max
])
def test_partial_and_zero_regimes(lambdas, regime, survivors):
    Y = targets_with([2.0, 1.0, 0.5], seed=2)
    d = 6
    exact = closed_form(Y, *lambdas, d)
    assert exact.regime == regime
    assert np.linalg.matrix_rank(exact.gram, tol=1e-9) == survivors
    sol = solve(Y, *lambdas, d, seed=5)
    assert sol.regime == regime and sol.converged
    scale = max(np.linalg.norm(exact.gram), 1.0)
    assert np.linalg.norm(sol.gram - exact.gram) / scale < 1e-6
    assert sol.loss == pytest.approx(optimal_loss(Y, *lambdas, d), rel=1e-10)


def test_closed_form_is_a_minimum_monte_carlo():
    # random perturbations of the closed form never lower the loss
    Y = targets_with([1.5, 0.7, 0.4], seed=3)
    lambda_H, lambda_W, d = 0.2, 0.3, 4
    sol = closed_form(Y, lambda_H, lambda_W, d)
    rng = np.random.default_rng(0)
    for _ in range(200):
        eps = 10 ** rng.uniform(-4, -1)
        W = sol.weight + eps * rng.normal(size=sol.weight.shape)
        H = sol.features + eps * rng.normal(size=sol.features.shape)
        b = sol.bias + eps * rng.normal(size=sol.bias.shape)
        assert ufm_loss(Y, H, W, b, lambda_H, lambda_W) >= sol.loss - 1e-13


def test_fewer_feature_dims_than_targets_keeps_the_top_directions():
    Y = targets_with([4.0, 2.0, 1.0, 0.5], seed=4)
    sol = solve(Y, 0.1, 0.1, 2, seed=0)
    exact = closed_form(Y, 0.1, 0.1, 2)
    assert np.linalg.matrix_rank(exact.gram, tol=1e-9) == 2
    assert np.linalg.norm(sol.gram - exact.gram) / np.linalg.norm(exact.gram) < 1e-6
    assert sol.loss == pytest.approx(optimal_loss(Y, 0.1, 0.1, 2), rel=1e-10)
    m = sol.metrics(Y)
    assert m.nrc1 == 0.0 and any("n=4 >= d=2" in w for w in m.warnings)


def test_no_regularization_no_collapse():
    Y = targets_with([2.0, 1.0, 0.5])
    sol = solve(Y, 0.0, 0.0, 10, seed=0)
    assert sol.regime == "none"
    assert sol.loss < 1e-12  # interpolates
    m = sol.metrics(Y)
    assert m.nrc1 > 1e-2 and m.nrc2 > 1e-2
    with pytest.raises(NCInputError, match="not unique"):
        closed_form(Y, 0.0, 0.0, 10)


@pytest.mark.parametrize("args,match", [
    ((-1.0, 0.1, 5), "lambda_H must be a finite number >= 0"),
    ((0.1, float("nan"), 5), "lambda_W must be a finite number >= 0"),
    ((0.1, 0.1, 0), "dim must be an integer >= 1"),
])
def test_bad_input(args, match):
    Y = targets_with([1.0, 0.5])
    with pytest.raises(NCInputError, match=match):
        solve(Y, *args)
    with pytest.raises(NCInputError, match="targets must be"):
        closed_form(np.ones((1, 2)), 0.1, 0.1, 3)


def test_targets_with_spectrum_and_gram_error():
    from nclab.ufm.regression import RegressionUFMSolution, gram_error, targets_with_spectrum

    eigenvalues = np.array([2.0, 1.0, 0.5])
    targets = targets_with_spectrum(40, eigenvalues, seed=3)
    covariance = np.cov(targets.T, bias=True)  # float64 brute force
    np.testing.assert_allclose(np.linalg.eigvalsh(covariance), np.sort(eigenvalues), rtol=1e-12)
    exact = closed_form(targets, 0.1, 0.2, 6)
    assert gram_error(exact, targets, 0.1, 0.2, 6) == pytest.approx(0.0, abs=1e-12)
    scaled = RegressionUFMSolution(2 * exact.weight, exact.features, exact.bias, exact.loss,
                                   exact.c, exact.regime)
    assert gram_error(scaled, targets, 0.1, 0.2, 6) == pytest.approx(3.0, rel=1e-12)
    assert gram_error(exact, targets, 0.0, 0.2, 6) is None
    with pytest.raises(NCInputError, match="--samples must exceed --target-dim=3"):
        targets_with_spectrum(3, eigenvalues)
