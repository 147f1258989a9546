"""Adaptive kernel: analytic gradient, fixed point, NNGP limit, labels, divergence."""

import numpy as np
import pytest
import torch

from nclab.core.errors import NCInputError
from nclab.kernels import (
    ACTIVATIONS,
    EquationsOfState,
    adaptive_kernel,
    adaptive_q,
    d1,
    eos_gradient,
    kernel_nc1,
    nngp_hidden,
)


def random_spd(rng, d, scale=0.5):
    a = rng.normal(size=(d, d))
    return torch.from_numpy(scale * (a @ a.T / d + 0.3 * np.eye(d)))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_gradient_matches_finite_differences(activation):
    """d/dSigma Tr[A Q(Sigma)] against central differences along symmetric directions."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(12, 4)))
    sigma = random_spd(rng, 4)
    a = torch.from_numpy(rng.normal(size=(12, 12)))
    a = a + a.T
    dual = ACTIVATIONS[activation]
    grad = eos_gradient(x, sigma, a, dual, sigma_a=0.7)
    assert torch.allclose(grad, grad.T, atol=1e-12)

    def objective(s):
        return float(torch.sum(a * adaptive_q(x, s, dual, sigma_a=0.7)))

    eps = 1e-6
    for _ in range(5):
        e = torch.from_numpy(rng.normal(size=(4, 4)))
        e = e + e.T
        numeric = (objective(sigma + eps * e) - objective(sigma - eps * e)) / (2 * eps)
        assert float(torch.sum(grad * e)) == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_returned_sigma_is_a_fixed_point_and_labels_enter():
    x, y = d1(3).sample(40, rng=1)
    result = adaptive_kernel(x, y, width=300)
    assert result.converged and result.width_reached == 300
    system = EquationsOfState(torch.from_numpy(x), torch.from_numpy(np.where(y == 1, 1.0, -1.0))
                              [:, None], ACTIVATIONS["erf"], 1.0, 128**-0.5, 1e-6)
    sigma = torch.from_numpy(result.sigma)
    np.testing.assert_allclose(system.update(sigma, 300).numpy(), result.sigma,
                               atol=1e-5 * np.abs(result.sigma).max())
    np.testing.assert_allclose(result.kernel, system.kernel(sigma).numpy())
    # labels and the equivalent +-1 targets give the same answer
    same = adaptive_kernel(x, targets=np.where(y == 1, 1.0, -1.0), width=300)
    np.testing.assert_allclose(same.sigma, result.sigma, rtol=1e-10)


def test_permuting_the_labels_changes_the_solution():
    x, y = d1(3).sample(40, rng=1)
    # a noisier process, so that random labels still have a solution at this width
    options = {"width": 300, "noise": 1e-2, "sigma_a": 1.0}
    result = adaptive_kernel(x, y, **options)
    permuted = np.random.default_rng(0).permutation(y)
    other = adaptive_kernel(x, permuted, **options)
    assert result.converged and other.converged
    assert np.abs(other.sigma - result.sigma).max() > 0.05 * np.abs(result.sigma).max()
    # with true labels Sigma grows along the class direction; with random ones it does not
    direction = np.ones(3) / np.sqrt(3)
    assert direction @ result.sigma @ direction > direction @ other.sigma @ direction
    assert kernel_nc1(result.kernel, y).nc1 < kernel_nc1(other.kernel, y).nc1


def test_infinite_width_reduces_to_the_nngp():
    x, y = d1(4).sample(32, rng=2)
    prior = np.eye(4) / 4
    gaps = []
    for width in (1e3, 1e5, 1e7):
        result = adaptive_kernel(x, y, width=width, sigma_a=1.0)
        assert result.converged
        gaps.append(np.abs(result.sigma - prior).max())
    # Sigma - prior = O(1/h)
    assert gaps[1] < gaps[0] / 30 and gaps[2] < gaps[1] / 30
    wide = adaptive_kernel(x, y, width=1e9, sigma_a=1.0)
    np.testing.assert_allclose(wide.kernel, nngp_hidden(x), rtol=1e-6, atol=1e-9)
    assert kernel_nc1(wide.kernel, y).nc1 == pytest.approx(kernel_nc1(nngp_hidden(x), y).nc1,
                                                           rel=1e-6)
    # a first-layer bias is a constant input whose weight has prior variance sigma_b^2
    for activation in ACTIVATIONS:
        biased = adaptive_kernel(x, y, width=1e9, sigma_a=1.0, sigma_b=0.6, sigma_w=1.3,
                                 activation=activation)
        assert biased.sigma.shape == (5, 5) and biased.sigma[-1, -1] == pytest.approx(0.36)
        np.testing.assert_allclose(
            biased.kernel, nngp_hidden(x, activation=activation, sigma_w=1.3, sigma_b=0.6),
            rtol=1e-6, atol=1e-9)


def test_adaptive_kernel_is_more_collapsed_than_nngp_on_d1():
    x, y = d1(4).sample(64, rng=3)
    result = adaptive_kernel(x, y, width=500)
    assert result.converged
    assert kernel_nc1(result.kernel, y).nc1 < 0.9 * kernel_nc1(nngp_hidden(x), y).nc1
    # Sigma grows along the class direction 1/sqrt(d0)
    direction = np.ones(4) / 2
    assert direction @ result.sigma @ direction > 1.2 / 4


def test_divergence_is_reported_not_dropped():
    """Random labels with sigma^2 = 1e-6: t = (Q + sigma^2)^-1 y is huge and Sigma^-1
    loses positive definiteness even at a large width."""
    x, y = d1(3).sample(40, rng=1)
    permuted = np.random.default_rng(0).permutation(y)
    result = adaptive_kernel(x, permuted, width=300, max_refinements=1)
    assert result.status == "diverged" and not result.converged
    assert "positive definite" in result.message
    assert result.width_reached > 300 and result.kernel.shape == (40, 40)
    assert [p["status"] for p in result.path].count("diverged") == 2
    # a width it never reached: the kernel returned is the last solved one (here the NNGP)
    np.testing.assert_allclose(result.sigma, np.eye(3) / 3)


def test_relu_and_torch_inputs():
    x, y = d1(3).sample(32, rng=4)
    result = adaptive_kernel(torch.from_numpy(x), torch.from_numpy(y), width=500,
                             activation="relu", noise=1e-2, sigma_a=1.0)
    assert result.converged and torch.is_tensor(result.kernel)
    assert result.kernel.dtype == torch.float64


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"labels": None}, "exactly one of labels and targets"),
        ({"targets": np.ones(8)}, "exactly one"),
        ({"width": 0.0}, "width must be"),
        ({"width": 100.0, "start_width": 10.0}, "start_width"),
        ({"noise": -1.0}, "noise must be"),
        ({"activation": "tanh"}, "unknown activation"),
        ({"anneal_steps": 0}, "anneal_steps"),
    ],
)
def test_bad_input(kwargs, message):
    x, y = d1(2).sample(8, rng=0)
    args = {"labels": y, **kwargs}
    with pytest.raises(NCInputError, match=message):
        adaptive_kernel(x, **args)
    with pytest.raises(NCInputError, match="single class"):
        adaptive_kernel(x, np.zeros(8, int))
    with pytest.raises(NCInputError, match="rows"):
        adaptive_kernel(x, targets=np.ones(5))


def test_newton_on_sigma_minus_f_breaks_where_the_stationarity_form_converges():
    """Newton on Sigma - F(Sigma) needs F at every trial point, and F inverts a matrix
    that is not positive definite away from the solution: the solve aborts. The
    preconditioned form Sigma P Sigma - Sigma has the same root and converges."""
    import scipy.optimize

    from nclab.kernels.adaptive import Diverged

    x, y = d1(2).sample(64, rng=0)
    result = adaptive_kernel(x, y, width=500, anneal_steps=1)
    assert result.converged and result.evaluations < 40
    system = EquationsOfState(torch.from_numpy(x), torch.from_numpy(np.where(y == 1, 1.0, -1.0))
                              [:, None], ACTIVATIONS["erf"], 1.0, 128**-0.5, 1e-6)
    with pytest.raises(Diverged):
        scipy.optimize.newton_krylov(
            lambda s: system.residual(torch.from_numpy(s), 500.0).numpy(),
            system.prior.numpy(), f_tol=1e-6, maxiter=15)
    root = torch.from_numpy(result.sigma)
    assert float(system.residual(root, 500.0).abs().max()) < 1e-5
    assert float(system.stationarity(root, 500.0).abs().max()) < 1e-5


def test_relu_needs_a_bias_to_collapse():
    """Bias-free ReLU units are homogeneous and cannot fit +-1 along the class direction:
    their adaptive kernel is less collapsed than the NNGP. With a bias it is more."""
    x, y = d1(16).sample(64, rng=0)
    plain = adaptive_kernel(x, y, width=500, activation="relu")
    assert plain.converged
    assert kernel_nc1(plain.kernel, y).nc1 > 2 * kernel_nc1(nngp_hidden(x, activation="relu"),
                                                            y).nc1
    biased = adaptive_kernel(x, y, width=500, activation="relu", sigma_b=1.0)
    assert biased.converged and biased.sigma.shape == (17, 17)
    reference = kernel_nc1(nngp_hidden(x, activation="relu", sigma_b=1.0), y).nc1
    assert kernel_nc1(biased.kernel, y).nc1 < 0.8 * reference
