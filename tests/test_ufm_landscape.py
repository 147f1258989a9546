"""Landscape of the sphere UFM: Hessian against finite differences, critical points."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nclab.core.errors import NCInputError
from nclab.ufm import SphereUFM, etf_point, flipped_point, grouped_point, probe, simplex_etf
from nclab.ufm.landscape import random_rotation, riemannian_hessian, symmetry_modes


def orbit_dimension(K, d):
    """dim O(d) - dim O(d - K + 1): rotations that move a simplex spanning K - 1 dims."""
    free = d - (K - 1)
    return d * (d - 1) // 2 - free * (free - 1) // 2


def geodesic(x, xi, t):
    """Row-wise exponential map of the unit sphere: cos(t|xi|) x + sin(t|xi|) xi/|xi|."""
    norm = np.linalg.norm(xi, axis=1, keepdims=True)
    return np.cos(t * norm) * x + np.sin(t * norm) * xi / norm


def test_hessian_matches_second_derivative_along_geodesics():
    """<xi, Hess f[xi]> = d^2/dt^2 f(gamma(t)) at t = 0 for the geodesic gamma with gamma' = xi."""
    ufm = SphereUFM(4, 5, per_class=2, tau=2.0)
    W, H = ufm.random_start([11])
    W, H = W[0], H[0]
    matrix, basis = riemannian_hessian(ufm, W, H)
    assert torch.allclose(matrix, matrix.T, atol=1e-14)
    x = torch.cat([W, H]).numpy()
    rng = np.random.default_rng(0)

    def f(point):
        point = torch.from_numpy(point)
        return ufm.objective(point[:4], point[4:]).item()

    for _ in range(3):
        coords = rng.normal(size=matrix.shape[0])
        xi = torch.einsum("rds,rs->rd", basis, torch.from_numpy(coords).view(12, 4)).numpy()
        t = 1e-3
        second = (f(geodesic(x, xi, t)) - 2 * f(x) + f(geodesic(x, xi, -t))) / t**2
        quadratic = coords @ matrix.numpy() @ coords
        assert quadratic == pytest.approx(second, rel=1e-5)


def test_probe_gradient_is_the_projected_autograd_gradient():
    ufm = SphereUFM(3, 4, per_class=2, tau=1.5)
    W, H = ufm.random_start([2])
    result = probe(ufm, W[0], H[0], k=5)
    rw, rh = ufm.riemannian_grad(W[0], H[0])
    assert result.grad_norm == pytest.approx(float(torch.cat([rw, rh]).norm()), rel=1e-12)
    assert result.objective == pytest.approx(ufm.objective(W[0], H[0]).item(), rel=1e-14)
    assert result.dimension == (3 + 6) * 3 and len(result.eigenvalues) == 5


def test_lanczos_agrees_with_dense():
    ufm = SphereUFM(4, 4, per_class=2, tau=3.0)
    W, H = ufm.random_start([4])
    dense = probe(ufm, W[0], H[0], k=4, method="dense").eigenvalues
    lanczos = probe(ufm, W[0], H[0], k=4, method="lanczos").eigenvalues
    np.testing.assert_allclose(lanczos, dense, atol=1e-8)


@pytest.mark.parametrize("K, d, n", [(10, 16, 2), (10, 10, 1), (5, 4, 2)])
def test_etf_has_only_rotation_zero_modes(K, d, n):
    """At the global minimizer the Hessian is PSD and vanishes exactly on rotations."""
    ufm = SphereUFM(K, d, per_class=n, tau=4.0)
    W, H = etf_point(ufm, random_rotation(d, seed=K + d))
    result = probe(ufm, W, H, k=orbit_dimension(K, d) + 5)
    assert result.grad_norm < 1e-12
    assert result.objective == pytest.approx(ufm.optimal_value, rel=1e-13)
    assert result.symmetry_modes == orbit_dimension(K, d)
    assert result.min_eigenvalue > -1e-10
    assert result.zero_modes(1e-8) == orbit_dimension(K, d)
    assert result.eigenvalues[orbit_dimension(K, d)] > 1e-3  # a clear gap after them


@pytest.mark.parametrize("name, build", [
    ("grouped G=5", lambda u, q: grouped_point(u, 5, q)),
    ("grouped G=2", lambda u, q: grouped_point(u, 2, q)),
    ("flipped", flipped_point),
])
def test_constructed_critical_points_are_strict_saddles(name, build):
    """K = 10, d = 16: gradient < 1e-8 and a negative eigenvalue < -1e-6."""
    ufm = SphereUFM(10, 16, per_class=2, tau=4.0)
    W, H = build(ufm, random_rotation(16, seed=3))
    result = probe(ufm, W, H, k=3)
    assert result.grad_norm < 1e-8, name
    assert result.min_eigenvalue < -1e-6, name
    assert result.objective > ufm.optimal_value + 0.1


@settings(max_examples=30, deadline=None)
@given(K=st.integers(2, 9), extra=st.integers(0, 3), n=st.integers(1, 3),
       tau=st.floats(0.2, 12.0), seed=st.integers(0, 1000), data=st.data())
def test_constructions_are_critical_for_any_size(K, extra, n, tau, seed, data):
    d = K - 1 + extra
    if d < 1:
        d = 1
    ufm = SphereUFM(K, d, per_class=n, tau=tau)
    rotation = random_rotation(d, seed)
    points = [flipped_point(ufm, rotation)]
    divisors = [g for g in range(1, K) if K % g == 0]
    points.append(grouped_point(ufm, data.draw(st.sampled_from(divisors)), rotation))
    for W, H in points:
        rw, rh = ufm.riemannian_grad(W, H)
        assert float(torch.cat([rw, rh]).norm()) < 1e-12
        assert torch.allclose(W.norm(dim=1), torch.ones(K, dtype=torch.float64))


def test_simplex_etf_geometry():
    E = simplex_etf(6, 7)
    gram = E @ E.T
    expected = torch.full((6, 6), -1 / 5, dtype=torch.float64).fill_diagonal_(1.0)
    torch.testing.assert_close(gram, expected, atol=1e-14, rtol=0)
    assert float(E[:, 5:].abs().max()) == 0.0  # spans the first K - 1 coordinates
    assert symmetry_modes(E, E) == orbit_dimension(6, 7)


def test_descent_ends_at_a_minimizer_not_a_saddle():
    ufm = SphereUFM(5, 6, per_class=2, tau=4.0)
    solution = ufm.solve(range(3), steps=2000, grad_tol=1e-12)
    for run in range(3):
        result = probe(ufm, solution.weight[run], solution.features[run], k=40)
        assert result.min_eigenvalue > -1e-8
        assert result.zero_modes(1e-7) == orbit_dimension(5, 6)


@pytest.mark.parametrize("call, message", [
    (lambda u, W, H: probe(u, 2 * W, H), "unit vectors"),
    (lambda u, W, H: probe(u, W[:-1], H), "shape"),
    (lambda u, W, H: probe(u, W, H, method="power"), "method"),
    (lambda u, W, H: grouped_point(u, 4), "divide"),
    (lambda u, W, H: grouped_point(u, 6), "divide"),
    (lambda u, W, H: simplex_etf(6, 4), "dim >= 5"),
])
def test_bad_input(call, message):
    ufm = SphereUFM(6, 5, per_class=1)
    W, H = etf_point(ufm)
    with pytest.raises(NCInputError, match=message):
        call(ufm, W, H)
