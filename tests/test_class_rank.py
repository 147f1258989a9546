"""Per-class effective rank (definitions §8, ``class_rankme``) from the optional per-class
scatter of CollapseStats, against a float64 brute force on the raw features: the SVD of
each class's centred rows, written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nclab import CollapseStats, NCInputError, compute_metrics
from nclab.core import spectral

EPSILON = 1e-7  # Garrido et al.'s, written here independently of the module


def brute_class_rankme(X: np.ndarray, y: np.ndarray, num_classes: int) -> np.ndarray:
    """RankMe of each class's centred rows over its min(n_c - 1, d) top singular values;
    NaN for fewer than 2 rows or rows all equal."""
    ranks = np.full(num_classes, np.nan)
    for c in range(num_classes):
        rows = X[y == c]
        if len(rows) < 2:
            continue
        singular = np.linalg.svd(rows - rows.mean(axis=0), compute_uv=False)
        singular = singular[: min(len(rows) - 1, X.shape[1])]
        singular[singular <= 1e-7 * singular.max()] = 0.0  # exact rank deficiency
        if singular.max() == 0:
            continue
        p = singular / singular.sum() + EPSILON
        ranks[c] = np.exp(-np.sum(p * np.log(p)))
    return ranks


def streamed(X, y, C, batch=5, **options) -> CollapseStats:
    stats = CollapseStats(C, per_class_scatter=True, **options)
    for start in range(0, len(y), batch):
        stats.update(X[start : start + batch], y[start : start + batch])
    return stats


def low_rank_classes(rng, sizes, d, rank):
    """Classes of the given sizes, each of centred rank ``rank`` about its own mean."""
    X, y = [], []
    for c, n in enumerate(sizes):
        basis = np.linalg.qr(rng.normal(size=(d, rank)))[0]
        X.append(rng.normal(size=(n, rank)) * np.geomspace(1, 0.05, rank) @ basis.T
                 + 5 * rng.normal(size=d))
        y.append(np.full(n, c))
    return np.concatenate(X), np.concatenate(y)


CASES = {  # sizes per class, d, rank of each class
    "N > d": ([30, 25, 40], 6, 6),
    "N < d": ([4, 7, 3], 12, 12),
    "rank-deficient": ([30, 20], 10, 3),
    "one sample in a class": ([1, 9, 12], 5, 5),
}


@pytest.mark.parametrize("name", list(CASES))
def test_class_rankme_equals_brute_force(name):
    sizes, d, rank = CASES[name]
    rng = np.random.default_rng(len(name))
    X, y = low_rank_classes(rng, sizes, d, rank)
    order = rng.permutation(len(y))
    X, y = X[order], y[order]
    C = len(sizes)
    metrics = compute_metrics(streamed(X, y, C), spectral=True)
    expected = brute_class_rankme(X, y, C)
    np.testing.assert_allclose(metrics.class_rankme, expected, rtol=1e-9)
    assert metrics.class_rankme_mean == pytest.approx(np.nanmean(expected), rel=1e-9)


@pytest.mark.parametrize("scale", [1e-200, 1e-30, 1e30, 1e200])
def test_extreme_scales_give_the_class_ranks_of_scale_one(scale):
    rng = np.random.default_rng(3)
    X, y = low_rank_classes(rng, [12, 9, 15], 8, 4)
    expected = brute_class_rankme(X, y, 3)
    got = compute_metrics(streamed(X * scale, y, 3), spectral=True).class_rankme
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_one_sample_per_class_has_no_class_rank():
    X = np.random.default_rng(0).normal(size=(3, 4))
    stats = CollapseStats(3, per_class_scatter=True).update(X, [0, 1, 2])
    assert np.isnan(spectral.class_rankme(stats.counts, stats.class_scatter())).all()
    assert (stats.class_scatter() == 0).all()


def test_merge_in_any_order_equals_one_stream_and_the_brute_scatter():
    rng = np.random.default_rng(1)
    X, y = low_rank_classes(rng, [20, 15, 11], 5, 5)
    y = y[rng.permutation(len(y))]
    parts = [streamed(X[s], y[s], 3, batch=4) for s in (slice(0, 13), slice(13, 30),
                                                          slice(30, None))]
    forward = streamed(X[:13], y[:13], 3, batch=4).merge(parts[1]).merge(parts[2])
    backward = streamed(X[30:], y[30:], 3).merge(parts[1]).merge(parts[0])
    whole = streamed(X, y, 3, batch=46)
    for c in range(3):
        rows = X[y == c] - X[y == c].mean(axis=0)
        for stats in (forward, backward, whole):
            np.testing.assert_allclose(stats.class_scatter()[c], rows.T @ rows, rtol=1e-12,
                                       atol=1e-12 * np.abs(rows.T @ rows).max())


def test_merge_across_scales_keeps_each_part_exact():
    rng = np.random.default_rng(2)
    small, big = rng.normal(size=(10, 3)) * 1e-300, rng.normal(size=(10, 3)) * 1e300
    labels = np.arange(10) % 2
    merged = streamed(small, labels, 2).merge(streamed(big, labels, 2))
    assert np.isfinite(merged.class_scatter(scaled=True)).all()
    # the tiny rows are zeros next to the big ones; the result is exact up to a power of two
    units = np.concatenate([small[labels == 0], big[labels == 0]]) / 1e300
    centred = units - units.mean(axis=0)
    ratio = merged.class_scatter(scaled=True)[0] / (centred.T @ centred)
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-12)


def test_state_dict_and_vector_round_trip_bit_for_bit():
    rng = np.random.default_rng(4)
    stats = streamed(rng.normal(size=(30, 4)), np.arange(30) % 3, 3)
    state, vector = stats.state_dict(), stats.to_vector()
    assert {"per_class_counts", "per_class_means", "per_class_scatter",
            "per_class_exponent"} <= set(state)
    for restored in (CollapseStats(3, per_class_scatter=True).load_state_dict(state),
                     CollapseStats(3, 4, per_class_scatter=True).load_vector(vector)):
        for key, value in restored.state_dict().items():
            assert torch.equal(value, state[key]), key
    with pytest.raises(NCInputError, match="no entry 'per_class_counts'"):
        CollapseStats(3, per_class_scatter=True).load_state_dict(
            CollapseStats(3).update(rng.normal(size=(6, 4)), np.arange(6) % 3).state_dict())


def test_a_state_whose_per_class_counts_disagree_is_refused():
    stats = streamed(np.random.default_rng(5).normal(size=(12, 3)), np.arange(12) % 2, 2)
    state = stats.state_dict()
    state["per_class_counts"] = state["per_class_counts"].flip(0) + torch.tensor([1, -1])
    with pytest.raises(NCInputError, match="differs from 'counts'"):
        CollapseStats(2, per_class_scatter=True).load_state_dict(state)
    state = stats.state_dict()
    state["per_class_scatter"][0, 0, 1] += 1.0
    with pytest.raises(NCInputError, match="not a scatter"):
        CollapseStats(2, per_class_scatter=True).load_state_dict(state)


def test_too_much_memory_is_refused_in_one_line_before_allocating():
    stats = CollapseStats(2000, per_class_scatter=True)  # d unknown: nothing allocated
    with pytest.raises(NCInputError) as error:
        stats.update(np.zeros((2, 4096)), [0, 1])  # 2000 x 4096^2 x 8 bytes = 268 GB
    assert "per-class scatter" in str(error.value) and "\n" not in str(error.value)
    assert stats.num_samples == 0 and stats.dim is None  # nothing was kept
    stats.update(np.ones((2, 3)), [0, 1])  # a smaller dim afterwards is a fresh start
    assert stats.dim == 3
    with pytest.raises(NCInputError, match="per-class scatter"):
        CollapseStats(2000, 4096, per_class_scatter=True)


def test_bad_option_and_missing_scatter_get_one_line():
    with pytest.raises(NCInputError, match="per_class_scatter must be True or False"):
        CollapseStats(3, per_class_scatter="yes")
    stats = CollapseStats(2).update(np.eye(4), [0, 1, 0, 1])
    with pytest.raises(NCInputError, match="per_class_scatter=True"):
        stats.class_scatter()
    assert compute_metrics(stats, spectral=True).class_rankme is None


def test_json_holds_the_mean_and_the_undefined_class_as_null():
    X = np.random.default_rng(6).normal(size=(9, 3))
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2])
    stats = CollapseStats(3, per_class_scatter=True).update(X, y)
    data = compute_metrics(stats, spectral=True).to_dict()
    assert data["class_rankme"][2] is None and data["class_rankme_mean"] > 1
    assert data["class_rankme_mean"] == pytest.approx(np.mean(data["class_rankme"][:2]))
