"""The metrics of definitions §7, the per-class views and the fast paths, against brute force."""

import itertools
import json

import numpy as np
import pytest
from reference import gaussian_classes, modern_reference, reference_metrics, simplex_etf

from nclab import CollapseStats, DecisionStats, NCInputError, compute_metrics, measure
from nclab.core import geometry
from nclab.core.metrics import METRIC_NAMES, ood_feature_mean, per_class_metrics

MODERN = ("gnc2_dist_means", "gnc2_log_means", "unc3_duality_cv", "unc3_duality_var",
          "nc5_ood_orthogonality", "bias_relation")


def brute_cosines(V):
    """cos(v_c, v_c') over the ordered pairs c != c', by explicit loops."""
    return np.array([V[a] @ V[c] / np.sqrt((V[a] @ V[a]) * (V[c] @ V[c]))
                     for a, c in itertools.permutations(range(len(V)), 2)])


@pytest.mark.parametrize("weighted", [False, True])
def test_modern_metrics_match_brute_force(weighted):
    rng = np.random.default_rng(11)
    H, y = gaussian_classes(rng, C=7, d=9, sizes=[5, 40, 12, 33, 8, 20, 3])
    W, b, ood = rng.normal(size=(7, 9)), rng.normal(size=7), rng.normal(size=(30, 9)) + 1.0
    got = measure(H, y, W, b, weighted_mean=weighted, ood_features=ood, batch_size=11)
    want = reference_metrics(H, y, W, b, weighted=weighted, ood=ood)
    assert set(MODERN) <= set(want) and set(want) == set(METRIC_NAMES)
    for name, value in want.items():
        assert getattr(got, name) == pytest.approx(value, rel=1e-8, abs=1e-12), name
    assert set(MODERN) <= set(got.scalars())
    assert all(got.to_dict()[name] is not None for name in MODERN)


def test_modern_metrics_need_their_inputs():
    rng = np.random.default_rng(12)
    H, y = gaussian_classes(rng, C=4, d=5)
    bare = measure(H, y)
    assert bare.gnc2_dist_means is not None and bare.unc3_duality_cv is None
    assert bare.bias_relation is None and bare.nc5_ood_orthogonality is None
    no_bias = measure(H, y, rng.normal(size=(4, 5)))
    assert no_bias.unc3_duality_var is not None and no_bias.bias_relation is None


def test_exact_simplex_etf_gives_zero_gnc2_and_duality_spread():
    rng = np.random.default_rng(13)
    C, d = 6, 9
    M = simplex_etf(C, d, rng, scale=4.0) + rng.normal(size=d)  # ETF around a global mean
    y = np.repeat(np.arange(C), 5)
    H = M[y] + 1e-3 * rng.normal(size=(len(y), d))
    H -= np.array([H[y == c].mean(axis=0) for c in range(C)])[y] - M[y]  # means exactly M
    W = 2.0 * (M - M.mean(axis=0))  # self-dual: every s_c equal
    b = -W @ M.mean(axis=0)  # cancels W mu_G
    got = measure(H, y, W, b)
    assert got.gnc2_dist_means == pytest.approx(0, abs=1e-12)
    assert got.gnc2_log_means == pytest.approx(0, abs=1e-12)
    assert got.unc3_duality_cv == pytest.approx(0, abs=1e-10)
    assert got.unc3_duality_var == pytest.approx(0, abs=1e-9)
    assert got.bias_relation == pytest.approx(0, abs=1e-10)
    # not collapsed: random means and classifier are far from every zero
    H2, y2 = gaussian_classes(rng, C=6, d=9)
    other = measure(H2, y2, rng.normal(size=(6, 9)), rng.normal(size=6))
    assert other.gnc2_dist_means > 1e-3 and other.unc3_duality_cv > 1e-2
    assert 0.05 < other.bias_relation <= 1


def test_ood_orthogonality_of_a_direction_orthogonal_to_every_mean_is_zero():
    rng = np.random.default_rng(14)
    mu = np.zeros((3, 4))
    mu[:, :3] = rng.normal(size=(3, 3)) * 3
    y = np.repeat(np.arange(3), 20)
    H = mu[y] + 0.1 * rng.normal(size=(60, 4)) * np.array([1, 1, 1, 0])
    ood = np.zeros((5, 4))
    ood[:, 3] = rng.uniform(1, 2, size=5)
    assert measure(H, y, ood_features=ood).nc5_ood_orthogonality == pytest.approx(0, abs=1e-12)
    aligned = np.tile(H[y == 0].mean(axis=0), (2, 1))
    assert measure(H, y, ood_features=aligned).nc5_ood_orthogonality > 0.3


def test_ood_inputs_are_checked():
    rng = np.random.default_rng(15)
    H, y = gaussian_classes(rng, C=3, d=4)
    with pytest.raises(NCInputError, match="ood_features has dimension 5"):
        measure(H, y, ood_features=np.ones((3, 5)))
    with pytest.raises(NCInputError, match="no rows"):
        measure(H, y, ood_features=np.ones((0, 4)))
    with pytest.raises(NCInputError, match="NaN or inf"):
        measure(H, y, ood_features=np.full((2, 4), np.nan))
    stats = CollapseStats(3).update(H, y)
    with pytest.raises(NCInputError, match="ood_mean must have shape"):
        compute_metrics(stats, ood_mean=np.ones(3))
    ood = rng.normal(size=(10, 4))
    direct = compute_metrics(stats, ood_mean=ood_feature_mean(ood)).nc5_ood_orthogonality
    assert direct == pytest.approx(modern_reference(stats.means, stats.global_mean(),
                                                    ood=ood)["nc5_ood_orthogonality"])


@pytest.mark.parametrize("C, d", [(40, 6), (12, 30)], ids=["C>d closed form", "C<=d pairs"])
@pytest.mark.parametrize("common", [0.0, 50.0], ids=["centred", "common direction"])
def test_cosine_spread_paths_match_pairwise_brute_force(C, d, common):
    rng = np.random.default_rng(16)
    V = rng.normal(size=(C, d)) + common * rng.normal(size=d)
    want = np.std(brute_cosines(V))
    assert geometry.cosine_spread(V) == pytest.approx(want, rel=1e-9)
    sums = geometry.pair_sums(V, np.ones(C), block=5)
    assert sums.means.spread(sums.pairs) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("exponent", [2.0, 1.0, 3.0])
def test_shared_pass_equals_brute_force_at_any_tile_size(exponent):
    rng = np.random.default_rng(17)
    C, d = 23, 5  # C > d: the closed form of the cosine spread is used
    H, y = gaussian_classes(rng, C=C, d=d, sizes=rng.integers(2, 9, size=C).tolist())
    W = rng.normal(size=(C, d))
    stats = CollapseStats(C).update(H, y)
    want = reference_metrics(H, y, W)
    mu, var = stats.means, stats.class_variances()
    want["cdnv"] = np.mean([(var[a] + var[c]) / (2 * np.linalg.norm(mu[a] - mu[c]) ** exponent)
                            for a, c in itertools.combinations(range(C), 2)])
    for block in (4, 7, 1024):
        got = compute_metrics(stats, W, block=block, cdnv_exponent=exponent)
        for name in ("cdnv", "equiangularity_means", "equiangularity_weights", "maxangle_means",
                     "maxangle_weights", "gnc2_dist_means", "gnc2_log_means"):
            assert getattr(got, name) == pytest.approx(want[name], rel=1e-9), (name, block)
    assert compute_metrics(stats, cdnv_exponent=exponent).cdnv_exponent == (
        None if exponent == 2 else exponent)


def test_nearly_coinciding_means_are_refined_from_differences():
    """Two class means 1e-7 apart at norm 1e3: Gram distances would be pure rounding."""
    rng = np.random.default_rng(18)
    C, d = 5, 6
    mu = rng.normal(size=(C, d)) * 1e3
    mu[1] = mu[0] + 1e-7 * rng.normal(size=d)
    y = np.repeat(np.arange(C), 4)
    H = mu[y] + 1e-3 * rng.normal(size=(len(y), d))
    want = reference_metrics(H, y)
    for block in (2, 512):  # tiles, and the whole Gram as one tile
        got = compute_metrics(CollapseStats(C).update(H, y), block=block)
        for name in ("cdnv", "gnc2_log_means", "gnc2_dist_means"):
            assert getattr(got, name) == pytest.approx(want[name], rel=1e-5), (name, block)


def test_coinciding_directions_make_the_log_kernel_infinite():
    H = np.array([[1.0, 0], [1.1, 0], [2.0, 0], [2.1, 0], [-3.0, 0], [-3.1, 0]])
    got = measure(H, [0, 0, 1, 1, 2, 2])  # means 1.05 and 2.05 both point along +x
    assert got.gnc2_log_means == np.inf and got.to_dict()["gnc2_log_means"] is None
    assert any("not finite" in w for w in got.warnings)
    assert np.isfinite(got.gnc2_dist_means)


def test_per_class_views_match_brute_force():
    rng = np.random.default_rng(19)
    H, y = gaussian_classes(rng, C=5, d=4, sizes=[12, 30, 7, 21, 15], spread=1.5)
    keep = y != 2  # an empty class is left out of every view
    H, y = H[keep], y[keep]
    W, b = rng.normal(size=(5, 4)), rng.normal(size=5)
    stats = CollapseStats(5).update(H, y)
    decisions = DecisionStats.from_stats(stats, W, b)
    for start in range(0, len(y), 9):
        decisions.update(H[start:start + 9], y[start:start + 9])
    views = per_class_metrics(stats, decisions, cdnv_matrix=True, cdnv_exponent=1.0)
    classes = [0, 1, 3, 4]
    assert views.classes == tuple(classes)
    mu = np.array([H[y == c].mean(axis=0) for c in classes])
    sigma2 = np.array([np.mean(np.sum((H[y == c] - mu[k]) ** 2, axis=1))
                       for k, c in enumerate(classes)])
    np.testing.assert_allclose(views.variances, sigma2, rtol=1e-10)
    np.testing.assert_array_equal(views.counts, [np.sum(y == c) for c in classes])
    pred = np.argmax(H @ W.T + b, axis=1)
    ncc = np.array(classes)[np.argmin(((H[:, None] - mu[None]) ** 2).sum(-1), axis=1)]
    for k, c in enumerate(classes):
        assert views.accuracy[k] == pytest.approx(np.mean(pred[y == c] == c))
        assert views.ncc_mismatch[k] == pytest.approx(np.mean(pred[y == c] != ncc[y == c]))
    for (i, a), (j, c) in itertools.product(enumerate(classes), repeat=2):
        want = 0.0 if a == c else (sigma2[i] + sigma2[j]) / (2 * np.linalg.norm(mu[i] - mu[j]))
        assert views.cdnv[i, j] == pytest.approx(want, rel=1e-9)
    whole = compute_metrics(stats, cdnv_exponent=1.0).cdnv
    assert whole == pytest.approx(views.cdnv[np.triu_indices(4, 1)].mean(), rel=1e-10)
    data = json.loads(json.dumps(views.to_dict()))
    assert data["classes"] == classes and len(data["cdnv"]) == 4
    assert per_class_metrics(stats).cdnv is None and per_class_metrics(stats).accuracy is None


def test_per_class_decision_counts_merge():
    rng = np.random.default_rng(20)
    H, y = gaussian_classes(rng, C=3, d=4, spread=2.0)
    W = rng.normal(size=(3, 4))
    stats = CollapseStats(3).update(H, y)
    whole = DecisionStats.from_stats(stats, W).update(H, y)
    parts = DecisionStats.from_stats(stats, W).update(H[:50], y[:50])
    parts.merge(DecisionStats.from_stats(stats, W).update(H[50:], y[50:]))
    np.testing.assert_array_equal(parts.class_counts.numpy(), whole.class_counts.numpy())
    assert int(whole.class_counts[0].sum()) == len(y)
    assert int(whole.class_counts[2].sum()) == whole.correct


@pytest.mark.parametrize("pair", ["means", "weights", "wh"])
def test_gap_trace_identity_for_more_classes_than_dimensions_equals_dense(pair, monkeypatch):
    """C > d + 1: no simplex ETF exists, the gap is bounded below and the O(C d^2) trace
    identity gives the dense value to rounding."""
    rng = np.random.default_rng(21)
    M, W = rng.normal(size=(60, 8)), rng.normal(size=(60, 8)) + 0.5
    left, right = {"means": (M, M), "weights": (W, W), "wh": (W, M)}[pair]
    dense = geometry.simplex_gap(left, right)
    monkeypatch.setattr(geometry, "_DENSE_GRAM_LIMIT", 0)
    assert geometry.simplex_gap(left, right) == pytest.approx(dense, rel=1e-12)
    assert dense > np.sqrt((60 - 1 - 8) / 59) - 1e-12  # the lower bound of the comment


def test_cli_measure_prints_and_writes_the_modern_metrics(tmp_path, capsys):
    from cli_helpers import run_cli

    rng = np.random.default_rng(22)
    H, y = gaussian_classes(rng, C=4, d=6, sizes=[20, 30, 25, 10])
    W, b, ood = rng.normal(size=(4, 6)), rng.normal(size=4), rng.normal(size=(15, 6)) + 2
    np.savez(tmp_path / "f.npz", features=H, labels=y, weight=W, bias=b)
    np.savez(tmp_path / "ood.npz", features=ood)
    code, out, _ = run_cli(["measure", tmp_path / "f.npz", "--ood", tmp_path / "ood.npz",
                            "--json", tmp_path / "m.json"], capsys)
    assert code == 0 and all(name in out for name in MODERN)
    data = json.loads((tmp_path / "m.json").read_text())
    for name, value in reference_metrics(H, y, W, b, ood=ood).items():
        assert data[name] == pytest.approx(value, rel=1e-8, abs=1e-12), name
    np.savez(tmp_path / "bad.npz", features=np.ones((3, 5)))
    code, _, err = run_cli(["measure", tmp_path / "f.npz", "--ood", tmp_path / "bad.npz",
                            "--json", tmp_path / "n.json"], capsys)
    assert code == 2 and "ood_features has dimension 5" in err
    assert err.strip().count("\n") == 0 and not (tmp_path / "n.json").exists()


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "2"])
def test_bad_cdnv_exponent_is_one_clear_error(bad):
    rng = np.random.default_rng(23)
    stats = CollapseStats(3).update(*gaussian_classes(rng, C=3, d=4))
    with pytest.raises(NCInputError, match="cdnv_exponent must be"):
        compute_metrics(stats, cdnv_exponent=bad)
    with pytest.raises(NCInputError, match="cdnv_exponent must be"):
        per_class_metrics(stats, cdnv_matrix=True, cdnv_exponent=bad)
