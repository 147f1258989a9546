"""The simplex-ETF gap (etf_error_*, wh_duality) for C > 2000, where G is tiled.

Up to C = 2000 the gap is computed on the whole C x C matrix; beyond, on tiles. Both
must resolve a gap far below 1e-8: ``sqrt(2 - 2 <G, T> / ||G||)``, used before, had an
absolute floor of about 3e-8 (an ETF with noise 1e-10 at C = 2001 gave 4.47e-8).
"""

import numpy as np
import pytest

from nclab.core.geometry import simplex_gap


def gap_of(gram: np.ndarray) -> float:
    """|| G/||G||_F - (I - 11^T/C)/sqrt(C-1) ||_F of a dense G, entry by entry, float64."""
    count = len(gram)
    target = (np.eye(count) - 1.0 / count) / np.sqrt(count - 1)
    return float(np.sqrt(np.sum((gram / np.sqrt(np.sum(gram * gram)) - target) ** 2)))


def slab_gap(left: np.ndarray, right: np.ndarray, rows: int = 2000) -> float:
    """The same for G = left @ right.T, formed in slabs of rows (C x C would not fit)."""
    count = len(left)
    starts = range(0, count, rows)
    norm = np.sqrt(sum(np.einsum("ij,ij->", slab, slab)
                       for slab in (left[i:i + rows] @ right.T for i in starts)))
    total = 0.0
    for start in starts:
        slab = left[start:start + rows] @ right.T / norm
        slab += 1.0 / (count * np.sqrt(count - 1))  # minus the target, entry by entry
        slab[np.arange(len(slab)), start + np.arange(len(slab))] -= 1.0 / np.sqrt(count - 1)
        total += np.einsum("ij,ij->", slab, slab)
    return float(np.sqrt(total))


def test_nearly_exact_etf_beyond_the_dense_limit():
    """C = 2001: the rows of 3 (I - 11^T/C) (a simplex ETF in C dims) plus noise 1e-10."""
    rng = np.random.default_rng(0)
    count, noise = 2001, 1e-10
    means = 3.0 * (np.eye(count) - 1.0 / count) + noise * rng.normal(size=(count, count))
    gram = means @ means.T
    reference = gap_of(gram)
    assert noise < reference < 100 * noise
    assert simplex_gap(means, means) == pytest.approx(reference, rel=1e-5)  # etf_error
    # wh_duality: W differs from M~ in 40 rows, so that W M~^T = G + E M~^T stays cheap
    changed = rng.choice(count, 40, replace=False)
    change = noise * rng.normal(size=(40, count))
    weight = means.copy()
    weight[changed] += change
    gram[changed] += change @ means.T
    assert simplex_gap(weight, means) == pytest.approx(gap_of(gram), rel=1e-5)


@pytest.mark.parametrize("count, dim", [(2001, 7), (10_000, 3)])
def test_tiled_gap_matches_dense_reference(count, dim):
    """Low-rank G (no simplex ETF in d dims), the gap near 1."""
    rng = np.random.default_rng(count)
    left, right = rng.normal(size=(count, dim)), rng.normal(size=(count, dim))
    assert simplex_gap(left, left) == pytest.approx(slab_gap(left, left), rel=1e-12)
    assert simplex_gap(left, right, block=1500) == pytest.approx(slab_gap(left, right),
                                                                 rel=1e-12)


def test_gap_is_scale_free_over_the_float_range():
    rng = np.random.default_rng(1)
    means = 3.0 * (np.eye(30) - 1.0 / 30) + 1e-3 * rng.normal(size=(30, 30))
    weight = rng.normal(size=means.shape)
    gaps = {scale: (simplex_gap(means * scale, means * scale),
                    simplex_gap(weight * scale, means / scale))
            for scale in (1e-300, 1e-150, 1e-20, 1.0, 1e20, 1e150, 1e300)}
    for scale, values in gaps.items():
        assert values == pytest.approx(gaps[1.0], rel=1e-12), scale
