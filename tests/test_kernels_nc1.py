"""kernel_nc1 / feature_nc1 against the foundation's metrics, and the data models."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import reference_metrics

from nclab import measure
from nclab.core.errors import NCInputError
from nclab.kernels import class_targets, d1, kernel_nc1, separated_classes
from nclab.kernels.nc1 import feature_nc1

FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def unbalanced(seed, num_classes=3, dim=5):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 25, size=num_classes)
    y = np.repeat(np.arange(num_classes), sizes)
    h = rng.normal(size=(num_classes, dim))[y] * 2 + rng.normal(size=(len(y), dim)) * 0.7
    order = rng.permutation(len(y))
    return h[order], y[order]


@FEW
@given(seed=st.integers(0, 10_000), weighted=st.booleans(), num_classes=st.integers(2, 5))
def test_linear_kernel_equals_feature_space_nc1_trace_unbalanced(seed, weighted, num_classes):
    h, y = unbalanced(seed, num_classes)
    expected = measure(h, y, weighted_mean=weighted).nc1_trace
    assert kernel_nc1(h @ h.T, y, weighted_mean=weighted).nc1 == pytest.approx(expected,
                                                                               rel=1e-9)
    assert feature_nc1(h, y, weighted_mean=weighted).nc1 == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(reference_metrics(h, y, weighted=weighted)["nc1_trace"],
                                     rel=1e-9)


def test_random_features_kernel_equals_feature_space_value():
    """An explicit nonlinear feature map: phi(x) = relu(x W), K = phi phi^T."""
    rng = np.random.default_rng(7)
    x, y = unbalanced(7, num_classes=4, dim=3)
    phi = np.maximum(x @ rng.normal(size=(3, 64)), 0)
    value = kernel_nc1(phi @ phi.T, y)
    assert value.nc1 == pytest.approx(measure(phi, y).nc1_trace, rel=1e-9)
    assert value.num_classes == 4 and value.num_samples == len(y)
    assert value.trace_within == pytest.approx(np.trace(
        sum(np.cov(phi[y == c].T, bias=True) * (y == c).sum() for c in range(4))) / len(y))


def test_balanced_block_formula_of_the_paper_is_not_used_for_unbalanced_classes():
    """The public code weights the class blocks of Tr Sigma_W by 1/C: right only if balanced."""
    x, y = d1(3).sample((10, 40), rng=11)
    h = np.tanh(x)
    sizes = np.bincount(y)
    k = h @ h.T
    paper_within = np.trace(k) / len(y) - np.mean([k[np.ix_(y == c, y == c)].sum() / n**2
                                                   for c, n in enumerate(sizes)])
    ours = kernel_nc1(k, y)
    assert abs(paper_within - ours.trace_within) > 1e-3 * ours.trace_within
    assert ours.nc1 == pytest.approx(measure(h, y).nc1_trace, rel=1e-9)


def test_sample_order_and_empty_classes_do_not_matter():
    h, y = unbalanced(3)
    k = h @ h.T
    order = np.random.default_rng(0).permutation(len(y))
    assert kernel_nc1(k[np.ix_(order, order)], y[order]).nc1 == pytest.approx(
        kernel_nc1(k, y).nc1, rel=1e-12)
    shifted = np.where(y == 2, 5, y)  # classes 2, 3, 4 empty
    assert kernel_nc1(k, shifted).nc1 == pytest.approx(kernel_nc1(k, y).nc1, rel=1e-12)
    assert kernel_nc1(torch.from_numpy(k), torch.from_numpy(y)).nc1 == pytest.approx(
        kernel_nc1(k, y).nc1, rel=1e-12)


def test_collapsed_features_give_zero_within():
    y = np.array([0, 0, 0, 1, 1])
    h = np.array([[1.0, 2.0]] * 3 + [[-1.0, 0.5]] * 2)
    value = kernel_nc1(h @ h.T, y)
    assert value.trace_within == pytest.approx(0.0, abs=1e-14) and value.nc1 < 1e-14


@pytest.mark.parametrize(
    "k, labels, message",
    [
        (np.ones((3, 4)), [0, 1, 0], "square"),
        (np.eye(3), [0, 1], "3 rows"),
        (np.eye(3), [0, 0, 0], "at least 2 classes"),
        (np.array([[1.0, 0.5], [0.0, 1.0]]), [0, 1], "not symmetric"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), [0, 1], "NaN"),
        (np.ones((4, 4)), [0, 0, 1, 1], "coincide"),
        (np.array([[1.0, 3.0], [3.0, 1.0]]) * -1, [0, 0], "at least 2"),
        (-np.eye(4), [0, 0, 1, 1], "not positive semi-definite"),
        (np.eye(2), [0, 1.5], "integers"),
    ],
)
def test_kernel_nc1_bad_input(k, labels, message):
    with pytest.raises(NCInputError, match=message) as info:
        kernel_nc1(k, np.asarray(labels))
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- data
def test_d1_population_and_sample_nc1():
    for d0 in (1, 8, 64):
        model = d1(d0)
        assert model.population_nc1() == pytest.approx(1 / 16)
        x, y = model.sample(4000, rng=d0)
        assert x.shape == (4000, d0) and np.bincount(y).tolist() == [2000, 2000]
        assert feature_nc1(x, y).nc1 == pytest.approx(1 / 16, rel=0.1)
        np.testing.assert_allclose(x[y == 1].mean(axis=0), 2.0, atol=0.05)


def test_d1_unbalanced_and_reproducible():
    model = d1(3)
    x, y = model.sample((30, 90), rng=5)
    assert np.bincount(y).tolist() == [30, 90]
    x2, _ = model.sample((30, 90), rng=5)
    assert np.array_equal(x, x2)
    with pytest.raises(NCInputError, match="does not split"):
        model.sample(101)
    with pytest.raises(NCInputError, match="positive ints"):
        model.sample((0, 10))


@pytest.mark.parametrize("num_classes, d0", [(2, 1), (2, 16), (4, 6)])
def test_separated_classes_control_nc1(num_classes, d0):
    for separation, std in ((4.0, 0.5), (8.0, 0.5), (4.0, 1.5)):
        model = separated_classes(d0, num_classes, separation, std)
        means = model.means
        gaps = [np.linalg.norm(means[a] - means[b]) for a in range(num_classes)
                for b in range(a)]
        np.testing.assert_allclose(gaps, separation)
        expected = d0 * std**2 / (separation**2 * (num_classes - 1) / (2 * num_classes))
        assert model.population_nc1() == pytest.approx(expected)
        x, y = model.sample(2000 * num_classes, rng=1)
        assert feature_nc1(x, y).nc1 == pytest.approx(expected, rel=0.12)
    if num_classes == 2:  # D1 is the member with separation 4 sqrt(d0) and std 1/2
        np.testing.assert_allclose(separated_classes(d0, 2, 4 * np.sqrt(d0), 0.5).means,
                                   d1(d0).means)


def test_data_model_errors_and_targets():
    with pytest.raises(NCInputError, match="d0 >= 5"):
        separated_classes(3, 5)
    with pytest.raises(NCInputError, match="positive integer"):
        d1(0)
    with pytest.raises(NCInputError, match="mean != 0"):
        d1(2, mean=0.0)
    assert class_targets(np.array([0, 1, 1]), 2).tolist() == [-1.0, 1.0, 1.0]
    assert class_targets(np.array([0, 2]), 3).tolist() == [[1, 0, 0], [0, 0, 1]]


SCALES = [1e-300, 1e-200, 1e-160, 1e-100, 1e-20, 1.0, 1e20, 1e100, 1e160, 1e200, 1e300]


@pytest.mark.parametrize("scale", SCALES)
def test_feature_nc1_is_scale_free_across_the_float_range(scale):
    h, y = unbalanced(11)
    reference = reference_metrics(h, y)["nc1_trace"]  # float64 brute force at scale 1
    for weighted in (False, True):
        got = feature_nc1(h * scale, y, weighted_mean=weighted)
        assert got.nc1 == pytest.approx(feature_nc1(h, y, weighted_mean=weighted).nc1,
                                        rel=1e-12)
    assert feature_nc1(h * scale, y).nc1 == pytest.approx(reference, rel=1e-9)
    if 1e-30 < scale < 1e30:  # float32 features of such magnitudes
        h32 = (h * scale).astype(np.float32)
        assert feature_nc1(h32, y).nc1 == pytest.approx(reference, rel=1e-5)


@pytest.mark.parametrize("scale", [1e-300, 1e-200, 1e-100, 1.0, 1e100, 1e200, 1e306])
def test_kernel_nc1_is_scale_free_across_the_float_range(scale):
    h, y = unbalanced(12)
    K = h @ h.T
    reference = reference_metrics(h, y)["nc1_trace"]
    got = kernel_nc1(K * scale, y)
    assert got.nc1 == pytest.approx(reference, rel=1e-9)
    assert got.trace_within == pytest.approx(kernel_nc1(K, y).trace_within * scale, rel=1e-9)
