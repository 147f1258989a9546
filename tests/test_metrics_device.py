"""compute_metrics in torch on the statistics' device: the numpy values, nothing big
copied to the host, and the float32-tile mode within its stated error."""

import math

import numpy as np
import pytest
import torch
from reference import gaussian_classes

from nclab import CollapseStats, NCInputError, compute_metrics
from nclab.core import geometry, metrics, moments
from nclab.core.metrics import METRIC_NAMES
from nclab.core.validation import as_classifier


def collapsed_problem(num_classes, dim, seed=0, empty=()):
    """Stats of well separated Gaussian classes, a classifier near the means, a bias."""
    rng = np.random.default_rng(seed)
    features, labels = gaussian_classes(rng, C=num_classes, d=dim, sizes=[5] * num_classes)
    keep = ~np.isin(labels, empty)
    stats = CollapseStats(num_classes, dim).update(features[keep], labels[keep])
    means = np.array([features[labels == c].mean(axis=0) for c in range(num_classes)])
    weight = means + 0.3 * rng.normal(size=(num_classes, dim))
    return stats, weight, rng.normal(size=num_classes), rng.normal(size=dim)


def assert_same_metrics(left, right, rel, absolute=1e-300):
    for name in METRIC_NAMES:
        a, b = getattr(left, name), getattr(right, name)
        if a is None or b is None:
            assert a is b, name
        elif math.isfinite(a):
            assert b == pytest.approx(a, rel=rel, abs=absolute), name
        else:
            assert a == b, name


@pytest.mark.parametrize("num_classes, dim, block, dense_limit, weighted, exponent", [
    (12, 20, 1024, None, False, 2.0),  # C <= d: pairwise spread, dense ETF gaps
    (12, 20, 5, 0, True, 1.0),         # tiled ETF gaps, diagonal and off-diagonal tiles
    (40, 8, 7, None, False, 3.0),      # C > d: closed forms
])
def test_torch_backend_gives_the_numpy_values(monkeypatch, num_classes, dim, block,
                                              dense_limit, weighted, exponent):
    if dense_limit is not None:
        monkeypatch.setattr(geometry, "_DENSE_GRAM_LIMIT", dense_limit)
    stats, weight, bias, ood = collapsed_problem(num_classes, dim, empty=(3,))
    options = dict(weighted_mean=weighted, ood_mean=ood, cdnv_exponent=exponent, block=block)
    on_host = compute_metrics(stats, weight, bias, backend="numpy", **options)
    in_torch = compute_metrics(stats, weight, bias, backend="torch", **options)
    assert_same_metrics(on_host, in_torch, rel=1e-9)
    assert in_torch.empty_classes == on_host.empty_classes == (3,)


def test_torch_backend_keeps_coinciding_means_infinite():
    features = np.array([[0.0, 1.0], [0.0, 1.2], [0.0, 1.0], [0.0, 1.2], [1.0, 0.0], [1.2, 0]])
    stats = CollapseStats(3).update(features, np.array([0, 0, 1, 1, 2, 2]))
    on_host = compute_metrics(stats, backend="numpy")
    in_torch = compute_metrics(stats, backend="torch")
    assert on_host.cdnv == in_torch.cdnv == math.inf
    assert_same_metrics(on_host, in_torch, rel=1e-9)


def refuse_big_host_copies(monkeypatch, num_classes):
    """Make every copy to the host of a tensor with more than C entries (a (C, d),
    (d, d) or (C, C) array) raise; vectors of C values and scalars may cross. The
    classifier, given here as numpy, is checked on the host (it is not the statistics)."""
    checking_classifier = []

    def classifier_on_host(*args, **kwargs):
        checking_classifier.append(True)
        try:
            return as_classifier(*args, **kwargs)
        finally:
            checking_classifier.pop()
    monkeypatch.setattr(metrics, "as_classifier", classifier_on_host)

    def guarded(name):
        original = getattr(torch.Tensor, name)

        def method(self, *args, **kwargs):
            if not checking_classifier and (self.dim() > 1 or self.numel() > num_classes):
                raise AssertionError(f"{tuple(self.shape)} tensor copied to the host")
            return original(self, *args, **kwargs)
        return method
    for name in ("cpu", "numpy", "__array__", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, guarded(name))
    # these statistics live in CPU memory posing as a device: the statistics pass's host
    # syrk (a zero-copy numpy view, taken only for CPU tensors: test_moments_host_gram)
    # would trip the guard where a real device never takes it
    monkeypatch.setattr(moments, "host_syrk_applies", lambda z: False)


def test_the_torch_backend_moves_no_statistics_to_the_host(monkeypatch):
    stats, weight, bias, ood = collapsed_problem(30, 16)
    expected = compute_metrics(stats, weight, bias, ood_mean=ood)
    with monkeypatch.context() as patched:
        refuse_big_host_copies(patched, 30)
        stats = collapsed_problem(30, 16)[0]  # no numpy copy of the state cached yet
        with pytest.raises(AssertionError, match="copied to the host"):  # the guard works
            compute_metrics(stats, weight, bias, ood_mean=ood, backend="numpy")
        stats = collapsed_problem(30, 16)[0]
        found = compute_metrics(stats, weight, bias, ood_mean=ood, backend="torch", block=8)
    assert_same_metrics(expected, found, rel=1e-9)


def test_auto_runs_in_torch_when_the_statistics_are_off_the_cpu(monkeypatch):
    stats, weight, _, _ = collapsed_problem(10, 12)
    expected = compute_metrics(stats, weight)
    stats = collapsed_problem(10, 12)[0]
    monkeypatch.setattr(CollapseStats, "device", property(lambda self: torch.device("cuda")))
    refuse_big_host_copies(monkeypatch, 10)
    assert_same_metrics(expected, compute_metrics(stats, weight), rel=1e-9)


def test_the_device_is_the_states():
    assert CollapseStats(3).device == torch.device("cpu")
    stats = CollapseStats(3).update(torch.ones(2, 4), torch.tensor([0, 1]))
    assert stats.device == torch.device("cpu")
    means, spread = stats.scaled_tensors()
    assert means.shape == (3, 4) and spread.shape == (3,)
    assert torch.equal(means, torch.from_numpy(stats.scaled_means()))
    assert torch.equal(spread, torch.from_numpy(stats.scaled_spread()))


def test_metrics_in_torch_form_no_scaled_copy_of_the_scatter(monkeypatch):
    stats, weight, bias, ood = collapsed_problem(30, 16)
    stats.update(torch.full((1, 16), 1e6), torch.tensor([0]))  # a shift, so a copy would differ
    assert stats.stored_scatter()[1] != 0
    copies = []
    monkeypatch.setattr(stats, "_make_view", _recording(stats._make_view, copies))
    compute_metrics(stats, weight, bias, backend="torch")
    assert "scaled_tensor_means" in copies and not any("scatter" in key for key in copies)


def _recording(make_view, keys):
    def record(key, *args):
        keys.append(key)
        return make_view(key, *args)
    return record


#: The change that float32 tiles make to a metric (docs/performance.md): relative, or
#: absolute for the ETF gaps near 0 (measured: up to 2e-8 relative on these problems,
#: and 2.2e-8 absolute on gaps near a simplex ETF).
FLOAT32_TILE_RELATIVE, FLOAT32_TILE_ABSOLUTE = 1e-6, 1e-7


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("num_classes, dim, block", [(30, 40, 8), (60, 16, 16)])
def test_float32_tiles_stay_within_the_stated_bound(monkeypatch, backend, num_classes, dim,
                                                    block):
    monkeypatch.setattr(geometry, "_DENSE_GRAM_LIMIT", 0)  # the ETF gaps tiled too
    stats, weight, _, _ = collapsed_problem(num_classes, dim, seed=num_classes)
    exact = compute_metrics(stats, weight, backend=backend, block=block)
    fast = compute_metrics(stats, weight, backend=backend, block=block, tiles="float32")
    assert_same_metrics(exact, fast, rel=FLOAT32_TILE_RELATIVE, absolute=FLOAT32_TILE_ABSOLUTE)
    differs = [name for name in METRIC_NAMES if getattr(exact, name) != getattr(fast, name)]
    assert "cdnv" in differs  # the float32 products were used


@pytest.mark.parametrize("keyword, value", [("backend", "cuda"), ("tiles", "float16")])
def test_unknown_backend_or_tiles_is_one_clear_error(keyword, value):
    stats, _, _, _ = collapsed_problem(4, 3)
    with pytest.raises(NCInputError, match=keyword):
        compute_metrics(stats, **{keyword: value})
