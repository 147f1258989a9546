"""Unconstrained features models: objectives, gradients, optima, solver, collapse."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import reference_metrics
from scipy.optimize import minimize
from scipy.special import logsumexp

from nclab.core.errors import NCInputError
from nclab.ufm import RegularizedUFM, SphereUFM
from nclab.ufm.optim import descend

# ---------------------------------------------------------------- brute-force references


def brute_objective(W, H, labels, *, tau=1.0, loss="ce", b=None, lambdas=(0.0, 0.0, 0.0)):
    """Sample-by-sample float64 objective of either model (numpy, loops)."""
    W, H = np.asarray(W, dtype=np.float64), np.asarray(H, dtype=np.float64)
    b = np.zeros(W.shape[0]) if b is None else np.asarray(b, dtype=np.float64)
    total = 0.0
    for h, y in zip(H, labels, strict=True):
        z = tau * W @ h + b
        if loss == "ce":
            total += logsumexp(z) - z[y]
        else:
            target = np.zeros(W.shape[0])
            target[y] = 1.0
            total += 0.5 * np.sum((z - target) ** 2)
    lw, lh, lb = lambdas
    reg = 0.5 * (lw * np.sum(W**2) + lh * np.sum(H**2) + lb * np.sum(b**2))
    return total / len(labels) + reg


def numpy_etf(K, d):
    """K unit vectors in R^d (d >= K) with cosines -1/(K-1): the centred basis vectors."""
    M = np.sqrt(K / (K - 1)) * (np.eye(K) - 1.0 / K)
    return np.pad(M, ((0, 0), (0, d - K)))


def unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------- objectives and gradients


def test_sphere_objective_matches_brute_force_batched():
    ufm = SphereUFM(4, 3, per_class=3, tau=2.5)
    W, H = ufm.random_start([0, 1, 2])
    labels = ufm.labels().numpy()
    values = ufm.objective(W, H)
    assert values.shape == (3,)
    for s in range(3):
        assert values[s].item() == pytest.approx(
            brute_objective(W[s], H[s], labels, tau=2.5), rel=1e-13)


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_regularized_objective_matches_brute_force(loss):
    ufm = RegularizedUFM(5, 4, per_class=2, loss=loss, lambda_w=0.1, lambda_h=0.03, lambda_b=0.2)
    W, H, _ = ufm.random_start([3, 4])
    b = torch.randn(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    values = ufm.objective(W, H, b)
    for s in range(2):
        ref = brute_objective(W[s], H[s], ufm.labels().numpy(), loss=loss, b=b[s],
                              lambdas=(0.1, 0.03, 0.2))
        assert values[s].item() == pytest.approx(ref, rel=1e-13)


def _autograd_sphere(W, H, labels, tau):
    W, H = W.clone().requires_grad_(True), H.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(tau * H @ W.T, labels)
    return torch.autograd.grad(loss, (W, H))


def test_sphere_gradients_match_autograd():
    ufm = SphereUFM(6, 5, per_class=3, tau=3.0)
    W, H = ufm.random_start([7])
    _, (gw, gh) = ufm.value_and_grad((W, H))
    ref_w, ref_h = _autograd_sphere(W[0], H[0], ufm.labels(), 3.0)
    torch.testing.assert_close(gw[0], ref_w, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(gh[0], ref_h, rtol=1e-12, atol=1e-14)
    rw, rh = ufm.riemannian_grad(W[0], H[0])
    torch.testing.assert_close(rw, ref_w - (W[0] * ref_w).sum(1, keepdim=True) * W[0])
    assert torch.allclose((rh * H[0]).sum(1), torch.zeros(18, dtype=torch.float64), atol=1e-15)


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_regularized_gradients_match_autograd(loss):
    ufm = RegularizedUFM(4, 6, per_class=2, loss=loss, lambda_w=0.2, lambda_h=0.05, lambda_b=0.1)
    W, H, b = ufm.random_start([1])
    b = b + 0.3
    _, grads = ufm.value_and_grad((W, H, b))
    leaves = [x[0].clone().requires_grad_(True) for x in (W, H, b)]
    logits = leaves[1] @ leaves[0].T + leaves[2]
    y = ufm.labels()
    if loss == "ce":
        data = torch.nn.functional.cross_entropy(logits, y)
    else:
        data = 0.5 * torch.nn.functional.mse_loss(
            logits, torch.nn.functional.one_hot(y, 4).double(), reduction="sum") / len(y)
    reg = 0.5 * (0.2 * leaves[0].pow(2).sum() + 0.05 * leaves[1].pow(2).sum()
                 + 0.1 * leaves[2].pow(2).sum())
    refs = torch.autograd.grad(data + reg, leaves)
    for g, ref in zip(grads, refs, strict=True):
        torch.testing.assert_close(g[0], ref, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- known optima


@settings(max_examples=40, deadline=None)
@given(K=st.integers(2, 8), d=st.integers(1, 9), n=st.integers(1, 3),
       tau=st.floats(0.1, 20.0), seed=st.integers(0, 10**6))
def test_etf_value_is_a_lower_bound_everywhere(K, d, n, tau, seed):
    """Yaras et al.: f >= log(1 + (K-1) exp(-tau K/(K-1))) at every point, for every d."""
    ufm = SphereUFM(K, d, n, tau)
    W, H = ufm.random_start([seed])
    bound = math.log1p((K - 1) * math.exp(-tau * K / (K - 1)))
    assert ufm.etf_value == pytest.approx(bound, rel=1e-14)
    assert ufm.objective(W, H).item() >= bound - 1e-12
    assert (ufm.optimal_value is None) == (d < K - 1)


def test_sphere_etf_attains_optimal_value():
    K, d, n, tau = 7, 9, 2, 3.0
    W = numpy_etf(K, d)
    ufm = SphereUFM(K, d, n, tau)
    labels = ufm.labels().numpy()
    value = brute_objective(W, np.repeat(W, n, axis=0), labels, tau=tau)
    assert value == pytest.approx(ufm.optimal_value, rel=1e-13)


def _etf_family_optimum(ufm):
    """Minimize the brute-force objective over (a, s, beta): W = a ETF, h = s w/|w|, b = beta 1."""
    K, d, n = ufm.num_classes, ufm.dim, ufm.per_class
    E = numpy_etf(K, d)
    labels = ufm.labels().numpy()
    lambdas = (ufm.lambda_w, ufm.lambda_h, ufm.lambda_b)

    def f(p):
        a, s, beta = p
        return brute_objective(a * E, np.repeat(s * E, n, axis=0), labels, loss=ufm.loss,
                               b=np.full(K, beta), lambdas=lambdas)

    best = minimize(f, x0=[1.0, 1.0, 0.1], method="Nelder-Mead",
                    options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000})
    return best.fun


@pytest.mark.parametrize("loss, lambdas", [("ce", (5e-3, 5e-3, 5e-3)), ("ce", (1e-2, 2e-3, 0.0)),
                                           ("mse", (2e-2, 2e-2, 2e-2)), ("mse", (4e-2, 1e-2, 0.0))])
def test_regularized_optimum_closed_form_and_descent(loss, lambdas):
    """Closed form = minimum over the ETF family (scipy) = what descent reaches from 8 starts."""
    lw, lh, lb = lambdas
    ufm = RegularizedUFM(6, 8, per_class=3, loss=loss, lambda_w=lw, lambda_h=lh, lambda_b=lb)
    assert ufm.optimal_value == pytest.approx(_etf_family_optimum(ufm), abs=1e-9)
    solution = ufm.solve(range(8), steps=8000)
    assert float(solution.gap.abs().max()) < 1e-9
    # Zhu et al.: h_{k,i} = sqrt(lambda_W / (lambda_H n)) w_k, and W's rows a simplex ETF.
    W, H = solution.weight[0], solution.features[0]
    ratio = math.sqrt(lw / (lh * ufm.per_class))
    torch.testing.assert_close(H, ratio * W.repeat_interleave(3, dim=0), atol=1e-6, rtol=0)
    metrics = solution.metrics(0)
    assert metrics.etf_error_weights < 1e-6 and metrics.nc1 < 1e-10


def test_regularized_trivial_minimizer_when_decay_is_large():
    ufm = RegularizedUFM(5, 6, per_class=2, loss="ce", lambda_w=0.3, lambda_h=0.3, lambda_b=0.1)
    assert ufm.num_classes * ufm.gamma >= 1 and ufm.logit_scale == 0.0
    assert ufm.optimal_value == pytest.approx(math.log(5))
    solution = ufm.solve(range(3), steps=3000)
    assert float(solution.gap.abs().max()) < 1e-9
    assert float(solution.weight.abs().max()) < 1e-4


def test_mse_low_dimension_closed_form():
    """lambda_b = 0, d < K - 1: the best rank-d solution, reached from every start."""
    ufm = RegularizedUFM(6, 2, per_class=2, loss="mse", lambda_w=1e-2, lambda_h=1e-2,
                         lambda_b=0.0)
    solution = ufm.solve(range(6), steps=8000)
    assert ufm.optimal_value is not None
    assert float(solution.gap.abs().max()) < 1e-9
    # Rank-d logits: K - 1 - d = 3 of the equal singular values are dropped.
    logits = solution.features[0] @ solution.weight[0].T
    assert torch.linalg.matrix_rank(logits, rtol=1e-6) == 2


def test_mse_with_heavy_bias_decay_has_no_closed_form_and_beats_the_centred_etf():
    """Where a constant logit is cheaper through W H than through b, the ETF is not optimal."""
    ufm = RegularizedUFM(4, 6, per_class=2, loss="mse", lambda_w=1e-2, lambda_h=1e-2,
                         lambda_b=1.0)
    assert ufm.optimal_value is None
    solution = ufm.solve(range(4), steps=8000)
    assert float(solution.objective.max()) < _etf_family_optimum(ufm) - 1e-4


# ---------------------------------------------------------------- what must be shown


@pytest.mark.parametrize("dim", [16, 10])
def test_fifty_random_starts_reach_the_etf(dim):
    """K = 10: every one of 50 random starts reaches f* within 1e-6, etf_error < 1e-4."""
    ufm = SphereUFM(10, dim, per_class=5, tau=4.0)
    solution = ufm.solve(range(50), steps=2000)
    assert solution.gap is not None and float(solution.gap.max()) < 1e-6
    assert float(solution.gap.min()) > -1e-12  # f* is a lower bound
    for run in range(50):
        metrics = solution.metrics(run)
        assert metrics.etf_error_means < 1e-4 and metrics.etf_error_weights < 1e-4
        assert metrics.wh_duality < 1e-4 and metrics.nc1 < 1e-8
    ref = reference_metrics(solution.features[0].numpy(), solution.labels.numpy(),
                            solution.weight[0].numpy(), np.zeros(10))
    assert ref["etf_error_weights"] < 1e-4 and ref["self_duality"] < 1e-8


def test_low_dimension_solution_is_the_regular_polygon():
    """d = 2 < K - 1: no ETF; every start ends at the regular decagon with h = w."""
    K, tau = 10, 4.0
    ufm = SphereUFM(K, 2, per_class=2, tau=tau)
    assert ufm.optimal_value is None
    solution = ufm.solve(range(10), steps=3000)
    angles = 2 * np.pi * np.arange(K) / K
    polygon = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    value = brute_objective(polygon, np.repeat(polygon, 2, axis=0), ufm.labels().numpy(),
                            tau=tau)
    assert value > ufm.etf_value + 0.1
    np.testing.assert_allclose(solution.objective.numpy(), value, atol=1e-9)
    W = solution.weight[3].numpy()
    cos = np.sort((W @ W.T)[0])
    np.testing.assert_allclose(cos, np.sort(np.cos(angles)), atol=1e-5)


# ---------------------------------------------------------------- solver and validation


def test_descent_is_monotone_and_stops_at_grad_tol():
    ufm = SphereUFM(5, 4, per_class=2, tau=6.0)
    start = ufm.random_start(range(6))
    _, trace = descend(ufm, start, steps=400, lr=50.0, grad_tol=1e-6)
    steps = trace.objective.diff(dim=0)
    assert float(steps.max()) <= 1e-13  # a huge first step is rejected, never taken
    assert trace.iterations < 400 and float(trace.grad_norm[-1].max()) <= 1e-6
    assert trace.objective.shape == (trace.iterations + 1, 6)


def test_same_seed_same_start_whatever_the_batch():
    ufm = SphereUFM(3, 4, per_class=2)
    alone = ufm.random_start([5])
    batch = ufm.random_start([1, 5, 9])
    torch.testing.assert_close(alone[0][0], batch[0][1])
    torch.testing.assert_close(alone[1][0], batch[1][1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    ufm = SphereUFM(6, 7, per_class=2, tau=3.0)
    cpu = ufm.solve(range(4), steps=200)
    gpu = ufm.solve(range(4), steps=200, device="cuda")
    torch.testing.assert_close(gpu.objective.cpu(), cpu.objective, atol=1e-12, rtol=0)


@pytest.mark.parametrize("build, message", [
    (lambda: SphereUFM(1, 3), "num_classes"),
    (lambda: SphereUFM(3, 0), "dim"),
    (lambda: SphereUFM(3, 3, per_class=0), "per_class"),
    (lambda: SphereUFM(3, 3, tau=0.0), "tau"),
    (lambda: SphereUFM(3, 3, tau=float("nan")), "tau"),
    (lambda: RegularizedUFM(3, 3, loss="hinge"), "loss"),
    (lambda: RegularizedUFM(3, 3, lambda_w=0.0), "lambda_w"),
    (lambda: RegularizedUFM(3, 3, lambda_b=-1.0), "lambda_b"),
    (lambda: SphereUFM(3, 3).solve(steps=-1), "steps"),
    (lambda: SphereUFM(3, 3).solve(lr=0.0), "lr"),
])
def test_bad_input_is_one_clear_error(build, message):
    with pytest.raises(NCInputError, match=message):
        build()
