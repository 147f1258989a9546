"""RegressionStats and the NRC metrics against a brute-force reference, and bad input."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from regression_reference import (
    nrc3_grid_minimum,
    nrc3_reference,
    nrc_reference,
    regression_problem,
)
from sklearn.metrics import mean_squared_error, r2_score

from nclab import (
    NCInputError,
    RegressionStats,
    compute_regression_metrics,
    measure_regression,
)


@pytest.mark.parametrize("M,d,n", [(300, 12, 3), (50, 5, 2), (400, 32, 1), (200, 8, 6)])
def test_streaming_matches_brute_force(M, d, n):
    rng = np.random.default_rng(M + d + n)
    H, Y, W, b = regression_problem(rng, M, d, n)
    stats = RegressionStats()
    for start in range(0, M, 37):  # uneven batches
        stats.update(H[start : start + 37], Y[start : start + 37])
    lam_min = np.linalg.eigvalsh(np.atleast_2d(np.cov(Y.T, bias=True)))[0]
    gamma = 0.3 * lam_min
    got = compute_regression_metrics(stats, W, b, gamma=gamma)
    ref = nrc_reference(H, Y, W, gamma)
    for name, value in ref.items():
        assert getattr(got, name) == pytest.approx(value, rel=1e-9, abs=1e-13), name
    if n == 1:
        assert got.nrc3 is None and any("n = 1" in w for w in got.warnings)
    pred = H @ W.T + b
    assert got.mse == pytest.approx(mean_squared_error(Y, pred), rel=1e-9)
    assert got.r2 == pytest.approx(r2_score(Y, pred), rel=1e-9)
    variance = np.sort(np.linalg.eigvalsh(np.cov(H.T, bias=True)))[::-1]
    k = len(got.explained_variance_ratio)
    np.testing.assert_allclose(got.explained_variance_ratio, variance[:k] / variance.sum(),
                               rtol=1e-9, atol=1e-15)
    assert got.top_n_explained == pytest.approx(variance[: min(n, d)].sum() / variance.sum())


def test_gamma_search_finds_the_grid_minimum():
    rng = np.random.default_rng(1)
    H, Y, W, b = regression_problem(rng, 200, 10, 3)
    got = measure_regression(H, Y, W, b)
    best, _ = nrc3_grid_minimum(W, Y)
    assert got.gamma_searched
    lam_min = np.linalg.eigvalsh(np.cov(Y.T, bias=True))[0]
    assert 0 < got.gamma < lam_min
    assert got.nrc3 == pytest.approx(nrc3_reference(W, Y, got.gamma), rel=1e-9)
    assert got.nrc3 <= best + 1e-12


def test_nrc_is_zero_at_exact_collapse_and_three_planted_structures():
    # features in a 2-D subspace spanned by W's rows; W W^T proportional to A_gamma
    rng = np.random.default_rng(2)
    Y = rng.normal(size=(400, 2)) @ np.array([[1.0, 0.3], [0.0, 0.6]])
    Sigma = np.cov(Y.T, bias=True)
    values, vectors = np.linalg.eigh(Sigma)
    gamma = 0.4 * values[0]
    A = (vectors * (np.sqrt(values) - np.sqrt(gamma))) @ vectors.T
    basis, _ = np.linalg.qr(rng.normal(size=(9, 2)))
    W = np.linalg.cholesky(A) @ basis.T  # W W^T = A
    H = (Y - Y.mean(0)) @ np.linalg.pinv(W).T
    got = measure_regression(H, Y, W, gamma=gamma)
    assert got.nrc1 < 1e-14 and got.nrc2 < 1e-14 and got.nrc3 < 1e-14
    searched = measure_regression(H, Y, W)
    assert searched.gamma == pytest.approx(gamma, rel=1e-4)


def test_merge_equals_one_pass_and_all_orders_agree():
    rng = np.random.default_rng(3)
    H, Y, W, b = regression_problem(rng, 240, 7, 2)
    whole = RegressionStats().update(H, Y)
    parts = [RegressionStats().update(H[i::3], Y[i::3]) for i in range(3)]
    merged = RegressionStats()
    for p in parts[::-1]:
        merged.merge(p)
    merged.merge(RegressionStats())  # an empty part changes nothing
    one_state, two_state = whole.state_dict(), merged.state_dict()
    for part in ("joint", "unit"):
        assert int(one_state[f"{part}_counts"]) == int(two_state[f"{part}_counts"])
        np.testing.assert_allclose(one_state[f"{part}_means"], two_state[f"{part}_means"],
                                   rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(one_state[f"{part}_scatter"], two_state[f"{part}_scatter"],
                                   rtol=1e-10, atol=1e-10)
    one = compute_regression_metrics(whole, W, b).to_dict()
    two = compute_regression_metrics(merged, W, b).to_dict()
    for key in ("nrc1", "nrc2", "nrc3", "mse", "r2", "gamma"):
        assert one[key] == pytest.approx(two[key], rel=1e-8), key


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 64))
def test_permutation_and_batching_do_not_change_the_metrics(seed, batch):
    rng = np.random.default_rng(seed)
    H, Y, W, b = regression_problem(rng, 90, 6, 2)
    perm = rng.permutation(len(H))
    base = measure_regression(H, Y, W, b, gamma=0.1)
    shuffled = measure_regression(H[perm], Y[perm], W, b, gamma=0.1, batch_size=batch)
    for key in ("nrc1", "nrc2", "nrc3", "mse", "r2"):
        assert getattr(base, key) == pytest.approx(getattr(shuffled, key), rel=1e-8, abs=1e-14)


def test_float32_features_with_a_large_mean_keep_the_pca():
    # feature mean of norm ~1e4, spread 1: the shift before the float32 product keeps it
    rng = np.random.default_rng(4)
    H, Y, W, b = regression_problem(rng, 500, 8, 2, offset=1e4)
    H32 = H.astype(np.float32)
    got = measure_regression(torch.from_numpy(H32), Y, W, b, gamma=0.05, batch_size=64)
    ref = nrc_reference(H32.astype(np.float64), Y, W, 0.05)
    variance = np.sort(np.linalg.eigvalsh(np.cov(H32.astype(np.float64).T, bias=True)))[::-1]
    np.testing.assert_allclose(got.explained_variance_ratio, variance / variance.sum(),
                               rtol=1e-4, atol=1e-7)
    assert got.nrc1 == pytest.approx(ref["nrc1"], rel=1e-4)


def test_constant_target_column_is_named_and_nrc1_nrc2_survive():
    rng = np.random.default_rng(5)
    H, Y, W, b = regression_problem(rng, 100, 6, 3)
    Y[:, 1] = 2.5
    got = measure_regression(H, Y, W, b)
    ref = nrc_reference(H, Y, W)
    assert got.nrc3 is None
    assert got.nrc1 == pytest.approx(ref["nrc1"], rel=1e-9)
    assert got.nrc2 == pytest.approx(ref["nrc2"], rel=1e-9)
    assert any("target column 1 is constant" in w for w in got.warnings)
    with pytest.raises(NCInputError, match="target column 1 is constant") as info:
        measure_regression(H, Y, W, b, gamma=0.1)
    assert "\n" not in str(info.value)


def test_linearly_dependent_targets_are_reported():
    rng = np.random.default_rng(6)
    H, Y, W, b = regression_problem(rng, 100, 6, 3)
    Y[:, 2] = Y[:, 0] - 2 * Y[:, 1]
    got = measure_regression(H, Y, W, b)
    assert got.nrc3 is None
    assert any("linearly dependent" in w and "0, 1, 2" in w for w in got.warnings)


def test_n_larger_than_d_is_explained_not_crashed_on():
    rng = np.random.default_rng(7)
    H = rng.normal(size=(80, 3))
    Y = rng.normal(size=(80, 5))
    W = rng.normal(size=(5, 3))
    got = measure_regression(H, Y, W)
    assert got.nrc1 == 0.0
    assert got.nrc2 == pytest.approx(nrc_reference(H, Y, W)["nrc2"], abs=1e-12)
    assert got.nrc3 is not None and got.nrc3 > 0
    assert any("n=5 >= d=3" in w for w in got.warnings)


def test_zero_feature_rows_are_left_out_of_the_normalized_moments():
    rng = np.random.default_rng(8)
    H, Y, W, b = regression_problem(rng, 60, 5, 2)
    H[[3, 17]] = 0.0
    got = measure_regression(H, Y, W, b)
    keep = np.linalg.norm(H, axis=1) > 0
    Hn = H[keep] / np.linalg.norm(H[keep], axis=1, keepdims=True)
    P = np.linalg.pinv(W) @ W
    assert got.zero_features == 2
    assert got.nrc2 == pytest.approx(np.mean(np.sum((Hn - Hn @ P) ** 2, axis=1)), rel=1e-9)


def test_uncentred_pca_option_uses_the_second_moment():
    rng = np.random.default_rng(9)
    H, Y, W, b = regression_problem(rng, 120, 6, 2, offset=3.0)
    got = measure_regression(H, Y, centred_pca=False)
    Hn = H / np.linalg.norm(H, axis=1, keepdims=True)
    _, _, vt = np.linalg.svd(H, full_matrices=False)  # uncentred principal directions
    V = vt[:2].T
    assert not got.centred_pca
    assert got.nrc1 == pytest.approx(np.mean(np.sum((Hn - Hn @ V @ V.T) ** 2, axis=1)), rel=1e-8)


def test_state_dict_round_trip_through_torch_save(tmp_path):
    rng = np.random.default_rng(10)
    H, Y, W, b = regression_problem(rng, 70, 5, 2)
    stats = RegressionStats().update(H, Y)
    torch.save(stats.state_dict(), tmp_path / "s.pt")
    back = RegressionStats().load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert compute_regression_metrics(back, W, b).to_dict() == \
        compute_regression_metrics(stats, W, b).to_dict()


@pytest.mark.parametrize("call,match", [
    (lambda H, Y, W: measure_regression(H, Y[:-1], W), "targets has 39 rows"),
    (lambda H, Y, W: measure_regression(H, Y, W[:, :-1]), r"weight must have shape \(n, d\)"),
    (lambda H, Y, W: measure_regression(H, Y, W, gamma=5.0), r"gamma must lie in \(0, lambda"),
    (lambda H, Y, W: measure_regression(H, Y, W, gamma="best"), "gamma must be a number"),
    (lambda H, Y, W: measure_regression(H, np.where(np.arange(40)[:, None] == 7, np.nan, Y), W),
     "targets contain NaN or inf .first at row 7."),
    (lambda H, Y, W: RegressionStats().update(H, Y).update(H[:, :3], Y), r"\(d, n\) = \(3, 2\)"),
    (lambda H, Y, W: compute_regression_metrics(RegressionStats()), "no samples"),
])
def test_bad_input_is_one_clear_line(call, match):
    rng = np.random.default_rng(11)
    H, Y, W, _ = regression_problem(rng, 40, 4, 2)
    with pytest.raises(NCInputError, match=match) as info:
        call(H, Y, W)
    assert "\n" not in str(info.value)


def test_to_dict_is_json_ready():
    import json

    rng = np.random.default_rng(12)
    H, Y, W, b = regression_problem(rng, 50, 4, 2)
    data = measure_regression(H, Y, W, b).to_dict()
    assert set(("nrc1", "nrc2", "nrc3", "gamma", "mse", "r2")) <= set(data)
    json.dumps(data, allow_nan=False)


@pytest.mark.parametrize("scale", [1e-60, 1e-20, 1.0, 1e20, 1e60])
def test_measure_regression_is_scale_free_in_the_features(scale):
    rng = np.random.default_rng(7)
    H, Y, W, b = regression_problem(rng, 90, 6, 2)
    expected = nrc_reference(H, Y, W, 0.05)  # float64 brute force at scale 1
    got = measure_regression(H * scale, Y, W, b, gamma=0.05)
    for name in ("nrc1", "nrc2", "nrc3"):
        assert getattr(got, name) == pytest.approx(expected[name], rel=1e-7), name


@pytest.mark.parametrize("scale", [1e-300, 1e-100, 1e100, 1e300])
@pytest.mark.parametrize("which", ["features", "targets", "weight", "bias"])
def test_measure_regression_refuses_what_float64_cannot_hold(scale, which):
    rng = np.random.default_rng(8)
    arrays = dict(zip(("features", "targets", "weight", "bias"),
                      regression_problem(rng, 60, 5, 2), strict=True))
    arrays[which] = arrays[which] * scale
    with pytest.raises(NCInputError, match=f"{which} reach magnitude .*rescale them") as info:
        measure_regression(*arrays.values(), gamma=0.05)
    assert "\n" not in str(info.value)
