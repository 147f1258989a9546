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
