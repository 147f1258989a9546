"""CollapseStats keeps float64 accuracy at every batch size and across the float range."""

import numpy as np
import pytest
import torch
from reference import gaussian_classes, reference_metrics

from nclab import CollapseStats, compute_metrics
from nclab.core.errors import NCInputError

#: The scale-free metrics of the class means and the within-class spread.
SCALE_FREE = ("nc1", "nc1_trace", "cdnv", "equinorm_means", "equiangularity_means",
              "maxangle_means", "etf_error_means")


def _stream(features, labels, classes, batch):
    stats = CollapseStats(classes)
    for start in range(0, len(labels), batch):
        stats.update(features[start : start + batch], labels[start : start + batch])
    return stats


def _brute_force(features, labels, classes):
    """counts, means, spread, scatter of float64 copies, by explicit per-class sums."""
    h = np.asarray(features, dtype=np.float64)
    counts = np.bincount(labels, minlength=classes)
    means = np.zeros((classes, h.shape[1]))
    spread = np.zeros(classes)
    scatter = np.zeros((h.shape[1], h.shape[1]))
    for c in np.flatnonzero(counts):
        rows = h[labels == c]
        means[c] = rows.mean(axis=0)
        centred = rows - means[c]
        spread[c] = np.sum(centred * centred)
        scatter += centred.T @ centred
    return counts, means, spread, scatter


def _assert_state(stats, reference, rtol, scatter_rtol=None):
    counts, means, spread, scatter = reference
    np.testing.assert_array_equal(stats.counts, counts)
    scale = np.abs(means).max()
    assert np.abs(stats.means - means).max() <= rtol * scale
    assert np.abs(stats.spread - spread).max() <= rtol * spread.max()
    scatter_rtol = rtol if scatter_rtol is None else scatter_rtol
    assert np.abs(stats.scatter - scatter).max() <= scatter_rtol * np.abs(scatter).max()


def _large_means_tiny_spread(rng, classes, dim, per_class):
    mu = rng.normal(size=(classes, dim))
    mu *= 1e3 / np.linalg.norm(mu, axis=1, keepdims=True)
    y = np.tile(np.arange(classes), per_class)
    rng.shuffle(y)
    return (mu[y] + 1e-4 * rng.normal(size=(len(y), dim))).astype(np.float32), y


@pytest.mark.parametrize("batch", [1, 7, 128, 1000, 4096, 5000, 9000])
def test_float32_precision_at_every_batch_size(batch):
    """Means of norm 1e3, spread 1e-4, in float32: staged rows, full blocks, partial
    blocks and the finalize keep the means and spreads to float64 accuracy and the
    scatter to that of a float32 product over a block of 4096 rows (the naive
    E[hh^T] - mu mu^T would be all noise)."""
    rng = np.random.default_rng(11)
    H, y = _large_means_tiny_spread(rng, 7, 6, 1200)
    stats = _stream(torch.from_numpy(H), torch.from_numpy(y), 7, batch)
    _assert_state(stats, _brute_force(H, y, 7), rtol=2e-6, scatter_rtol=3e-5)
    ref = reference_metrics(H, y)
    result = compute_metrics(stats)
    for name in ("nc1", "nc1_trace", "cdnv"):
        assert getattr(result, name) == pytest.approx(ref[name], rel=1e-5), name


@pytest.mark.parametrize("per_class", [2, 5])
def test_float32_precision_with_few_rows_per_class(per_class):
    """Many classes of a few rows each: the finalize's correction (the Gram of the
    residual sums, in float32 like the residuals' Gram) is as large as the scatter
    itself, and the scatter keeps the accuracy of a float32 product."""
    rng = np.random.default_rng(14)
    H, y = _large_means_tiny_spread(rng, 1500, 16, per_class)
    stats = _stream(torch.from_numpy(H), torch.from_numpy(y), 1500, 512)
    _assert_state(stats, _brute_force(H, y, 1500), rtol=2e-6, scatter_rtol=3e-5)


def test_float32_sums_widened_in_many_small_chunks(monkeypatch):
    """The float32 residual sums reach the float64 state through a small buffer, chunk by
    chunk (7 rows here, so 1,500 classes take 215 chunks, the last one partial)."""
    from nclab.core import moments

    monkeypatch.setattr(moments, "_WIDE_BYTES", 8 * 16 * 7)
    rng = np.random.default_rng(15)
    H, y = _large_means_tiny_spread(rng, 1500, 16, 3)
    stats = _stream(torch.from_numpy(H), torch.from_numpy(y), 1500, 512)
    pending = stats._moments._pending
    # 7 float64 rows of 16; the references gathered 14 float32 rows at a time
    assert (len(pending.wide), len(pending.gather)) == (7, 14)
    _assert_state(stats, _brute_force(H, y, 1500), rtol=2e-6, scatter_rtol=3e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_first_read_takes_the_pending_gram_as_the_scatter(threads):
    """A fresh state's first read takes the pending Gram as its scatter (no copy, on one
    thread, where the Gram is whole) and the untouched zeros as the next pending Gram;
    later updates and reads add to it as before, equal to the brute force every time."""
    rng = np.random.default_rng(17)
    H, y = _large_means_tiny_spread(rng, 6, 10, 700)
    half = len(y) // 2
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        stats = CollapseStats(6).update(torch.from_numpy(H[:half]), y[:half])
        moments = stats._moments
        gram = moments._pending.gram
        _assert_state(stats, _brute_force(H[:half], y[:half], 6), rtol=2e-6,
                      scatter_rtol=3e-5)
        assert (moments._scatter is gram) == (threads == 1)
        assert not bool(moments._pending.gram.any())
        stats.update(torch.from_numpy(H[half:]), y[half:])
        _assert_state(stats, _brute_force(H, y, 6), rtol=2e-6, scatter_rtol=3e-5)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(("classes", "batch"), [(1, 1000), (1, 4096), (3, 777), (3, 9000)])
def test_float32_groups_past_a_block_fold_out_exactly(monkeypatch, classes, batch):
    """float32 pending sums hold at most a block's rows per group: groups of 12,000 rows
    are folded into the centred state mid-stream (before the read), and the state keeps
    the accuracy of the test above, also when the data drift (second half offset)."""
    from nclab.core.moments import Moments

    folds = []
    original = Moments._fold_out
    monkeypatch.setattr(Moments, "_fold_out",
                        lambda self, rows: folds.append(rows) or original(self, rows))
    rng = np.random.default_rng(21)
    H, y = _large_means_tiny_spread(rng, classes, 6, 12_000)
    H[len(y) // 2 :] += np.float32(3e-4)  # a drift larger than the spread
    stats = _stream(torch.from_numpy(H), torch.from_numpy(y), classes, batch)
    assert len(folds) > 0  # the limit was reached before any read
    _assert_state(stats, _brute_force(H, y, classes), rtol=2e-6, scatter_rtol=3e-5)


@pytest.mark.parametrize("threads", [(1,), (2,), (1, 2, 1)])
def test_whole_grams_skip_the_symmetrizing_and_mixed_ones_take_it(monkeypatch, threads):
    """On one thread the pending Gram holds whole (syrk) Grams and is added to the
    scatter as it is; once an update runs on more threads (upper-block products) the
    finalize symmetrizes. Either way the scatter is exactly symmetric and correct."""
    from nclab.core import moments

    calls = []
    original = moments._add_symmetrized
    monkeypatch.setattr(moments, "_add_symmetrized",
                        lambda *args: calls.append(1) or original(*args))
    rng = np.random.default_rng(16)
    H, y = _large_means_tiny_spread(rng, 7, 12, 1200)
    stats = CollapseStats(7)
    before = torch.get_num_threads()
    try:
        for index, start in enumerate(range(0, len(y), 4096)):  # a block each
            torch.set_num_threads(threads[index % len(threads)])
            stats.update(torch.from_numpy(H[start : start + 4096]), y[start : start + 4096])
    finally:
        torch.set_num_threads(before)
    _assert_state(stats, _brute_force(H, y, 7), rtol=2e-6, scatter_rtol=3e-5)
    np.testing.assert_array_equal(stats.scatter, stats.scatter.T)
    assert bool(calls) == (max(threads) > 1)


def test_reads_between_updates_change_nothing():
    """Finalizing (any read) re-centres the references; the sums stay exact."""
    rng = np.random.default_rng(12)
    H, y = _large_means_tiny_spread(rng, 5, 8, 600)
    plain = _stream(torch.from_numpy(H), y, 5, 500)
    read = CollapseStats(5)
    for start in range(0, len(y), 500):
        read.update(torch.from_numpy(H[start : start + 500]), y[start : start + 500])
        _ = read.scatter, read.means  # finalize after every batch
    np.testing.assert_allclose(read.means, plain.means, rtol=1e-12)
    np.testing.assert_allclose(read.spread, plain.spread, rtol=1e-6)
    # float32 products over other blocks of rows: equal to float32 accuracy
    np.testing.assert_allclose(read.scatter, plain.scatter, rtol=2e-5,
                               atol=1e-6 * np.abs(plain.scatter).max())


def test_many_classes_few_present_per_batch():
    """C = 3000 with a handful of classes per batch: only present classes are touched."""
    rng = np.random.default_rng(13)
    C, d = 3000, 5
    y = np.sort(rng.choice(C, size=2000))  # sorted: each batch holds few classes
    H = rng.normal(size=(C, d))[y] * 10 + rng.normal(size=(len(y), d))
    stats = _stream(H, y, C, 64)
    _assert_state(stats, _brute_force(H, y, C), rtol=1e-12)
    assert stats.present.sum() == len(np.unique(y))


def _metrics(stats):
    result = compute_metrics(stats)
    return {name: getattr(result, name) for name in SCALE_FREE}


def _check_same(got, expected, rtol):
    for name in SCALE_FREE:
        assert got[name] == pytest.approx(expected[name], rel=rtol), name


def test_scale_free_metrics_across_the_float64_range():
    """Features times 10^k for k from -300 to 300 give the same metrics (main gave
    nc1 = 0 beyond 1e154, etf_error_means = 1 from 1e77, 'means coincide' at 1e-300)."""
    H, y = gaussian_classes(np.random.default_rng(14))
    expected = _metrics(CollapseStats(6).update(H, y))
    _check_same(expected, reference_metrics(H, y), rtol=1e-8)
    for k in range(-300, 301, 25):
        got = _metrics(_stream(H * 10.0**k, y, 6, 64))
        _check_same(got, expected, rtol=1e-9)


def test_scale_free_metrics_across_the_float32_range():
    """float32 features times 10^k, k from -30 to 30, against a float64 brute force of
    the same float32 numbers (main gave a negative nc1 at 1e-23); exact powers of two
    give the same metrics to rounding."""
    H, y = gaussian_classes(np.random.default_rng(15))
    for k in range(-30, 31, 5):
        scaled = (H * 10.0**k).astype(np.float32)
        got = _metrics(_stream(torch.from_numpy(scaled), y, 6, 100))
        _check_same(got, reference_metrics(scaled.astype(np.float64) * 10.0**-k, y), rtol=1e-4)
    base = _metrics(_stream(torch.from_numpy(H.astype(np.float32)), y, 6, 100))
    for power in range(-100, 101, 20):
        scaled = torch.from_numpy(H.astype(np.float32) * np.float32(2.0**power))
        _check_same(_metrics(_stream(scaled, y, 6, 100)), base, rtol=1e-9)


def test_a_later_batch_beyond_the_band_rescales_exactly():
    """The first batch is of ordinary size, the next ones 2^80 larger (float32): the
    state moves to new units by a power of two and matches the brute force."""
    H, y = gaussian_classes(np.random.default_rng(16))
    H = H.astype(np.float32)
    mixed = H.copy()
    mixed[40:] *= np.float32(2.0**80)
    stats = _stream(torch.from_numpy(mixed), y, 6, 40)
    _assert_state(stats, _brute_force(mixed, y, 6), rtol=1e-5)
    assert stats.scale == 2.0 ** -np.frexp(np.abs(stats.means).max())[1] or stats.scale < 2.0**-70


def test_merge_across_units_is_exact():
    """Statistics held in other units (2^10 larger, scale_exponent 10) merge exactly."""
    H, y = gaussian_classes(np.random.default_rng(17))
    whole = CollapseStats(6).update(H, y)
    a = CollapseStats(6).update(H[:90], y[:90])
    b = CollapseStats(6).update(H[90:], y[90:]).state_dict()
    shifted = dict(b, means=b["means"] * 2.0**10, spread=b["spread"] * 2.0**20,
                   scatter=b["scatter"] * 2.0**20, scale_exponent=torch.tensor(10))
    merged = a.merge(CollapseStats(6).load_state_dict(shifted))
    np.testing.assert_allclose(merged.means, whole.means, rtol=1e-12)
    np.testing.assert_allclose(merged.scatter, whole.scatter, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(merged.spread, whole.spread, rtol=1e-10)


def test_accessors_in_the_features_units_and_scaled():
    """means/spread/scatter are of the features; scaled_* of the features times scale."""
    H, y = gaussian_classes(np.random.default_rng(18))
    big = CollapseStats(6).update(H * 1e200, y)
    counts, means, spread, scatter = _brute_force(H, y, 6)
    s = big.scale
    assert np.log2(s) == int(np.log2(s))  # a power of two
    np.testing.assert_allclose(big.means, means * 1e200, rtol=1e-12)
    np.testing.assert_allclose(big.scaled_means(), means * 1e200 * s, rtol=1e-12)
    np.testing.assert_allclose(big.scaled_spread(), spread * (1e200 * s) ** 2, rtol=1e-10)
    np.testing.assert_allclose(big.scaled_scatter(), scatter * (1e200 * s) ** 2, rtol=1e-9,
                               atol=1e-12 * np.abs(scatter).max() * (1e200 * s) ** 2)
    assert np.isinf(big.scatter).any()  # 1e400 is not a float64: scaled_scatter holds it
    assert 0.01 < np.abs(big.scaled_means()).max() <= 1
    # the scatter as stored: finite, a view of the state, scaled_scatter() times 2**-k
    # (k = 0 where the state's own units are of order one, as for these 1e200 features)
    powers = []
    for stats in (big, CollapseStats(6).update(H * 1e3, y)):
        stored, power = stats.stored_scatter()
        assert np.isfinite(stored).all()
        np.testing.assert_array_equal(np.ldexp(stored, power), stats.scaled_scatter())
        assert np.shares_memory(stored, stats._moments.moments()[3].numpy())  # no copy
        stored_tensor, same = stats.stored_scatter(tensor=True)
        assert isinstance(stored_tensor, torch.Tensor) and same == power
        powers.append(power)
    assert powers[0] == 0 and powers[1] != 0
    with pytest.raises(NCInputError, match="empty"):
        CollapseStats(6).stored_scatter()


def test_mixed_dtypes_and_strided_batches():
    """float32, float64 and transposed (non-contiguous) batches in one stream: the
    workspace follows the dtype and nothing is lost at the switch."""
    H, y = gaussian_classes(np.random.default_rng(19))
    stats = CollapseStats(6)
    stats.update(torch.from_numpy(H[:70].astype(np.float32)), y[:70])
    stats.update(H[70:150], y[70:150])  # float64
    strided = torch.from_numpy(np.ascontiguousarray(H[150:].T.astype(np.float32))).T
    assert not strided.is_contiguous()
    stats.update(strided, y[150:])
    reference = _brute_force(np.vstack([H[:70].astype(np.float32).astype(np.float64), H[70:150],
                                        H[150:].astype(np.float32).astype(np.float64)]), y, 6)
    _assert_state(stats, reference, rtol=1e-6)
