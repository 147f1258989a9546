"""One-vs-rest distances and margins (definitions §10) against an exact brute force, and
the softmax-code values, bounds and solver."""

import itertools
import math

import numpy as np
import pytest
import torch

from nclab.core import margins
from nclab.core.errors import NCInputError
from nclab.core.margins import (
    margin_metrics,
    nearest_cosines,
    ovr_distances,
    ovr_margin,
    ovr_margin_bracket,
    packing_chord_bound,
    screen_bounds,
    softmax_code_bounds,
)
from nclab.ufm import SphereUFM
from nclab.ufm.softmax_code import orthogonal_simplices, smoothed_margin, softmax_code


def brute_distance(point, others):
    """Exact distance of ``point`` to conv(others), float64, by enumeration: the nearest
    point is the affine projection onto some affinely independent subset of at most
    d + 1 points with non-negative weights; every such projection lies in the hull."""
    best = math.inf
    count, dim = others.shape
    for size in range(1, min(count, dim + 1) + 1):
        for subset in itertools.combinations(range(count), size):
            base = others[list(subset)]
            # weights a with sum 1 minimizing ||point - a @ base||: a = e_0 + N t
            first, rest = base[0], base[1:] - base[0]
            if size > 1:
                t, *_ = np.linalg.lstsq(rest.T, point - first, rcond=None)
                weights = np.concatenate([[1 - t.sum()], t])
            else:
                weights = np.ones(1)
            if (weights >= -1e-12).all():
                best = min(best, float(np.linalg.norm(point - weights @ base)))
    return best


def brute_distances(vectors):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.array([brute_distance(unit[c], np.delete(unit, c, axis=0))
                     for c in range(len(unit))])


def etf(count, dim, seed=0):
    """A rotated simplex ETF of unit rows in R^dim."""
    centred = np.eye(count) - 1.0 / count
    basis = np.linalg.eigh(centred)[1][:, 1:]
    rows = np.zeros((count, dim))
    rows[:, :count - 1] = centred @ basis
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return rows @ q.T


def polygon(count):
    angles = 2 * np.pi * np.arange(count) / count
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


@pytest.mark.parametrize("count, dim, seed", [(7, 2, 0), (6, 3, 1), (8, 4, 2), (5, 6, 3),
                                              (9, 3, 4)])
def test_distances_equal_the_enumerated_brute_force(count, dim, seed):
    vectors = np.random.default_rng(seed).normal(size=(count, dim))
    got, want = ovr_distances(vectors), brute_distances(vectors)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert ovr_margin(vectors) == pytest.approx(want.min(), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("count, dim", [(2, 1), (3, 2), (5, 4), (10, 9), (10, 16)])
def test_simplex_etf_margin_is_c_over_c_minus_one(count, dim):
    scales = np.random.default_rng(1).uniform(0.5, 2.0, size=(count, 1))
    got = ovr_distances(etf(count, dim) * scales)
    np.testing.assert_allclose(got, count / (count - 1), rtol=1e-12)
    assert softmax_code_bounds(count, dim) == (count / (count - 1), count / (count - 1))


@pytest.mark.parametrize("count", [4, 5, 7, 12, 40])
def test_regular_polygon_margin_is_two_sin_squared(count):
    want = 2 * math.sin(math.pi / count) ** 2
    np.testing.assert_allclose(ovr_distances(polygon(count)), want, rtol=1e-12)
    assert softmax_code_bounds(count, 2) == pytest.approx((want, want), rel=1e-15)


def test_permutation_and_scale_invariance_at_extreme_scales():
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(12, 4))
    base = ovr_distances(vectors)
    order = rng.permutation(12)
    scales = 10.0 ** rng.uniform(-200, 200, size=(12, 1))
    np.testing.assert_allclose(ovr_distances(vectors[order] * scales), base[order], rtol=1e-10)


def test_a_row_inside_the_hull_and_a_repeated_row_are_at_distance_zero():
    square = polygon(4)
    inside = np.vstack([square * 3.0, [[0.1, 0.2]]])  # normalized: on the circle, inside
    assert ovr_distances(np.vstack([square, square[:1]]))[[0, 4]] == pytest.approx([0, 0])
    assert ovr_distances(inside)[4] == pytest.approx(
        brute_distances(inside)[4], abs=1e-12)


def test_nearest_cosines_over_several_tiles():
    vectors = np.random.default_rng(6).normal(size=(37, 5))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    gram = unit @ unit.T
    np.fill_diagonal(gram, -np.inf)
    np.testing.assert_allclose(nearest_cosines(unit, block=8), gram.max(axis=1), rtol=1e-14)


def test_a_budgeted_bracket_holds_the_margin_and_the_full_search_is_exact():
    vectors = np.random.default_rng(7).normal(size=(300, 6))
    margin = ovr_distances(vectors).min()
    full = ovr_margin_bracket(vectors, block=64)
    assert full.exact and full.upper == pytest.approx(margin, rel=1e-10)
    assert full.rows_solved < 300  # rows ruled out by 1 - max cos were never solved
    short = ovr_margin_bracket(vectors, max_rows=1)
    assert short.rows_solved == 1
    assert short.lower <= margin + 1e-12 and short.upper >= margin - 1e-12


@pytest.mark.parametrize("bad, message", [
    (np.ones(3), "C >= 2"), (np.ones((1, 3)), "C >= 2"), (np.zeros((3, 0)), "d >= 1"),
    (np.array([[1.0, 0], [np.nan, 1]]), "NaN"), (np.array([[1.0, 0], [0, 0]]), "zero row"),
    ([["a", "b"], ["c", "d"]], "real numbers"),
])
def test_bad_input_is_one_line(bad, message):
    with pytest.raises(NCInputError, match=message) as info:
        ovr_distances(bad)
    assert "\n" not in str(info.value)


def test_margin_metrics_of_means_and_weights():
    means, weight = etf(5, 4), polygon(5) @ np.eye(2, 4)
    values = margin_metrics(means, weight)
    assert values["ovr_margin_means"] == pytest.approx(1.25, rel=1e-12)
    assert values["ovr_margin_means_lower"] == pytest.approx(1.25, rel=1e-9)
    assert values["ovr_margin_weights"] == pytest.approx(2 * math.sin(math.pi / 5) ** 2)
    assert values["softmax_code_lower"] == values["softmax_code_upper"] == 1.25
    assert margin_metrics(means)["ovr_margin_weights"] is None


# ------------------------------------------------------------------ the softmax code
@pytest.mark.parametrize("count, dim, method", [
    (4, 3, "simplex ETF"), (3, 1, "two opposite rays"), (9, 2, "regular polygon"),
    (5, 3, "orthogonal simplices"), (6, 3, "orthogonal simplices"),
    (7, 4, "orthogonal simplices"),
])
def test_closed_forms_are_attained(count, dim, method):
    code = softmax_code(count, dim)
    assert code.exact and code.method == method and code.vectors.shape == (count, dim)
    assert code.lower == pytest.approx(code.upper, rel=1e-12, abs=1e-15)
    assert brute_distances(code.vectors).min() == pytest.approx(code.upper, abs=1e-12)


def test_orthogonal_simplices_reach_one_and_radon_bounds_every_start():
    for count, dim in [(5, 3), (8, 5), (10, 5)]:
        assert ovr_margin(orthogonal_simplices(count, dim)) == pytest.approx(1.0, rel=1e-12)
        for seed in range(5):  # Radon: no configuration beats 1 once C >= d + 2
            vectors = np.random.default_rng(seed).normal(size=(count, dim))
            assert ovr_margin(vectors) <= 1.0


def test_packing_bound_is_exact_on_the_circle_and_above_known_codes():
    assert packing_chord_bound(8, 2) == pytest.approx(2 * math.sin(math.pi / 8), rel=1e-12)
    # the 12 vertices of the icosahedron: smallest chord 1.0515 in d = 3
    assert packing_chord_bound(12, 3) >= 1.0515
    assert softmax_code_bounds(12, 3) == (None, 1.0)


def test_the_smoothed_objective_is_below_the_margin():
    gen = torch.Generator().manual_seed(0)
    vectors = torch.nn.functional.normalize(torch.randn(3, 9, 3, generator=gen,
                                                        dtype=torch.float64), dim=-1)
    directions = torch.nn.functional.normalize(torch.randn(3, 9, 3, generator=gen,
                                                           dtype=torch.float64), dim=-1)
    for sharpness in (5.0, 100.0):
        smooth = smoothed_margin(vectors, directions, sharpness)
        for run in range(3):
            assert float(smooth[run]) <= ovr_margin(vectors[run].numpy()) + 1e-12


def test_ascent_gives_a_certified_configuration_below_the_bound():
    code = softmax_code(8, 3, seeds=(0,), steps=300)
    assert not code.exact and code.upper == 1.0
    assert code.lower == pytest.approx(ovr_margin(code.vectors), rel=1e-12)
    assert 0.6 < code.lower <= code.upper
    assert code.gap(0.5) == pytest.approx((code.lower - 0.5, 0.5))


@pytest.mark.parametrize("count, dim, want", [(6, 2, 0.5), (6, 3, 1.0)])
def test_the_sphere_ufm_classifier_reaches_the_softmax_code(count, dim, want):
    """Jiang et al.: for C > d + 1 the normalized UFM's classifier is a softmax code."""
    solution = SphereUFM(count, dim, per_class=1, tau=8.0).solve(seeds=(0,), steps=3000)
    margin = ovr_margin(solution.weight[0].numpy())
    assert softmax_code_bounds(count, dim) == pytest.approx((want, want), rel=1e-15)
    assert margin == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("args", [(1, 3), (4, 0), (2.5, 3)])
def test_softmax_code_bad_sizes(args):
    with pytest.raises(NCInputError):
        softmax_code(*args)


def test_measure_with_margins_gives_the_margins_of_the_centred_means_and_of_w(capsys, tmp_path):
    """The wiring: measure(margins=True) reports ovr_margin_means of mu_c - mu_G and
    ovr_margin_weights of W, exact on a simplex ETF (C / (C - 1)), and the CLI prints them."""
    from cli_helpers import run_cli

    import nclab

    C, d = 5, 8
    etf = np.eye(C)[:, :] - 1.0 / C
    means = np.hstack([etf, np.zeros((C, d - C))]) * 3.0 + 7.0  # shifted: centring matters
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(C), 20)
    features = means[labels] + 1e-3 * rng.normal(size=(len(labels), d))
    weight = np.hstack([etf, np.zeros((C, d - C))])
    result = nclab.measure(features, labels, weight, margins=True)
    centred = np.array([features[labels == c].mean(0) for c in range(C)])
    centred -= centred.mean(0)
    assert math.isclose(result.ovr_margin_means, ovr_margin(centred), rel_tol=1e-9)
    assert math.isclose(result.ovr_margin_weights, C / (C - 1), rel_tol=1e-9)
    assert result.softmax_code_lower == result.softmax_code_upper == C / (C - 1)
    assert nclab.measure(features, labels, weight).ovr_margin_means is None
    np.savez(tmp_path / "f.npz", features=features, labels=labels, weight=weight)
    code, out, err = run_cli(["measure", tmp_path / "f.npz", "--margins"], capsys)
    assert code == 0, err
    assert "ovr_margin_weights" in out


# ------------------------------------------------------------------ screening, guesses
@pytest.mark.parametrize("count, dim, seed", [(9, 3, 0), (8, 4, 1), (7, 2, 2), (6, 8, 3)])
def test_screened_bounds_hold_the_brute_force_distance_of_every_row(count, dim, seed):
    vectors = np.random.default_rng(seed).normal(size=(count, dim))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    want = brute_distances(vectors)
    for rounds in (0, 1, 3):
        upper, lower = screen_bounds(unit, rounds, block=4)  # several blocks
        assert (lower <= want + 1e-12).all() and (upper >= want - 1e-12).all()
    cosines = unit @ unit.T
    np.fill_diagonal(cosines, -np.inf)
    upper, lower = screen_bounds(unit, 0)
    np.testing.assert_allclose(lower, 1 - cosines.max(axis=1), rtol=1e-14)
    assert np.isinf(upper).all()


@pytest.mark.parametrize("count, dim, seed", [(9, 3, 4), (8, 2, 5), (7, 5, 6)])
def test_the_screened_exact_margin_equals_the_brute_force(count, dim, seed):
    vectors = np.random.default_rng(seed).normal(size=(count, dim))
    want = brute_distances(vectors).min()
    for rounds in (0, 1, 3):
        found = ovr_margin_bracket(vectors, screen_rounds=rounds)
        assert found.exact
        assert found.upper == pytest.approx(want, rel=1e-9, abs=1e-12)
        assert found.lower == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_screening_rules_out_most_rows_of_an_exact_margin():
    """Without the screen every row whose 1 - max cos lies below the margin is solved."""
    vectors = np.random.default_rng(8).normal(size=(400, 24))
    plain = ovr_margin_bracket(vectors, screen_rounds=0)
    screened = ovr_margin_bracket(vectors)
    assert plain.exact and screened.exact
    assert screened.upper == pytest.approx(plain.upper, rel=1e-10)
    assert screened.rows_solved <= 40 < plain.rows_solved


def test_a_screened_budgeted_bracket_holds_the_margin():
    vectors = np.random.default_rng(9).normal(size=(200, 10))
    margin = ovr_distances(vectors).min()
    for rounds in (1, 3):
        short = ovr_margin_bracket(vectors, max_rows=2, screen_rounds=rounds)
        assert short.rows_solved <= 2
        assert short.lower <= margin + 1e-12 <= short.upper + 2e-12


@pytest.mark.parametrize("steps", [0, 1, 3])
def test_a_poor_support_guess_changes_the_time_never_the_distance(monkeypatch, steps):
    """The exact solve starts from the guessed support and repairs it: with guesses from
    0, 1 or 3 projected-gradient steps the distances still equal the brute force."""
    monkeypatch.setattr(margins, "GUESS_STEPS", steps)
    vectors = np.random.default_rng(10).normal(size=(9, 3))
    np.testing.assert_allclose(ovr_distances(vectors), brute_distances(vectors),
                               rtol=1e-9, atol=1e-12)
    square = polygon(4)
    assert ovr_distances(np.vstack([square, square[:1]]))[[0, 4]] == pytest.approx([0, 0])


# ------------------------------------------------------------------ the shared pair pass
def brute_nearest(vectors):
    """max_{j != c} cos(v_c, v_j) from the whole float64 Gram of the normalized rows."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    gram = unit @ unit.T
    np.fill_diagonal(gram, -np.inf)
    return gram.max(axis=1)


@pytest.mark.parametrize("count, dim, block, as_tensor", [
    (37, 5, 8, False), (33, 40, 16, False), (20, 3, 1024, False), (37, 5, 8, True)])
def test_the_pair_pass_gives_the_nearest_cosines_of_the_means_and_of_w(count, dim, block,
                                                                        as_tensor):
    """Several tiles, a last one-row diagonal tile (33 = 2 x 16 + 1), one tile; numpy and
    torch: each row's largest cosine to another row, as nearest_cosines gives it."""
    from nclab.core.geometry import pair_sums

    rng = np.random.default_rng(count + dim)
    means = rng.normal(size=(count, dim)) * 1e3
    centred = means - means.mean(axis=0)
    weight = centred + 0.3 * rng.normal(size=(count, dim))
    arrays = [centred, rng.uniform(0.5, 1.5, size=count), weight]
    if as_tensor:
        arrays = [torch.from_numpy(array) for array in arrays]
    sums = pair_sums(*arrays, block=block, nearest=True)
    for vectors, got in ((centred, sums.means.nearest), (weight, sums.weights.nearest)):
        assert isinstance(got, np.ndarray) and got.shape == (count,)
        np.testing.assert_allclose(got, nearest_cosines(margins.unit_rows(vectors)),
                                   rtol=0, atol=1e-15)
        np.testing.assert_allclose(got, brute_nearest(vectors), rtol=0, atol=1e-15)
    assert pair_sums(*arrays, block=block).means.nearest is None  # only when asked
    low = pair_sums(*arrays, block=block, nearest=True, tile_dtype=np.float32)
    assert low.means.nearest is None and low.weights.nearest is None  # not certified


def _margin_features(count=40, dim=6, seed=3):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(count, dim)) * 4.0
    labels = np.repeat(np.arange(count), 6)
    features = means[labels] + rng.normal(size=(len(labels), dim))
    return features, labels, means + 0.3 * rng.normal(size=(count, dim))


def test_compute_metrics_margins_take_the_nearest_cosines_of_the_float64_pair_pass(
        monkeypatch):
    """With float64 tiles the margins make no pass over the pairs of their own and give
    the values of their own pass (float32 tiles, which still make it) to 1e-12."""
    from nclab import CollapseStats, compute_metrics

    features, labels, weight = _margin_features()
    stats = CollapseStats(40).update(features, labels)
    calls = []
    original = margins.nearest_cosines
    monkeypatch.setattr(margins, "nearest_cosines",
                        lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    own = compute_metrics(stats, weight, margins=True, block=16, tiles="float32")
    assert len(calls) == 2  # means and W: float32 cosines would not certify the bound

    def refuse(*args, **kwargs):
        raise AssertionError("a second pass over the pairs")

    monkeypatch.setattr(margins, "nearest_cosines", refuse)
    for backend in ("numpy", "torch"):  # the torch pass hands its maxima to the host
        shared = compute_metrics(stats, weight, margins=True, block=16, backend=backend)
        for name in ("ovr_margin_means", "ovr_margin_means_lower", "ovr_margin_weights",
                     "ovr_margin_weights_lower"):
            assert getattr(shared, name) == pytest.approx(getattr(own, name), rel=0,
                                                          abs=1e-12), (backend, name)
        assert shared.ovr_margin_means_lower <= shared.ovr_margin_means  # a bracket
    assert compute_metrics(stats, margins=True).ovr_margin_weights is None  # no W


@pytest.mark.parametrize("nearest, message", [
    (np.zeros(3), "shape"), (np.full(4, 1.5), r"\[-1, 1\]"), (np.full(4, np.nan), "NaN")])
def test_bad_nearest_cosines_are_one_line(nearest, message):
    with pytest.raises(NCInputError, match=message) as info:
        ovr_margin_bracket(np.eye(4), max_rows=2, nearest=nearest)
    assert "\n" not in str(info.value)
