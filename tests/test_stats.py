"""CollapseStats and the metrics against the brute-force reference."""

import numpy as np
import pytest
import torch
from reference import gaussian_classes, reference_metrics

from nclab import CollapseStats, DecisionStats, NCInputError, compute_metrics, measure
from nclab.core.metrics import METRIC_NAMES


def assert_close_to_reference(result, ref, rtol=1e-8):
    assert set(ref) <= set(METRIC_NAMES)
    for name, expected in ref.items():
        got = getattr(result, name)
        assert got == pytest.approx(expected, rel=rtol, abs=1e-12), name


@pytest.mark.parametrize(
    "sizes", [[40] * 6, [5, 80, 13, 41, 2, 60]], ids=["balanced", "unbalanced"]
)
@pytest.mark.parametrize("weighted", [False, True])
def test_streaming_matches_reference(sizes, weighted):
    rng = np.random.default_rng(1)
    H, y = gaussian_classes(rng, sizes=sizes)
    W, b = rng.normal(size=(6, 10)), rng.normal(size=6)
    result = measure(H, y, W, b, weighted_mean=weighted, batch_size=17)
    assert_close_to_reference(result, reference_metrics(H, y, W, b, weighted=weighted))
    assert result.num_samples == len(y) and result.num_classes == 6


def test_every_metric_is_checked_against_the_reference():
    rng = np.random.default_rng(2)
    H, y = gaussian_classes(rng)
    ref = reference_metrics(H, y, rng.normal(size=(6, 10)), rng.normal(size=6),
                            ood=rng.normal(size=(9, 10)))
    assert set(ref) == set(METRIC_NAMES)


def test_classifier_metrics_are_none_without_weight():
    rng = np.random.default_rng(3)
    H, y = gaussian_classes(rng)
    result = measure(H, y)
    assert result.self_duality is None and result.ncc_mismatch is None
    assert result.to_dict()["wh_duality"] is None
    assert_close_to_reference(result, reference_metrics(H, y))


def test_merge_and_state_dict_roundtrip(tmp_path):
    rng = np.random.default_rng(4)
    H, y = gaussian_classes(rng)
    whole = CollapseStats(6).update(H, y)
    a = CollapseStats(6).update(H[:100], y[:100])
    b = CollapseStats(6).update(H[100:], y[100:])
    torch.save(b.state_dict(), tmp_path / "b.pt")
    restored = CollapseStats(6).load_state_dict(torch.load(tmp_path / "b.pt", weights_only=True))
    merged = a.merge(restored)
    np.testing.assert_array_equal(merged.counts, whole.counts)
    np.testing.assert_allclose(merged.means, whole.means, rtol=1e-12)
    np.testing.assert_allclose(merged.scatter, whole.scatter, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(merged.spread, whole.spread, rtol=1e-10)


def test_float32_torch_input_and_missing_class_is_reported():
    rng = np.random.default_rng(5)
    H, y = gaussian_classes(rng)
    keep = y != 3
    H, y = H[keep].astype(np.float32), y[keep]
    stats = CollapseStats(6).update(torch.from_numpy(H), torch.from_numpy(y))
    result = compute_metrics(stats)
    assert result.empty_classes == (3,)
    assert any("no samples" in w for w in result.warnings)
    assert_close_to_reference(result, reference_metrics(H, y), rtol=1e-5)


def test_precision_tiny_spread_large_means_float32():
    """Means of norm 1e3, spread 1e-4: the naive E[hh^T] - mu mu^T would be all noise."""
    rng = np.random.default_rng(6)
    C, d, n = 5, 8, 400
    mu = rng.normal(size=(C, d))
    mu *= 1e3 / np.linalg.norm(mu, axis=1, keepdims=True)
    y = np.repeat(np.arange(C), n)
    H = (mu[y] + 1e-4 * rng.normal(size=(C * n, d))).astype(np.float32)
    ref = reference_metrics(H, y)  # the float32 data, in float64
    assert 1e-16 < ref["nc1"] < 1e-10
    stats = CollapseStats(C)
    for start in range(0, len(y), 256):
        stats.update(torch.from_numpy(H[start:start + 256]), y[start:start + 256])
    result = compute_metrics(stats)
    for name in ("nc1", "nc1_trace", "cdnv"):
        assert getattr(result, name) == pytest.approx(ref[name], rel=1e-6), name


def test_large_c_paths_match_dense():
    """Tiling and the trace identities give the same numbers as the dense path."""
    rng = np.random.default_rng(7)
    H, y = gaussian_classes(rng, C=30, d=12, sizes=[6] * 30)
    W = rng.normal(size=(30, 12))
    stats = CollapseStats(30).update(H, y)
    dense = compute_metrics(stats, W)
    tiled = compute_metrics(stats, W, block=7)
    import nclab.core.geometry as geometry

    old = geometry._DENSE_GRAM_LIMIT
    geometry._DENSE_GRAM_LIMIT = 0
    try:
        factored = compute_metrics(stats, W)
    finally:
        geometry._DENSE_GRAM_LIMIT = old
    for name in METRIC_NAMES[:13]:
        assert getattr(tiled, name) == pytest.approx(getattr(dense, name), rel=1e-10), name
        assert getattr(factored, name) == pytest.approx(getattr(dense, name), rel=1e-8), name
    assert not dense.etf_meaningful and any("d+1" in w for w in dense.warnings)


def test_many_classes_bounded_memory():
    """C = 10,000 classes in d = 16: pair metrics run tiled (no C x C matrix)."""
    rng = np.random.default_rng(8)
    C, d = 10_000, 16
    mu = rng.normal(size=(C, d))
    y = np.repeat(np.arange(C), 2)
    H = mu[y] + 0.01 * rng.normal(size=(2 * C, d))
    # with b_c = -||mu_c||^2 / 2 the classifier is exactly the nearest-mean rule
    result = measure(H, y, weight=mu, bias=-0.5 * np.sum(mu * mu, axis=1))
    sub = np.isin(y, np.arange(40))
    # the cdnv of all pairs is finite and of the order of the 40-class reference
    ref = reference_metrics(H[sub], y[sub])
    assert 0.1 < result.cdnv / ref["cdnv"] < 10
    assert result.ncc_mismatch < 1e-3 and result.accuracy > 0.99


def test_decision_stats_merge_equals_single_pass():
    rng = np.random.default_rng(9)
    H, y = gaussian_classes(rng, spread=3.0)
    W = rng.normal(size=(6, 10))
    stats = CollapseStats(6).update(H, y)
    whole = DecisionStats.from_stats(stats, W).update(H, y)
    parts = DecisionStats.from_stats(stats, W).update(H[:77], y[:77])
    parts.merge(DecisionStats.from_stats(stats, W).update(H[77:], y[77:]))
    assert whole.compute() == parts.compute()
    assert 0 < whole.compute()[0] < 1


@pytest.mark.parametrize(
    "features, labels, message",
    [
        (np.full((4, 3), np.nan), [0, 1, 0, 1], "NaN or inf"),
        (np.ones((4, 3)), [0, 1, 0], "3 entries but features has 4 rows"),
        (np.ones((4, 3)), [0, 1, 0.5, 1], "must be integers"),
        (np.ones((4, 3)), [0, 1, -1, 1], ">= 0"),
        (np.ones(4), [0, 1, 0, 1], "must be 2-D"),
        (np.ones((2, 3)), [0, 1], "single sample"),
        (np.ones((4, 3)), [0, 0, 0, 0], "at least 2 classes"),
    ],
)
def test_bad_input_is_one_clear_error(features, labels, message):
    with pytest.raises(NCInputError, match=message):
        measure(features, labels)


def test_label_out_of_range_and_shapes():
    with pytest.raises(NCInputError, match="out of range"):
        CollapseStats(2).update(np.ones((3, 2)), [0, 1, 2])
    stats = CollapseStats(2).update(np.ones((3, 2)), [0, 1, 1])
    with pytest.raises(NCInputError, match="feature dimension 5"):
        stats.update(np.ones((3, 5)), [0, 1, 1])
    with pytest.raises(NCInputError, match="weight must have shape"):
        measure(np.random.rand(6, 2), [0, 1, 0, 1, 0, 1], weight=np.ones((3, 3)))
    with pytest.raises(NCInputError, match="coincide"):
        measure([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], [0, 0, 1, 1])


def test_scalars_are_the_numeric_metrics_with_a_prefix() -> None:
    rng = np.random.default_rng(0)
    h, y = rng.normal(size=(60, 4)), np.repeat(np.arange(3), 20)
    with_classifier = measure(h, y, weight=rng.normal(size=(3, 4)))
    scalars = with_classifier.scalars(prefix="nc/")
    assert scalars["nc/nc1"] == with_classifier.nc1
    assert all(isinstance(v, float) for v in scalars.values())
    assert set(scalars) == {f"nc/{name}" for name, v in with_classifier.to_dict().items()
                            if isinstance(v, float)}
    assert "nc/self_duality" not in measure(h, y).scalars(prefix="nc/")
