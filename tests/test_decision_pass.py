"""The decision pass with its reused buffers, and the cheap finiteness test it runs."""

import numpy as np
import pytest
import torch

from nclab import CollapseStats, DecisionStats, NCInputError
from nclab.core.validation import ensure_finite


def brute_force_counts(features, labels, means, weight, bias):
    """(mismatched, correct) from dense float64 distances and logits."""
    distances = ((features[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
    nearest = distances.argmin(axis=1)
    predicted = (features @ weight.T + bias).argmax(axis=1)
    return int((nearest != predicted).sum()), int((predicted == labels).sum())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chunks_and_uneven_batches_count_as_the_brute_force(monkeypatch, dtype):
    rng = np.random.default_rng(3)
    num_classes, dim = 6, 5
    centres = 4.0 * rng.normal(size=(num_classes, dim))
    labels = rng.integers(0, num_classes, 90)
    features = centres[labels] + 2.0 * rng.normal(size=(90, dim))  # many disagreements
    weight, bias = rng.normal(size=(num_classes, dim)), rng.normal(size=num_classes)
    stats = CollapseStats(num_classes).update(features, labels)
    monkeypatch.setattr(DecisionStats, "_CHUNK_ENTRIES", 4 * num_classes)  # chunks of 4
    decisions = DecisionStats.from_stats(stats, weight, bias)
    x = torch.from_numpy(features).to(dtype)
    y = torch.from_numpy(labels)
    for start, stop in ((0, 3), (3, 40), (40, 41), (41, 90)):  # the buffers grow, shrink
        decisions.update(x[start:stop], y[start:stop])
    mismatched, correct = brute_force_counts(x.double().numpy(), labels, stats.means,
                                             weight, bias)
    assert 0 < mismatched < 90
    assert (decisions.samples, decisions.mismatched, decisions.correct) == (
        90, mismatched, correct)


def test_a_finite_sum_or_the_full_test_decides_finiteness():
    ensure_finite(torch.full((4, 3), 3e38))  # the sum overflows: every entry is finite
    ensure_finite(torch.tensor([[1.0, -1.0]]))
    for bad, row in ((torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]), 1),
                     (torch.tensor([[float("inf"), float("-inf")], [0.0, 0.0]]), 0),
                     (torch.tensor([[1.0, 2.0], [3e38, float("inf")]]), 1)):
        with pytest.raises(NCInputError, match=f"first at row {row}"):
            ensure_finite(bad)


def _collapsed(rng, num_classes, dim, per_class, spread, offset=0.0):
    """Means far apart (norm 4) around ``offset``, features at ``spread`` from them."""
    centres = offset + 4.0 * rng.normal(size=(num_classes, dim))
    labels = np.repeat(np.arange(num_classes), per_class)
    rng.shuffle(labels)
    features = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    return features, labels


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("spread", "offset"), [(0.05, 0.0), (0.6, 0.0), (2.5, 0.0),
                                                (0.05, 1e3), (0.6, -30.0)])
def test_the_ball_test_decides_as_the_brute_force(monkeypatch, dtype, spread, offset):
    """From collapsed to overlapping classes, means near 0 and far from it: the counts
    with the ball test are those of dense float64 distances, class by class, and so are
    those with the test switched off."""
    rng = np.random.default_rng(31)
    num_classes, dim = 40, 12
    features, labels = _collapsed(rng, num_classes, dim, 25, spread, offset)
    labels[labels == 7] = 8  # class 7 is absent: never the nearest
    # a classifier near the means (as trained ones are): its choice is worth testing
    centres = np.stack([features[labels == c].mean(axis=0) if c != 7 else features[0]
                        for c in range(num_classes)])
    weight = centres - centres.mean(axis=0) + rng.normal(size=(num_classes, dim))
    bias = (-weight @ centres.mean(axis=0) - 0.5 * np.einsum("cd,cd->c", weight, weight)
            + rng.normal(size=num_classes))
    stats = CollapseStats(num_classes).update(features, labels)
    x, y = torch.from_numpy(features).to(dtype), torch.from_numpy(labels)
    expected = brute_force_counts(x.double().numpy(), labels, np.where(
        stats.present[:, None], stats.means, np.inf), weight, bias)
    per_class = {}
    for minimum in (2, 10**9):  # the test on, then off
        monkeypatch.setattr(DecisionStats, "SCREEN_MIN_CLASSES", minimum)
        decisions = DecisionStats.from_stats(stats, weight, bias)
        for start in range(0, len(y), 300):
            decisions.update(x[start : start + 300], y[start : start + 300])
        assert (decisions.mismatched, decisions.correct) == expected
        per_class[minimum] = decisions.class_counts
        if minimum == 2:  # the test ran on collapsed features, and stopped on the others
            assert decisions._screening is (spread < 1), decisions._screening
    assert torch.equal(per_class[2], per_class[10**9])


def test_reset_forgets_the_ball_tests_verdict(monkeypatch):
    """Overlapping rows switch the test off; after reset() collapsed rows switch it on
    again, and the counts are those of a fresh pass."""
    monkeypatch.setattr(DecisionStats, "SCREEN_MIN_CLASSES", 2)
    rng = np.random.default_rng(32)
    wide, labels = _collapsed(rng, 40, 12, 25, 2.5, 0.0)
    stats = CollapseStats(40).update(wide, labels)
    tight = stats.means[labels] + 1e-3 * rng.normal(size=wide.shape)
    weight = stats.means - stats.means.mean(axis=0)

    def stream(decisions, features):
        for start in range(0, len(labels), 300):  # the test waits for C rows
            decisions.update(features[start : start + 300], labels[start : start + 300])
        return decisions

    decisions = stream(DecisionStats.from_stats(stats, weight), wide)
    assert decisions._screening is False
    stream(decisions.reset(), tight)
    assert decisions._screening is True and decisions.samples == len(labels)
    fresh = stream(DecisionStats.from_stats(stats, weight), tight)
    assert torch.equal(decisions.class_counts, fresh.class_counts)


def test_the_ball_test_decides_collapsed_rows_and_leaves_ties():
    """Collapsed features are decided without distances; a feature halfway between
    two nearest means (a tie) and one just outside a ball are left to them."""
    from nclab.core.nearest import ball_thresholds, screened_nearest

    rng = np.random.default_rng(32)
    centred = torch.from_numpy(rng.normal(size=(50, 16)))
    present = torch.ones(50, dtype=torch.bool)
    thresholds = ball_thresholds(centred, present, 0.0)
    distances = torch.cdist(centred, centred).fill_diagonal_(np.inf)
    radius = distances.min(dim=1).values / 2
    assert torch.all(thresholds <= radius**2)
    assert torch.all(thresholds >= (radius * (1 - 1e-9)) ** 2)  # float64: no real loss
    labels = torch.arange(50).repeat(4)
    h = centred[labels] + 1e-3 * torch.from_numpy(rng.normal(size=(200, 16)))
    k = 3
    j = int(distances[k].argmin())
    h[0] = (centred[k] + centred[j]) / 2  # a tie
    labels[0] = k
    h[1] = centred[k] + (centred[j] - centred[k]) * (0.5 + 1e-6)  # nearer to j
    labels[1] = k
    passed = []

    def nearest_of(rows):
        passed.append(len(rows))
        return torch.cdist(rows, centred).argmin(dim=1)

    nearest, decided = screened_nearest(h, labels, centred, thresholds, torch.empty_like(h),
                                        nearest_of)
    assert passed == [2] and decided == 198  # only the two hard rows took the distances
    assert nearest[1] == j
    assert torch.equal(nearest[2:], labels[2:])


def test_ball_thresholds_hold_for_points_on_their_spheres():
    """float32 thresholds against float64 distances: points at the threshold's radius
    around each mean (in every direction drawn) are strictly nearest to it."""
    from nclab.core.nearest import ball_thresholds

    rng = np.random.default_rng(33)
    means = 50.0 + rng.normal(size=(64, 32))  # far from the origin: its rounding counts
    origin = means.mean(axis=0)
    centred = torch.from_numpy(means - origin).float()
    thresholds = ball_thresholds(centred, torch.ones(64, dtype=torch.bool),
                                 float(np.linalg.norm(origin))).double().numpy()
    assert np.all(thresholds > 0)
    directions = rng.normal(size=(64, 20, 32))
    directions /= np.linalg.norm(directions, axis=2, keepdims=True)
    points = means[:, None, :] + np.sqrt(thresholds)[:, None, None] * directions
    distances = np.linalg.norm(points[:, :, None, :] - means[None, None, :, :], axis=3)
    own = distances[np.arange(64), :, np.arange(64)]
    distances[np.arange(64), :, np.arange(64)] = np.inf
    assert np.all(own < distances.min(axis=2))
