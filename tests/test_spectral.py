"""Spectral metrics (definitions §8) against float64 brute force on the raw features.

Every metric is computed the nclab way (CollapseStats updated in batches and merged,
then the scaled statistics through nclab.core.spectral) and compared with a brute force
written here on the N x d feature matrix itself: np.linalg.svd of X for RankMe, explicit
sums for the covariances, scipy's matrix square root for LiDAR, np.polyfit for alpha.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nclab import CollapseStats, NCInputError
from nclab.core import spectral

EPSILON = 1e-7  # Garrido et al.'s, written here independently of the module
RTOL = 1e-9
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ brute force
def entropy_rank(values: np.ndarray) -> float:
    p = values / values.sum() + EPSILON
    return float(np.exp(-np.sum(p * np.log(p))))


def brute_rankme(X: np.ndarray, centred: bool = False) -> float:
    """On the N x d matrix itself; centred: its top min(N - 1, d) singular values."""
    matrix = X - X.mean(axis=0) if centred else X
    count = min(X.shape[0] - int(centred), X.shape[1])
    return entropy_rank(np.linalg.svd(matrix, compute_uv=False)[:count])


def brute_covariance_spectrum(X: np.ndarray) -> np.ndarray:
    """Eigenvalues (descending, d of them) of the population covariance, from the SVD."""
    singular = np.linalg.svd(X - X.mean(axis=0), compute_uv=False)
    spectrum = np.zeros(X.shape[1])
    spectrum[: singular.size] = singular**2 / X.shape[0]
    return spectrum


def brute_alpha(X: np.ndarray, first: int, last: int) -> float:
    spectrum = brute_covariance_spectrum(X)
    rank = np.linalg.matrix_rank(X - X.mean(axis=0))
    ranks = np.arange(first, min(last, rank) + 1)
    slope, _ = np.polyfit(np.log(ranks), np.log(spectrum[ranks - 1]), 1, w=ranks**-0.5)
    return -slope


def brute_explained(X: np.ndarray) -> np.ndarray:
    spectrum = brute_covariance_spectrum(X)
    return np.cumsum(spectrum) / spectrum.sum()


def brute_lidar(X: np.ndarray, y: np.ndarray, delta: float = spectral.LIDAR_DELTA) -> float:
    N, d = X.shape
    classes = np.unique(y)
    means = np.array([X[y == c].mean(axis=0) for c in classes])
    within = np.zeros((d, d))
    for row, label in zip(X, y, strict=True):
        r = row - means[np.searchsorted(classes, label)]
        within += np.outer(r, r)
    within /= N
    between = sum(np.outer(m, m) for m in means - means.mean(axis=0)) / len(classes)
    regularized = within + delta * np.trace(within + between) / d * np.eye(d)
    root_inverse = np.linalg.inv(np.real(scipy.linalg.sqrtm(regularized)))
    lidar_matrix = root_inverse @ between @ root_inverse
    values = np.linalg.eigvalsh((lidar_matrix + lidar_matrix.T) / 2)
    return entropy_rank(np.maximum(values, 0.0))


def brute_metrics(X, y, first, last) -> dict:
    return {"rankme": brute_rankme(X), "rankme_centred": brute_rankme(X, centred=True),
            "alpha_req": brute_alpha(X, first, last), "lidar": brute_lidar(X, y),
            "explained_variance": brute_explained(X)}


# ------------------------------------------------------------------ the nclab way
def streamed(X, y, num_classes: int, batch: int = 7) -> CollapseStats:
    """Two halves streamed in batches, then merged: every path of the statistics."""
    halves = []
    for part in (slice(0, len(y) // 2), slice(len(y) // 2, None)):
        stats = CollapseStats(num_classes)
        for start in range(0, len(y[part]), batch):
            stats.update(X[part][start : start + batch], y[part][start : start + batch])
        halves.append(stats)
    return halves[0].merge(halves[1])


def nclab_metrics(stats: CollapseStats, first: int, last: int) -> dict:
    arrays = stats.counts, stats.scaled_means(), stats.scaled_scatter()
    combined = spectral.spectral_metrics(*arrays, first_rank=first, last_rank=last)
    moments = spectral.second_moments(*arrays)
    for matrix in moments[:4]:
        np.testing.assert_array_equal(matrix, matrix.T)  # exactly, as eigh assumes
    N = moments.num_samples
    single = {
        "rankme": spectral.rankme(moments.uncentred, N),
        "rankme_centred": spectral.rankme_centred(moments.total, N),
        "alpha_req": spectral.alpha_req(moments.total, first, last, num_samples=N),
        "lidar": spectral.lidar(moments.within_cov, moments.between_cov),
        "explained_variance": spectral.explained_variance(moments.total),
    }
    for name, value in single.items():  # the shared pass: the same numbers to rounding
        np.testing.assert_allclose(getattr(combined, name), value, rtol=1e-10, atol=1e-12,
                                   err_msg=name)
    return single


def assert_metrics_close(got: dict, expected: dict, rtol: float = RTOL) -> None:
    for name, value in expected.items():
        # alpha is an exponent of order one that is 0 for a flat spectrum: there a
        # relative tolerance means nothing, so it gets an absolute one as well
        atol = 1e-12 if name == "alpha_req" else 0.0
        np.testing.assert_allclose(got[name], value, rtol=rtol, atol=atol, err_msg=name)


def orthonormal_mean_free(rng, rows: int, columns: int) -> np.ndarray:
    """(rows, columns) orthonormal columns orthogonal to the all-ones vector."""
    basis, _ = np.linalg.qr(np.column_stack([np.ones(rows), rng.normal(size=(rows, columns))]))
    return basis[:, 1:]


def features(rng, N: int, d: int, rank: int, condition: float = 10.0) -> np.ndarray:
    """Centred part U diag(s) V^T of exact rank ``rank`` (singular values from 1 down to
    1/condition), plus an offset."""
    U = orthonormal_mean_free(rng, N, rank)
    V, _ = np.linalg.qr(rng.normal(size=(d, rank)))
    singular = np.geomspace(1.0, 1.0 / condition, rank) * np.sqrt(N)
    return (U * singular) @ V.T + rng.normal(size=d)


def balanced_labels(rng, N: int, C: int) -> np.ndarray:
    return rng.permutation(np.arange(N) % C)


def random_labels(rng, N: int, C: int) -> np.ndarray:
    """Unbalanced, classes 0 and 1 present, the others perhaps absent."""
    return rng.permutation(np.concatenate([[0, 1], rng.integers(0, C, N - 2)]))


# ------------------------------------------------------------------ against brute force
CASES = {  # name: (N, d, C, rank of the centred features)
    "N > d": (120, 10, 4, 10),
    "N < d": (12, 30, 3, 11),
    "rank-deficient": (80, 16, 4, 5),
    "unbalanced": (50, 8, 5, 8),
    "one sample per class": (6, 9, 6, 5),
}


@pytest.mark.parametrize("name", list(CASES))
def test_metrics_equal_brute_force(name):
    N, d, C, rank = CASES[name]
    rng = np.random.default_rng(len(name))
    X = features(rng, N, d, rank)
    y = (random_labels if name == "unbalanced" else balanced_labels)(rng, N, C)
    first, last = 2, 8
    assert_metrics_close(nclab_metrics(streamed(X, y, C), first, last),
                         brute_metrics(X, y, first, last))


def test_one_sample_per_class_has_no_within_class_covariance():
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(5, 7)), np.arange(5)
    moments = spectral.second_moments(*_arrays(streamed(X, y, 5)))
    assert not moments.within_cov.any()
    assert spectral.lidar(moments.within_cov, moments.between_cov) == pytest.approx(
        brute_lidar(X, y), rel=RTOL)


def _arrays(stats: CollapseStats):
    return stats.counts, stats.scaled_means(), stats.scaled_scatter()


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_float64_extreme_scales_give_the_metrics_of_scale_one(scale):
    rng = np.random.default_rng(4)
    X, y = features(rng, 60, 12, 12), balanced_labels(rng, 60, 3)
    at_one = nclab_metrics(streamed(X, y, 3), 2, 10)
    assert_metrics_close(nclab_metrics(streamed(X * scale, y, 3), 2, 10), at_one)
    assert_metrics_close(at_one, brute_metrics(X, y, 2, 10))


@pytest.mark.parametrize("scale", [1e-13, 1e13])
def test_float32_extreme_scales_give_the_metrics_of_scale_one(scale):
    rng = np.random.default_rng(5)
    X = features(rng, 60, 12, 12).astype(np.float32)
    y = balanced_labels(rng, 60, 3)
    scaled = X * np.float32(scale)
    assert np.isfinite(scaled).all() and scaled.dtype == np.float32
    assert_metrics_close(nclab_metrics(streamed(scaled, y, 3), 2, 10),
                         nclab_metrics(streamed(X, y, 3), 2, 10), rtol=1e-5)


# ------------------------------------------------------------------ exact properties
def test_isotropic_gaussian_rankme_is_close_to_d():
    rng = np.random.default_rng(6)
    N, d = 20_000, 8
    X = rng.normal(size=(N, d))
    moments = spectral.second_moments(*_arrays(streamed(X, np.zeros(N, dtype=int), 1, 4096)))
    value = spectral.rankme(moments.uncentred, N)
    assert d * (1 - 1e-3) < value < d
    assert value == pytest.approx(brute_rankme(X), rel=RTOL)


def equal_singular_values_rankme(rank: int, count: int) -> float:
    """Exactly: r values p = 1/r + eps, count - r values p = eps."""
    on, off = 1 / rank + EPSILON, EPSILON
    return float(np.exp(-(rank * on * np.log(on) + (count - rank) * off * np.log(off))))


@pytest.mark.parametrize(("N", "d", "rank"), [(50, 12, 4), (7, 20, 3), (30, 6, 6)])
def test_equal_singular_values_give_rank_up_to_epsilon(N, d, rank):
    rng = np.random.default_rng(N + d)
    U, _ = np.linalg.qr(rng.normal(size=(N, rank)))
    V, _ = np.linalg.qr(rng.normal(size=(d, rank)))
    X = 3.0 * U @ V.T
    moments = spectral.second_moments(*_arrays(streamed(X, np.zeros(N, dtype=int), 1)))
    expected = equal_singular_values_rankme(rank, min(N, d))
    assert spectral.rankme(moments.uncentred, N) == pytest.approx(expected, rel=1e-12)
    assert abs(expected - rank) < 1e-4  # the epsilon's whole effect


def test_lidar_of_a_collapsed_simplex_is_its_rank_up_to_epsilon():
    C, d = 5, 8
    simplex = np.eye(C)[:, :C] - 1.0 / C
    means = np.hstack([simplex, np.zeros((C, d - C))]) @ scipy.linalg.qr(
        np.random.default_rng(7).normal(size=(d, d)))[0]
    X = np.repeat(means, 3, axis=0)  # three identical samples per class: Sigma_W = 0
    y = np.repeat(np.arange(C), 3)
    moments = spectral.second_moments(*_arrays(streamed(X, y, C)))
    expected = equal_singular_values_rankme(C - 1, d)
    assert spectral.lidar(moments.within_cov, moments.between_cov) == pytest.approx(
        expected, rel=1e-10)


def test_alpha_of_an_exact_power_law():
    rng = np.random.default_rng(8)
    d, alpha = 40, 1.3
    V, _ = np.linalg.qr(rng.normal(size=(d, d)))
    covariance = (V * np.arange(1, d + 1) ** -alpha) @ V.T
    assert spectral.alpha_req(covariance, 1, d) == pytest.approx(alpha, rel=1e-10)
    assert spectral.alpha_req(covariance, 6, 100) == pytest.approx(alpha, rel=1e-10)


def test_explained_variance_of_a_diagonal_covariance():
    values = np.array([0.5, 4.0, 0.0, 1.5])
    curve = spectral.explained_variance(np.diag(values))
    np.testing.assert_allclose(curve, [4.0 / 6, 5.5 / 6, 1.0, 1.0], rtol=1e-15)
    assert curve[-1] == 1.0


def test_rank_deficiency_below_the_fit_range_cuts_it():
    rng = np.random.default_rng(9)
    X, y = features(rng, 90, 20, 7), balanced_labels(rng, 90, 3)
    moments = spectral.second_moments(*_arrays(streamed(X, y, 3)))
    got = spectral.alpha_req(moments.total, 2, 100, num_samples=90)
    assert got == pytest.approx(brute_alpha(X, 2, 7), rel=RTOL)


# ------------------------------------------------------------------ fuzz
@st.composite
def problems(draw):
    N = draw(st.integers(3, 40))
    d = draw(st.integers(2, 12))
    C = draw(st.integers(2, min(5, N)))
    rank = draw(st.integers(2, min(N - 1, d)))
    condition = 10.0 ** draw(st.floats(0, 3))
    exponent = draw(st.integers(-200, 200))
    seed = draw(st.integers(0, 2**32 - 1))
    batch = draw(st.integers(1, 16))
    balanced = draw(st.booleans())
    return N, d, C, rank, condition, exponent, seed, batch, balanced


@FUZZ
@given(problems())
def test_fuzz_metrics_equal_brute_force(problem):
    N, d, C, rank, condition, exponent, seed, batch, balanced = problem
    rng = np.random.default_rng(seed)
    X = features(rng, N, d, rank, condition)
    y = (balanced_labels if balanced else random_labels)(rng, N, C)
    got = nclab_metrics(streamed(X * 10.0**exponent, y, C, batch), 1, d)
    assert_metrics_close(got, brute_metrics(X, y, 1, d))


# ------------------------------------------------------------------ bad input
SYMMETRIC = np.array([[2.0, 1.0], [1.0, 3.0]])
BAD_CALLS = {
    "NaN": lambda: spectral.rankme(np.array([[np.nan, 0], [0, 1.0]]), 3),
    "infinite": lambda: spectral.explained_variance(np.diag([np.inf, 1.0])),
    "non-square": lambda: spectral.rankme(np.ones((2, 3)), 3),
    "one-dimensional": lambda: spectral.alpha_req(np.ones(4)),
    "empty": lambda: spectral.explained_variance(np.ones((0, 0))),
    "non-symmetric": lambda: spectral.rankme(np.array([[2.0, 1.0], [0.0, 3.0]]), 3),
    "indefinite": lambda: spectral.rankme(np.diag([1.0, -0.5]), 3),
    "complex": lambda: spectral.rankme(SYMMETRIC.astype(complex), 3),
    "strings": lambda: spectral.rankme(np.array([["a", "b"], ["b", "a"]]), 3),
    "negative num_samples": lambda: spectral.rankme(SYMMETRIC, -4),
    "fractional num_samples": lambda: spectral.rankme(SYMMETRIC, 2.5),
    "boolean num_samples": lambda: spectral.rankme(SYMMETRIC, True),
    "one sample, centred": lambda: spectral.rankme_centred(SYMMETRIC, 1),
    "zero features": lambda: spectral.rankme(np.zeros((3, 3)), 5),
    "constant features": lambda: spectral.rankme_centred(np.zeros((3, 3)), 5),
    "zero covariance": lambda: spectral.explained_variance(np.zeros((2, 2))),
    "too few ranks": lambda: spectral.alpha_req(SYMMETRIC),
    "empty fit range": lambda: spectral.alpha_req(SYMMETRIC, 5, 5),
    "zero first rank": lambda: spectral.alpha_req(SYMMETRIC, 0, 5),
    "zero delta": lambda: spectral.lidar(SYMMETRIC, SYMMETRIC, 0.0),
    "NaN delta": lambda: spectral.lidar(SYMMETRIC, SYMMETRIC, float("nan")),
    "boolean delta": lambda: spectral.lidar(SYMMETRIC, SYMMETRIC, True),
    "string delta": lambda: spectral.lidar(SYMMETRIC, SYMMETRIC, "1e-4"),
    "complex delta": lambda: spectral.lidar(SYMMETRIC, SYMMETRIC, np.complex128(1e-4)),
    "infinite delta": lambda: spectral.lidar(SYMMETRIC, SYMMETRIC, np.inf),
    "mismatched covariances": lambda: spectral.lidar(SYMMETRIC, np.eye(3)),
    "negative variance": lambda: spectral.lidar(np.diag([1.0, -1.0]), SYMMETRIC),
    "indefinite within": lambda: spectral.lidar(np.array([[1.0, 2.0], [2.0, 1.0]]), SYMMETRIC),
    "indefinite between": lambda: spectral.lidar(SYMMETRIC, np.diag([1.0, -0.5])),
    "coinciding means": lambda: spectral.lidar(SYMMETRIC, np.zeros((2, 2))),
    "identical features": lambda: spectral.lidar(np.zeros((2, 2)), np.zeros((2, 2))),
    "negative count": lambda: spectral.second_moments([2, -1], np.ones((2, 2)), np.eye(2)),
    "fractional count": lambda: spectral.second_moments([2, 0.5], np.ones((2, 2)), np.eye(2)),
    "no samples": lambda: spectral.second_moments([0, 0], np.ones((2, 2)), np.eye(2)),
    "counts and means": lambda: spectral.second_moments([2, 3, 1], np.ones((2, 2)), np.eye(2)),
    "means and scatter": lambda: spectral.second_moments([2, 3], np.ones((2, 2)), np.eye(3)),
    "overflow": lambda: spectral.second_moments([2, 3], np.full((2, 2), 1e200), np.eye(2)),
    "one class": lambda: spectral.spectral_metrics([4], np.ones((1, 2)), np.eye(2)),
    "one sample": lambda: spectral.spectral_metrics([1, 0], np.ones((2, 2)), np.zeros((2, 2))),
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_input_gets_one_line(name):
    with pytest.raises(NCInputError) as error:
        BAD_CALLS[name]()
    message = str(error.value)
    assert message and "\n" not in message




def test_rounding_of_many_rows_is_not_taken_for_a_dimension():
    """A Gram summed over N rows carries rounding up to about N eps lambda_max in a null
    direction (sqrt(N) eps typically): below max(N, d) eps lambda_max an eigenvalue is
    zero, so an eigenvalue of 10 eps is a dimension of a 2-row Gram, not of a 1,000-row one."""
    eps = np.finfo(np.float64).eps
    gram = np.diag([1.0, 10 * eps])
    assert spectral.rankme(gram, 1000) == pytest.approx(
        equal_singular_values_rankme(1, 2), rel=1e-14)
    assert spectral.rankme(gram, 2) == pytest.approx(
        entropy_rank(np.sqrt([1.0, 10 * eps])), rel=1e-14)
    assert spectral.alpha_req(np.diag([1.0, 0.5, 10 * eps]), 1, 3, num_samples=1000) == (
        pytest.approx(1.0, rel=1e-14))


# ---------------------------------------------------------------------------- wiring
def test_measure_with_spectral_gives_the_brute_force_values_and_the_cli_prints_them(
        tmp_path, capsys):
    import json

    from cli_helpers import run_cli

    import nclab

    rng = np.random.default_rng(11)
    labels = np.repeat(np.arange(5), 12)
    X = rng.normal(size=(5, 9))[labels] * 3 + rng.normal(size=(60, 9))
    result = nclab.measure(X * 1e-200, labels, spectral=True)
    sigma = np.linalg.svd(X, compute_uv=False)
    p = sigma / sigma.sum() + 1e-7
    assert math.isclose(result.rankme, float(np.exp(-(p * np.log(p)).sum())), rel_tol=1e-9)
    assert len(result.explained_variance) == 9 and result.explained_variance[-1] == 1.0
    assert "rankme" in result.scalars() and nclab.measure(X, labels).rankme is None
    np.savez(tmp_path / "f.npz", features=X, labels=labels)
    code, out, err = run_cli(["measure", tmp_path / "f.npz", "--spectral",
                              "--json", tmp_path / "m.json"], capsys)
    assert code == 0, err
    assert "lidar" in out
    saved = json.loads((tmp_path / "m.json").read_text())
    assert math.isclose(saved["rankme"], result.rankme, rel_tol=1e-9)
