"""The streaming protocol of the three statistics, and their checks of bad input."""

import numpy as np
import pytest
import torch
from reference import gaussian_classes
from regression_reference import regression_problem

from nclab import (
    CollapseStats,
    DecisionStats,
    NCInputError,
    RegressionStats,
    compute_metrics,
    compute_regression_metrics,
)
from nclab.core.streaming import StreamingStatistic


def _fitted(seed=0):
    H, y = gaussian_classes(np.random.default_rng(seed))
    return CollapseStats(6).update(H, y), H, y


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------- protocol
def test_every_statistic_speaks_the_protocol():
    stats, H, y = _fitted()
    decisions = DecisionStats.from_stats(stats, np.ones((6, 10)))
    regression = RegressionStats()
    for statistic in (stats, decisions, regression):
        assert isinstance(statistic, StreamingStatistic)
        assert statistic.all_reduce() is statistic  # no process group: unchanged
        with pytest.raises(NCInputError, match="can only merge"):
            statistic.merge(object())


def test_compute_is_compute_metrics():
    stats, H, y = _fitted(1)
    W, b = np.random.default_rng(1).normal(size=(6, 10)), np.arange(6.0)
    assert stats.compute(W, b, weighted_mean=True) == compute_metrics(stats, W, b,
                                                                      weighted_mean=True)
    R, Y, RW, Rb = regression_problem(np.random.default_rng(2), 80, 5, 2)
    regression = RegressionStats().update(R, Y)
    assert (regression.compute(RW, Rb, gamma=0.1).to_dict()
            == compute_regression_metrics(regression, RW, Rb, gamma=0.1).to_dict())


def test_reset_empties_and_keeps_the_configuration():
    stats, H, y = _fitted(3)
    stats.reset()
    assert stats.num_classes == 6 and stats.dim == 10 and stats.num_samples == 0
    assert not stats.present.any()
    again = stats.update(H, y)
    assert _same_state(again, CollapseStats(6).update(H, y))
    decisions = DecisionStats.from_stats(again, np.ones((6, 10))).update(H, y)
    assert decisions.reset().samples == 0 and decisions.num_classes == 6
    R, Y, _, _ = regression_problem(np.random.default_rng(3), 50, 4, 2)
    regression = RegressionStats().update(R, Y).reset()
    assert regression.num_samples == 0 and (regression.dim, regression.target_dim) == (4, 2)


def test_decisions_reuse_the_logits_of_the_model():
    stats, H, y = _fitted(4)
    rng = np.random.default_rng(4)
    W, b = rng.normal(size=(6, 10)), rng.normal(size=6)
    plain = DecisionStats.from_stats(stats, W, b).update(H, y)
    given = DecisionStats.from_stats(stats, W, b).update(H, y, logits=H @ W.T + b)
    assert plain.compute() == given.compute()
    np.testing.assert_array_equal(plain.class_counts, given.class_counts)
    with pytest.raises(NCInputError, match="logits must have shape"):
        given.update(H, y, logits=np.ones((len(y), 5)))


def test_decision_state_roundtrip_and_checks():
    stats, H, y = _fitted(5)
    decisions = DecisionStats.from_stats(stats, np.eye(6, 10)).update(H, y)
    restored = DecisionStats.from_stats(stats, np.eye(6, 10))
    restored.load_state_dict(decisions.state_dict())
    assert restored.compute() == decisions.compute()
    bad = decisions.state_dict()
    bad["class_counts"][1, 0] = bad["class_counts"][0, 0] + 1
    with pytest.raises(NCInputError, match="more mismatched"):
        restored.load_state_dict(bad)


# ---------------------------------------------------------------------------- constructor
@pytest.mark.parametrize("value", [2.7, 3.0, "3", True, np.bool_(True), 0, -2, None, [3]])
def test_num_classes_must_be_an_integer(value):
    with pytest.raises(NCInputError, match="num_classes must be an integer"):
        CollapseStats(value)


def test_integer_types_are_accepted():
    assert CollapseStats(np.int64(3)).num_classes == 3
    assert CollapseStats(torch.tensor(4)).num_classes == 4
    with pytest.raises(NCInputError, match="dim must be an integer"):
        CollapseStats(3, dim=2.5)


# ---------------------------------------------------------------------------- batches
def test_meta_tensors_are_refused():
    with pytest.raises(NCInputError, match="meta"):
        CollapseStats(3).update(torch.empty(4, 2, device="meta"), [0, 1, 2, 0])
    with pytest.raises(NCInputError, match="meta"):
        CollapseStats(3).update(torch.ones(4, 2), torch.empty(4, dtype=torch.int64,
                                                                device="meta"))


def test_an_empty_batch_changes_nothing():
    stats, H, y = _fitted(6)
    before = stats.state_dict()
    stats.update(np.empty((0, 10)), np.empty(0, dtype=np.int64))
    stats.update(torch.empty(0, 10, dtype=torch.float32), torch.empty(0, dtype=torch.int64))
    after = stats.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    empty = CollapseStats(3).update(np.empty((0, 4)), [])
    assert empty.num_samples == 0 and not empty.present.any()


def test_a_nan_batch_is_refused_before_anything_is_written():
    stats, H, y = _fitted(7)
    before = stats.state_dict()
    bad = H[:20].copy()
    bad[13, 2] = np.nan
    with pytest.raises(NCInputError, match="row 13"):
        stats.update(bad, y[:20])
    assert _same_state(stats, CollapseStats(6).load_state_dict(before))


# ---------------------------------------------------------------------------- state dicts
def _corrupted(key, value):
    state = _fitted(8)[0].state_dict()
    if value is None:
        del state[key]
    else:
        state[key] = value(state[key]) if callable(value) else value
    return state


def _negated_direction(scatter):
    """scatter minus twice its top eigenvalue along the top eigenvector: indefinite."""
    values, vectors = torch.linalg.eigh(scatter)
    return scatter - 2 * values[-1] * torch.outer(vectors[:, -1], vectors[:, -1])


@pytest.mark.parametrize("state, message", [
    ([1, 2], "must be a dict"),
    (torch.zeros(3), "must be a dict"),
    (3, "must be a dict"),
    (_corrupted("counts", None), "no entry 'counts'"),
    (_corrupted("scatter", None), "no entry 'scatter'"),
    (_corrupted("counts", lambda c: c - 100), "'counts' holds negative"),
    (_corrupted("counts", lambda c: c + 0.5), "'counts' must hold whole numbers"),
    (_corrupted("means", lambda m: m.index_fill(0, torch.tensor([2]), float("nan"))),
     "'means' holds NaN"),
    (_corrupted("scatter", lambda s: s.index_fill(0, torch.tensor([0]), float("inf"))),
     "'scatter' holds NaN"),
    (_corrupted("spread", lambda s: -s), "'spread' holds negative"),
    (_corrupted("scatter", lambda s: -s), "negative diagonal"),
    (_corrupted("scatter", _negated_direction), "not positive semidefinite"),
    (_corrupted("scatter", lambda s: s + torch.triu(torch.ones_like(s), 1)), "not symmetric"),
    (_corrupted("means", lambda m: m[:, :5]), r"'means' has shape \(6, 5\)"),
    (_corrupted("num_classes", torch.tensor(7)), "num_classes = 7; these statistics have 6"),
    (_corrupted("dim", torch.tensor(9)), "dim = 9"),
    (_corrupted("means", "abc"), "'means' is not numeric"),
])
def test_bad_states_are_refused_and_change_nothing(state, message):
    stats, H, y = _fitted(9)
    before = stats.state_dict()
    with pytest.raises(NCInputError, match=message) as info:
        stats.load_state_dict(state)
    assert "\n" not in str(info.value)
    assert _same_state(stats, CollapseStats(6).load_state_dict(before))


def test_a_state_of_another_dimension_is_refused():
    state = CollapseStats(6).update(*gaussian_classes(np.random.default_rng(10), d=5)).state_dict()
    with pytest.raises(NCInputError, match="dim = 5"):
        CollapseStats(6, dim=10).load_state_dict(state)
    assert CollapseStats(6).load_state_dict(state).dim == 5


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("joint_counts"), "no entry 'joint_counts'"),
    (lambda s: s.update(joint_counts=torch.tensor([-1])), "'joint_counts' holds negative"),
    (lambda s: s.update(unit_counts=s["joint_counts"] + 1), "'unit_counts' exceeds"),
    (lambda s: s.update(joint_means=s["joint_means"][:, :3]), "'joint_means' has shape"),
    (lambda s: s.update(unit_scatter=-s["unit_scatter"]), "'unit_scatter' has a negative"),
])
def test_bad_regression_states_are_refused(change, message):
    R, Y, _, _ = regression_problem(np.random.default_rng(11), 60, 4, 2)
    state = RegressionStats().update(R, Y).state_dict()
    change(state)
    with pytest.raises(NCInputError, match=message):
        RegressionStats().load_state_dict(state)
    with pytest.raises(NCInputError, match="must be a dict"):
        RegressionStats().load_state_dict(None)
