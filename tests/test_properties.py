"""Property tests: merge order, permutation, scale invariance, exact ETF -> 0."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import gaussian_classes, simplex_etf

from nclab import CollapseStats, compute_metrics, measure

SCALE_FREE = (
    "nc1", "nc1_trace", "cdnv", "equinorm_means", "equiangularity_means", "maxangle_means",
    "etf_error_means", "self_duality", "wh_duality", "ncc_mismatch", "accuracy",
)
COMMON = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _data(seed, C=5, d=7):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 30, size=C).tolist()
    H, y = gaussian_classes(rng, C=C, d=d, sizes=sizes, spread=rng.uniform(0.05, 2.0))
    return rng, H, y


@COMMON
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(0, 10_000), max_size=6),
       order=st.randoms(use_true_random=False))
def test_any_split_any_merge_order_equals_one_pass(seed, cuts, order):
    _, H, y = _data(seed)
    whole = CollapseStats(5).update(H, y)
    bounds = sorted({0, len(y), *(c % len(y) for c in cuts)})
    spans = zip(bounds, bounds[1:], strict=False)
    parts = [CollapseStats(5).update(H[a:b], y[a:b]) for a, b in spans]
    order.shuffle(parts)
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    np.testing.assert_array_equal(merged.counts, whole.counts)
    for key in ("means", "spread", "scatter"):
        np.testing.assert_allclose(getattr(merged, key), getattr(whole, key),
                                   rtol=1e-10, atol=1e-10 * np.abs(getattr(whole, key)).max())


@COMMON
@given(seed=st.integers(0, 10_000))
def test_permuting_samples_changes_nothing(seed):
    rng, H, y = _data(seed)
    W = rng.normal(size=(5, 7))
    perm = rng.permutation(len(y))
    a, b = measure(H, y, W, batch_size=8), measure(H[perm], y[perm], W, batch_size=13)
    for name, value in a.to_dict().items():
        if isinstance(value, float):
            assert b.to_dict()[name] == pytest.approx(value, rel=1e-9, abs=1e-13), name


@COMMON
@given(seed=st.integers(0, 10_000), scale=st.floats(1e-3, 1e3))
def test_scaling_features_and_weights_leaves_scale_free_metrics(seed, scale):
    rng, H, y = _data(seed)
    W = rng.normal(size=(5, 7))
    a, b = measure(H, y, W), measure(H * scale, y, W * scale)
    for name in SCALE_FREE:
        assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-8, abs=1e-12), name


@COMMON
@given(seed=st.integers(0, 10_000), C=st.integers(2, 8), extra=st.integers(0, 5))
def test_exact_etf_with_tiny_noise_is_collapsed(seed, C, extra):
    rng = np.random.default_rng(seed)
    d = max(C - 1, 1) + extra
    M = simplex_etf(C, d, rng, scale=5.0)
    y = np.repeat(np.arange(C), 10)
    H = M[y] + 1e-7 * rng.normal(size=(len(y), d))
    result = measure(H, y, weight=M)
    for name in ("nc1", "etf_error_means", "equinorm_means", "self_duality", "etf_error_weights",
                 "wh_duality", "equiangularity_means", "maxangle_means"):
        assert getattr(result, name) < 1e-6, name
    assert result.ncc_mismatch == 0 and result.accuracy == 1


@COMMON
@given(seed=st.integers(0, 10_000))
def test_random_unstructured_features_are_not_collapsed(seed):
    rng = np.random.default_rng(seed)
    H, y = rng.normal(size=(300, 10)), rng.integers(0, 4, size=300)
    result = measure(H, y)
    assert result.nc1 > 1.0 and result.nc1_trace > 1.0


def test_scatter_is_symmetric_psd():
    _, H, y = _data(3)
    stats = CollapseStats(5).update(H.astype(np.float32), y)
    np.testing.assert_allclose(stats.scatter, stats.scatter.T, atol=1e-9)
    assert np.linalg.eigvalsh(stats.scatter).min() > -1e-8
    assert compute_metrics(stats).nc1 > 0
