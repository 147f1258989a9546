"""Closed-form NNGP / NTK kernels against limits, identities and a finite network.

The Monte Carlo reference builds a random two-layer network in the 'ntk'
parameterization from scratch, takes its empirical NNGP (hidden features) and its
empirical NTK (inner products of explicit parameter gradients), and checks that both
converge to the closed forms as the width grows.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nclab.core.errors import NCInputError
from nclab.kernels import (
    ACTIVATIONS,
    TwoLayerNetwork,
    input_kernel,
    kernel_nc1,
    nngp,
    nngp_hidden,
    ntk,
    relu_kact,
    relu_kdot,
    two_layer_kernels,
)

ACTS = {"erf": torch.erf, "relu": torch.relu}
FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def empirical_kernels(x, width, activation, sigma_w, sigma_b, seed):
    """Empirical (NNGP of the hidden layer, NTK) of one random network of ``width``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(x, dtype=torch.float64)
    n, d0 = x.shape
    params = [torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
              for shape in ((width, d0), (width,), (1, width), (1,))]
    w1, b1, w2, b2 = params
    phi = ACTS[activation](sigma_w * x @ w1.T / math.sqrt(d0) + sigma_b * b1)
    f = (sigma_w * phi @ w2.T / math.sqrt(width) + sigma_b * b2)[:, 0]
    rows = [torch.cat([g.flatten() for g in torch.autograd.grad(f[i], params, retain_graph=True)])
            for i in range(n)]
    jac = torch.stack(rows)
    return (phi @ phi.T / width).detach().numpy(), (jac @ jac.T).detach().numpy()


def mc_error(x, width, activation, sigma_w, sigma_b, seeds):
    exact = two_layer_kernels(x, activation=activation, sigma_w=sigma_w, sigma_b=sigma_b)
    draws = [empirical_kernels(x, width, activation, sigma_w, sigma_b, s) for s in seeds]
    hidden, tangent = (np.mean(k, axis=0) for k in zip(*draws, strict=True))

    def rel(a, b):
        return np.abs(a - b).max() / np.abs(b).max()

    return rel(hidden, exact["nngp_hidden"]), rel(tangent, exact["ntk"])


@pytest.mark.parametrize("activation, sigma_w, sigma_b", [("erf", 1.0, 0.0), ("erf", 1.5, 0.7),
                                                          ("relu", 1.0, 0.0), ("relu", 1.3, 0.5)])
def test_monte_carlo_network_converges_to_closed_forms(activation, sigma_w, sigma_b):
    x = np.random.default_rng(0).normal(size=(6, 3)) * 1.5
    small = mc_error(x, 64, activation, sigma_w, sigma_b, seeds=range(4))
    large = mc_error(x, 16384, activation, sigma_w, sigma_b, seeds=range(4))
    # Monte Carlo error ~ 1/sqrt(width): 16x smaller at 256x the width
    for err_small, err_large in zip(small, large, strict=True):
        assert err_large < 0.03
        assert err_large < err_small / 3


def test_network_module_hidden_gram_converges_to_nngp():
    x = np.random.default_rng(1).normal(size=(5, 4))
    for activation in ACTIVATIONS:
        net = TwoLayerNetwork(4, 40000, activation=activation, sigma_w=1.2, sigma_b=0.3,
                              generator=torch.Generator().manual_seed(0)).double()
        with torch.no_grad():
            h = net.hidden(torch.from_numpy(x))
        exact = nngp_hidden(x, activation=activation, sigma_w=1.2, sigma_b=0.3)
        np.testing.assert_allclose((h @ h.T / 40000).numpy(), exact, atol=0.02 * exact.max())


@FEW
@given(seed=st.integers(0, 10_000), activation=st.sampled_from(sorted(ACTIVATIONS)),
       sigma_w=st.floats(0.3, 3.0), sigma_b=st.floats(0.0, 2.0), d0=st.integers(1, 6))
# d0 = 1: every angle is 0 or pi, where acos is ill-conditioned
@example(seed=0, activation="relu", sigma_w=3.0, sigma_b=0.0, d0=1)
def test_kernels_are_symmetric_and_psd(seed, activation, sigma_w, sigma_b, d0):
    x = np.random.default_rng(seed).normal(size=(30, d0)) * 2
    grams = two_layer_kernels(x, activation=activation, sigma_w=sigma_w, sigma_b=sigma_b)
    for name, k in grams.items():
        np.testing.assert_allclose(k, k.T, rtol=0, atol=1e-12 * np.abs(k).max(), err_msg=name)
        assert np.linalg.eigvalsh(k)[0] >= -1e-10 * np.abs(k).max(), name


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_theta_zero_and_pi_limits(activation):
    x = np.array([[1.0, -2.0, 0.5]])
    scale = 2.5
    pair = np.vstack([x, scale * x, -scale * x])  # angles 0 and pi to the first row
    k0 = input_kernel(pair, sigma_w=1.3)
    grams = two_layer_kernels(pair, activation=activation, sigma_w=1.3)
    a, b = k0[0, 0], k0[1, 1]
    tangent_part = (grams["ntk"] - grams["nngp"]) / 1.3**2 / k0  # = Kdot
    if activation == "relu":
        # theta = 0: E[relu(u) relu(v)] = sqrt(ab)/2, Kdot = 1/2; theta = pi: both vanish
        assert grams["nngp_hidden"][0, 1] == pytest.approx(math.sqrt(a * b) / 2, rel=1e-12)
        assert tangent_part[0, 1] == pytest.approx(0.5, rel=1e-7)
        assert grams["nngp_hidden"][0, 2] == pytest.approx(0.0, abs=1e-14)
        assert tangent_part[0, 2] == pytest.approx(0.0, abs=1e-7)
    else:
        # erf is odd: x -> -x flips the sign of Kact, not Kdot
        expected = (2 / math.pi) * math.asin(2 * math.sqrt(a * b) / math.sqrt((1 + 2 * a) *
                                                                            (1 + 2 * b)))
        assert grams["nngp_hidden"][0, 1] == pytest.approx(expected, rel=1e-12)
        assert grams["nngp_hidden"][0, 2] == pytest.approx(-expected, rel=1e-12)
        assert tangent_part[0, 1] == pytest.approx(tangent_part[0, 2], rel=1e-12)
        kdot = (4 / math.pi) / math.sqrt((1 + 2 * a) * (1 + 2 * b) - 4 * a * b)
        assert tangent_part[0, 1] == pytest.approx(kdot, rel=1e-12)


def test_relu_d0_1_no_bias_ntk_is_proportional_to_nngp_so_nc1_coincide():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(-2, 0.5, 40), rng.normal(2, 0.5, 40), [0.3, -0.1]])[:, None]
    y = np.r_[np.zeros(40, int), np.ones(40, int), 0, 1]
    grams = two_layer_kernels(x, activation="relu", sigma_w=1.7, sigma_b=0.0)
    # with d0 = 1 every angle is 0 or pi, so K0 o Kdot = Kact and Theta = 2 sigma_w^2 Kact.
    # (arccos of a cosine rounded to 1 - 1e-16 is 1e-8: that bounds the agreement)
    scale = np.abs(grams["ntk"]).max()
    np.testing.assert_allclose(grams["ntk"], 2 * 1.7**2 * grams["nngp_hidden"], rtol=1e-7,
                               atol=1e-7 * scale)
    assert kernel_nc1(grams["ntk"], y).nc1 == pytest.approx(
        kernel_nc1(grams["nngp_hidden"], y).nc1, rel=1e-6)
    # with a bias the proportionality breaks
    biased = two_layer_kernels(x, activation="relu", sigma_w=1.7, sigma_b=1.0)
    ratio = biased["ntk"] / biased["nngp_hidden"]
    assert ratio.max() - ratio.min() > 0.1


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_price_theorem_derivatives(activation):
    """Kdot = dKact/dk12 and dvar = dKact/dk11, by central differences."""
    dual = ACTIVATIONS[activation]
    rng = np.random.default_rng(4)
    a, b = rng.uniform(0.2, 3.0, 50), rng.uniform(0.2, 3.0, 50)
    c = rng.uniform(-0.95, 0.95, 50) * np.sqrt(a * b)
    k12, k11, k22 = (torch.from_numpy(v) for v in (c, a, b))
    eps = 1e-6
    d12 = (dual.kact(k12 + eps, k11, k22) - dual.kact(k12 - eps, k11, k22)) / (2 * eps)
    d11 = (dual.kact(k12, k11 + eps, k22) - dual.kact(k12, k11 - eps, k22)) / (2 * eps)
    np.testing.assert_allclose(dual.kdot(k12, k11, k22), d12, rtol=1e-6)
    np.testing.assert_allclose(dual.dvar(k12, k11, k22), d11, rtol=1e-5, atol=1e-9)


def test_cross_gram_blocks_and_return_types():
    rng = np.random.default_rng(5)
    x1, x2 = rng.normal(size=(7, 3)), rng.normal(size=(4, 3))
    full = ntk(np.vstack([x1, x2]), activation="relu", sigma_b=0.4)
    cross = ntk(x1, x2, activation="relu", sigma_b=0.4)
    np.testing.assert_allclose(cross, full[:7, 7:], rtol=1e-12)
    blocked = nngp(x1, activation="erf", block_size=2)
    np.testing.assert_allclose(blocked, nngp(x1, activation="erf"), rtol=1e-14)
    assert isinstance(blocked, np.ndarray) and blocked.dtype == np.float64
    as_torch = nngp_hidden(torch.from_numpy(x1).float())
    assert torch.is_tensor(as_torch) and as_torch.dtype == torch.float64
    # output NNGP = sigma_b^2 + sigma_w^2 Kact
    np.testing.assert_allclose(nngp(x1, sigma_w=2.0, sigma_b=0.5),
                               0.25 + 4.0 * nngp_hidden(x1, sigma_w=2.0, sigma_b=0.5))


def test_relu_zero_input_has_zero_kernels():
    x = np.array([[0.0, 0.0], [1.0, 2.0]])
    k = two_layer_kernels(x, activation="relu", sigma_b=0.0)
    assert k["nngp_hidden"][0].tolist() == [0.0, 0.0]
    assert k["ntk"][0].tolist() == [0.0, 0.0]
    assert float(relu_kdot(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(1.0))) == 0.0
    assert float(relu_kact(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(1.0))) == 0.0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: nngp(np.ones(5)), "2-D"),
        (lambda: nngp(np.array([[1.0, np.nan]])), "NaN or inf"),
        (lambda: nngp(np.ones((3, 2)), np.ones((3, 4))), "d0=2"),
        (lambda: nngp(np.ones((3, 2)), activation="tanh"), "unknown activation 'tanh'"),
        (lambda: nngp(np.ones((3, 2)), sigma_w=-1.0), "sigma_w must be"),
        (lambda: nngp(np.ones((3, 2)), sigma_b=float("nan")), "sigma_b must be"),
        (lambda: two_layer_kernels(np.ones((3, 2)), get=("nngpp",)), "unknown kernel"),
        (lambda: two_layer_kernels(np.ones((3, 2)), block_size=0), "block_size"),
        (lambda: nngp(np.ones((0, 2))), "empty"),
    ],
)
def test_bad_input_raises_one_line_error(call, message):
    with pytest.raises(NCInputError, match=message) as info:
        call()
    assert "\n" not in str(info.value)
