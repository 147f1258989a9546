"""The regularized UFM under imbalanced classes: minority collapse and the SELI limit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nclab.core.errors import NCInputError
from nclab.core.imbalance import seli_grams
from nclab.studies.imbalance_ufm import (
    BiasFreeUFM,
    minority_collapse_sweep,
    seli_limit_sweep,
    step_counts,
    zero_threshold,
)


def brute_mean_cosine(rows: np.ndarray) -> float:
    pairs = [(a, b) for a in range(len(rows)) for b in range(a + 1, len(rows))]
    return float(np.mean([rows[a] @ rows[b] / np.linalg.norm(rows[a]) / np.linalg.norm(rows[b])
                          for a, b in pairs]))


def test_step_counts_keep_one_sample_at_least():
    assert step_counts(1000, 10, 5, 1e-3) == [1000] * 5 + [1] * 5
    assert step_counts(200, 4, 2, 1e-4) == [200, 200, 1, 1]
    with pytest.raises(NCInputError, match="ratio"):
        step_counts(10, 4, 2, 0.0)
    # more minority classes than classes used to make a model of 6 classes silently
    for minority in (0, 4, 6):
        with pytest.raises(NCInputError, match=r"minority classes must be an integer in 1\.\.3"):
            step_counts(10, 4, minority, 0.1)


def test_zero_minimizer_is_refused_before_solving():
    # 10 sqrt(1000 * 5e-3 * 5e-3) = 1.58 >= 1: the default decay of `nclab ufm` at n = 1000
    assert zero_threshold([1000] * 10, 5e-3, 5e-3) == pytest.approx(10 * np.sqrt(0.025))
    with pytest.raises(NCInputError, match="W = H = 0"):
        minority_collapse_sweep([1.0], classes=10, dim=16, per_class=1000, minority=5,
                                lambda_w=5e-3, lambda_h=5e-3, seeds=1, steps=1)


def test_minority_rows_approach_then_vanish_as_the_ratio_falls():
    # C = 4, two minority classes, n_max = 200, lambda = 1e-2 (4 sqrt(200) 1e-2 = 0.57 < 1)
    rows = minority_collapse_sweep([1.0, 0.2, 0.02], classes=4, dim=4, per_class=200,
                                   minority=2, lambda_w=1e-2, lambda_h=1e-2, lambda_b=1e-2,
                                   seeds=1, steps=3000)
    balanced, mild, tail = rows
    assert [row["counts"][-1] for row in rows] == [200, 40, 4]
    assert all(row["grad_norm"] < 1e-8 for row in rows)
    assert balanced["minority_collapse_weights"] == pytest.approx(-1 / 3, abs=1e-6)
    assert balanced["minority_norm_ratio"] == pytest.approx(1.0, abs=1e-6)
    # the minority rows turn towards each other and shrink ...
    assert mild["minority_collapse_weights"] > 0.0 and mild["minority_norm_ratio"] < 0.8
    # ... and at R = 0.02 the minimizer has no minority rows at all (zero to the solver's
    # tolerance): their cosine is then that of rounding noise, not a measurement
    assert tail["minority_norm_ratio"] < 1e-6


def test_minority_cosine_matches_a_brute_force_on_the_solution():
    model = BiasFreeUFM(4, 4, counts=[20, 20, 1, 1], lambda_w=1e-2, lambda_h=1e-2)
    solution = model.solve(range(1), steps=2000)
    weight = solution.weight[0].numpy()
    from nclab.core.imbalance import minority_collapse_weights
    assert minority_collapse_weights(weight, [2, 3]) == pytest.approx(
        brute_mean_cosine(weight[2:]), abs=1e-12)
    assert solution.bias is None or torch.count_nonzero(solution.bias) == 0


def test_seli_distance_falls_as_the_decay_vanishes():
    counts = [10, 10, 2, 2]
    rows = seli_limit_sweep(counts, [1e-2, 1e-4, 1e-6], dim=4, seeds=1, steps=4000)
    weights = [row["seli_distance_weights"] for row in rows]
    means = [row["seli_distance_means"] for row in rows]
    assert all(row["grad_norm"] < 1e-2 * row["lambda"] for row in rows)
    assert weights[0] > weights[1] > weights[2] and means[0] > means[1] > means[2]
    assert weights[2] < 0.5 * weights[0]


def test_seli_gram_of_the_brute_force_svd():
    # SELI: W W^T ~ U Lambda U^T of Z = P Y (C x N), by an independent SVD in float64
    counts = [3, 3, 1, 1]
    labels = np.repeat(np.arange(4), counts)
    targets = np.eye(4)[:, labels]
    z = targets - targets.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    root = (u[:, :3] * s[:3]) @ u[:, :3].T
    assert np.allclose(seli_grams(counts)[0], root / np.linalg.norm(root), atol=1e-12)
