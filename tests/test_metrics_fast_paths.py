"""The cheaper factorizations of compute_metrics give the values of the direct forms."""

import numpy as np
import pytest

from nclab.core import geometry


def direct_pinv_trace(sigma_w, centred, max_rank):
    """Tr(Sigma_W Sigma_B^+) from the SVD of the centred means (the direct form)."""
    count, dim = centred.shape
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    eigen = singular**2 / count
    keep = eigen > max(dim, count) * np.finfo(np.float64).eps * eigen[0]
    keep[max_rank:] = False
    v = vt[keep]
    return float(sum(v[k] @ sigma_w @ v[k] / eigen[keep][k] for k in range(len(v))))


def direct_gap(left, right):
    """|| G/||G|| - (I - 11^T/C)/sqrt(C-1) ||_F with G formed whole."""
    count = left.shape[0]
    gram = left @ right.T
    ideal = (np.eye(count) - 1.0 / count) / np.sqrt(count - 1)
    return float(np.linalg.norm(gram / np.linalg.norm(gram) - ideal))


def spd(dim, rng):
    a = rng.standard_normal((dim, dim))
    return a @ a.T / dim


def refuse(monkeypatch, *functions):
    """Make each (module, name) fail the test if called: the path must not take it."""
    for module, name in functions:
        def refused(*args, _name=name, **kwargs):
            raise AssertionError(f"the {_name} was taken")

        monkeypatch.setattr(module, name, refused)


@pytest.mark.parametrize("count, dim, spread", [(90, 40, 1.0), (90, 40, 1e-2),
                                                (30, 40, 1.0), (60, 20, 1e-7)])
def test_pinv_trace_equals_the_svd_form(count, dim, spread):
    rng = np.random.default_rng(count + dim)
    # means with singular values from 1 down to ``spread``: the eigh of the Gram for
    # well-conditioned ones, the SVD for the rest (spread 1e-7 is below its bound)
    u, _ = np.linalg.qr(rng.standard_normal((count, min(count, dim))))
    v, _ = np.linalg.qr(rng.standard_normal((dim, min(count, dim))))
    centred = (u * np.geomspace(1.0, spread, min(count, dim))) @ v.T * 3.0
    centred -= centred.mean(axis=0)
    sigma_w = spd(dim, rng)
    max_rank = count - 1
    got = geometry.pseudo_inverse_trace(sigma_w, centred, max_rank)
    assert got == pytest.approx(direct_pinv_trace(sigma_w, centred, max_rank), rel=1e-10)


def test_well_conditioned_means_with_more_classes_than_dims_take_no_svd(monkeypatch):
    rng = np.random.default_rng(1)
    centred = rng.standard_normal((50, 8))
    centred -= centred.mean(axis=0)
    sigma_w = spd(8, rng)
    want = direct_pinv_trace(sigma_w, centred, 49)
    refuse(monkeypatch, (np.linalg, "svd"))
    assert geometry.pseudo_inverse_trace(sigma_w, centred, 49) == pytest.approx(want,
                                                                               rel=1e-12)
    dead = centred.copy()
    dead[:, 3] = 0.0  # a dead unit: a zero eigenvalue, so the exact SVD is needed
    with pytest.raises(AssertionError, match="svd was taken"):
        geometry.pseudo_inverse_trace(sigma_w, dead, 49)


@pytest.mark.parametrize("count, dim", [(80, 20), (300, 64), (21, 19)])
def test_etf_gap_without_the_dense_gram_equals_it(count, dim):
    rng = np.random.default_rng(count)
    means = rng.standard_normal((count, dim))
    weights = means + 0.3 * rng.standard_normal((count, dim))
    for left, right in ((means, means), (weights, means), (weights, weights)):
        assert geometry.simplex_gap(left, right) == pytest.approx(direct_gap(left, right),
                                                                  rel=1e-12)


@pytest.mark.parametrize("weak", [0.0, 1e-4])
def test_means_whose_column_norms_rule_out_the_gram_skip_its_eigenvalues(monkeypatch, weak):
    # a unit with (almost) no between-class spread: the ratio of the Gram's diagonal is
    # weak**2 < 1e-5, so its eigenvalue ratio is too; its eigenvalues would be discarded
    rng = np.random.default_rng(2)
    centred = rng.standard_normal((50, 8))
    centred[:, 5] *= weak
    centred -= centred.mean(axis=0)
    sigma_w = spd(8, rng)
    with monkeypatch.context() as without_the_test:  # eigenvalues, rejected, then the SVD
        without_the_test.setattr(geometry, "_gram_surely_ill_conditioned", lambda _: False)
        eigenvalues_then_svd = geometry.pseudo_inverse_trace(sigma_w, centred, 49)
    refuse(monkeypatch, (np.linalg, "eigvalsh"), (np.linalg, "eigh"))
    got = geometry.pseudo_inverse_trace(sigma_w, centred, 49)
    assert got == eigenvalues_then_svd  # the same SVD as before: bit for bit
    assert got == pytest.approx(direct_pinv_trace(sigma_w, centred, 49), rel=1e-10)


def brute_pair_sums(means, variances, weight):
    """Every sum of geometry.pair_sums over the pairs c < c', one pair at a time."""
    count = len(means)
    offset = 1.0 / (count - 1)
    found = {"cdnv": 0.0, "chord": 0.0, "chord_square": 0.0, "log": 0.0, "log_square": 0.0}
    cosines = {"means": [], "weights": []}
    for i in range(count):
        for j in range(i + 1, count):
            distance = means[i] - means[j]
            found["cdnv"] += (variances[i] + variances[j]) / (2 * distance @ distance)
            u, v = (means[k] / np.linalg.norm(means[k]) for k in (i, j))
            chord = np.linalg.norm(u - v)
            found["chord"] += chord
            found["chord_square"] += chord**2
            found["log"] -= np.log(chord)
            found["log_square"] += np.log(chord) ** 2
            for name, rows in (("means", means), ("weights", weight)):
                cosines[name].append(rows[i] @ rows[j] / np.linalg.norm(rows[i])
                                     / np.linalg.norm(rows[j]) + offset)
    for name, values in cosines.items():
        found[f"{name}.shifted"] = float(np.sum(values))
        found[f"{name}.absolute"] = float(np.abs(values).sum())
        found[f"{name}.spread"] = float(np.std(values))
    return found


def listed_sums(sums):
    """The sums of a geometry.PairSums under the names of brute_pair_sums."""
    got = {"cdnv": sums.cdnv, "chord": sums.chord, "chord_square": sums.chord_square,
           "log": sums.log, "log_square": sums.log_square}
    for name, angles in (("means", sums.means), ("weights", sums.weights)):
        got.update({f"{name}.shifted": angles.shifted, f"{name}.absolute": angles.absolute,
                    f"{name}.spread": angles.spread(sums.pairs)})
    return got


@pytest.mark.parametrize("block", [1, 2, 3, 5, 6, 11, 12])
def test_pair_sums_of_whole_diagonal_tiles_equal_the_pairs_one_by_one(block):
    # tiles on the diagonal are used whole (every pair twice, plus a masked diagonal);
    # 11 classes: one-row last tiles (block 2, 5), a lone tile (block 11, 12)
    rng = np.random.default_rng(block)
    means = rng.standard_normal((11, 6))
    weight = means + 0.5 * rng.standard_normal((11, 6))
    variances = rng.uniform(0.5, 2.0, 11)
    sums = geometry.pair_sums(means, variances, weight, block=block)
    got = listed_sums(sums)
    want = brute_pair_sums(means, variances, weight)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-14), name


@pytest.mark.parametrize("dim", [6, 12])
@pytest.mark.parametrize("block", [5, 11, 12])
def test_a_whole_c_by_c_gram_is_formed_once_for_the_pairs_and_the_etf_gaps(dim, block):
    # 11 classes: with d >= 10 and one tile (block >= 11) the pass over pairs forms the
    # Grams of the scaled means and of W / s whole, and the ETF gaps read the same ones
    rng = np.random.default_rng(dim + block)
    means = rng.standard_normal((11, dim)) * 3
    weight = means + 0.5 * rng.standard_normal((11, dim))
    variances = rng.uniform(0.5, 2.0, 11)
    shared = {}
    sums = geometry.pair_sums(means, variances, weight, block=block, shared=shared)
    got = listed_sums(sums)
    for name, value in brute_pair_sums(means, variances, weight).items():
        assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-14), name
    dense = dim >= 10 and block >= 11
    assert geometry.simplex_gap(means, means, block=block, shared=shared) == pytest.approx(
        direct_gap(means, means), rel=1e-12)
    whole = [key for key in shared if key[1] == "outer gram"]
    assert len(whole) == (2 if dense else 0)  # a Gram nobody reads again is not kept
    for key in whole:
        kept, gram = shared[key]
        assert geometry.simplex_gap(kept, kept, shared=shared) == pytest.approx(
            direct_gap(kept, kept), rel=1e-12)
        shared[key] = (kept, gram + np.diag(rng.uniform(1.0, 2.0, 11)))  # read, not remade
        assert geometry.simplex_gap(kept, kept, shared=shared) != pytest.approx(
            direct_gap(kept, kept), rel=1e-3)


def test_nc1_leaves_its_gram_to_the_etf_gaps():
    rng = np.random.default_rng(3)
    centred = rng.standard_normal((50, 8))
    centred -= centred.mean(axis=0)
    sigma_w = spd(8, rng)
    shared = {}
    got = geometry.pseudo_inverse_trace(sigma_w, centred, 49, shared)
    assert got == pytest.approx(direct_pinv_trace(sigma_w, centred, 49), rel=1e-12)
    keys = [key for key in shared if key[1] == "gram"]
    assert len(keys) == 1  # the d x d Gram of the scaled means, formed by nc1
    kept, gram = shared[keys[0]]
    scale = geometry.power_of_two_scale(centred)
    np.testing.assert_allclose(gram, (centred / scale).T @ (centred / scale), rtol=1e-14)
    assert geometry.simplex_gap(centred, centred, shared=shared) == pytest.approx(
        direct_gap(centred, centred), rel=1e-12)
    # the gap reads that Gram (its normaliser) instead of forming it again
    shared[keys[0]] = (kept, 4.0 * gram)
    assert geometry.simplex_gap(centred, centred, shared=shared) != pytest.approx(
        direct_gap(centred, centred), rel=1e-3)


@pytest.mark.parametrize("classes, closed", [(20, False), (32, False), (33, True)])
def test_equiangularity_takes_the_closed_form_only_beyond_four_classes_per_dim(
        monkeypatch, classes, closed):
    from nclab import CollapseStats, compute_metrics

    rng = np.random.default_rng(classes)
    dim = 8
    means = rng.standard_normal((classes, dim)) * 3
    labels = np.arange(classes * 4) % classes
    stats = CollapseStats(classes).update(means[labels] + rng.standard_normal((len(labels), dim)),
                                          labels)
    weight = means + 0.3 * rng.standard_normal((classes, dim))
    calls = []
    original = geometry.cosine_spread
    monkeypatch.setattr(geometry, "cosine_spread", lambda v: calls.append(1) or original(v))
    got = compute_metrics(stats, weight)
    assert bool(calls) == closed
    centred = stats.means - stats.means.mean(axis=0)
    for vectors, value in ((centred, got.equiangularity_means),
                           (weight, got.equiangularity_weights)):
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        cosines = (unit @ unit.T)[np.triu_indices(classes, 1)]
        assert value == pytest.approx(np.std(cosines), rel=1e-10)


def test_simplex_gaps_old_grams_keyword_still_works_and_warns():
    rng = np.random.default_rng(4)
    means = rng.standard_normal((30, 8))
    with pytest.warns(DeprecationWarning, match="shared="):
        got = geometry.simplex_gap(means, means, grams={})
    assert got == pytest.approx(direct_gap(means, means), rel=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_ill_conditioned_full_rank_means_take_no_singular_vectors(monkeypatch, backend):
    # eigenvalue ratio 1e-8 (below the Gram's bound, far above the truncation floor): the
    # trace comes from the triangular factor's inverse, with the SVD form's value
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    u, _ = np.linalg.qr(rng.standard_normal((200, 30)))
    v, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    centred = (u * np.geomspace(1.0, 1e-4, 30)) @ v.T * 5.0
    centred -= centred.mean(axis=0)
    sigma_w = spd(30, rng)
    want = direct_pinv_trace(sigma_w, centred, 199)
    refuse(monkeypatch, (np.linalg, "svd"), (torch.linalg, "svd"))
    if backend == "torch":
        sigma_w, centred = torch.from_numpy(sigma_w), torch.from_numpy(centred)
    got = geometry.pseudo_inverse_trace(sigma_w, centred, 199)
    assert got == pytest.approx(want, rel=1e-11)
    # a cap below d needs the singular pairs: the truncated form, with the SVD's value
    monkeypatch.undo()
    capped = geometry.pseudo_inverse_trace(sigma_w, centred, 20)
    assert capped == pytest.approx(direct_pinv_trace(np.asarray(sigma_w), np.asarray(centred),
                                                     20), rel=1e-10)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("count, dim, spread", [(90, 40, 1.0), (90, 40, 1e-2),
                                                (1000, 512, 0.5)])
def test_well_conditioned_means_with_more_classes_than_dims_take_no_eigenvectors(
        monkeypatch, backend, count, dim, spread):
    # eigenvalue ratios 1, 1e-4 and 0.25, all kept: the Cholesky solve of the Gram gives
    # the SVD form's value, with neither the SVD nor an eigh (nor the QR of the means)
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(count + dim)
    u, _ = np.linalg.qr(rng.standard_normal((count, dim)))
    v, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    centred = (u * np.geomspace(1.0, spread, dim)) @ v.T * 3.0
    centred -= centred.mean(axis=0)
    sigma_w = spd(dim, rng)
    want = direct_pinv_trace(sigma_w, centred, count - 1)
    for module in (np.linalg, torch.linalg):
        refuse(monkeypatch, (module, "svd"), (module, "eigh"), (module, "qr"))
    if backend == "torch":
        sigma_w, centred = torch.from_numpy(sigma_w), torch.from_numpy(centred)
    got = geometry.pseudo_inverse_trace(sigma_w, centred, count - 1)
    assert got == pytest.approx(want, rel=1e-11)


def means_with_spectrum(count, dim, spread, weights, rng):
    """(count, dim) means with weights^T M = 0 and nonzero singular values from 3 down to
    3 * spread (count - 1 of them)."""
    unit = weights / np.linalg.norm(weights)
    basis, _ = np.linalg.qr(np.column_stack([unit, rng.standard_normal((count, count - 1))]))
    v, _ = np.linalg.qr(rng.standard_normal((dim, count - 1)))
    return (basis[:, 1:] * np.geomspace(3.0, 3.0 * spread, count - 1)) @ v.T


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("count, dim, spread", [(2, 5, 1e-2), (30, 40, 1e-2), (30, 40, 1.0),
                                                (100, 512, 1e-2), (100, 512, 0.3)])
def test_centred_means_with_fewer_classes_than_dims_take_no_svd(monkeypatch, backend,
                                                                weighted, count, dim, spread):
    # eigenvalue ratios 1e-4, 1 and 0.09 of the deflated Gram: its Cholesky inverse gives
    # the SVD form's value, with neither the SVD nor an eigh
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(count + dim + weighted)
    weights = rng.integers(1, 50, count).astype(float) if weighted else np.ones(count)
    centred = means_with_spectrum(count, dim, spread, weights, rng)
    sigma_w = spd(dim, rng)
    want = direct_pinv_trace(sigma_w, centred, count - 1)
    for module in (np.linalg, torch.linalg):
        refuse(monkeypatch, (module, "svd"), (module, "eigh"))
    if backend == "torch":
        sigma_w, centred = torch.from_numpy(sigma_w), torch.from_numpy(centred)
    got = geometry.pseudo_inverse_trace(sigma_w, centred, count - 1, centring=weights)
    assert got == pytest.approx(want, rel=1e-11)


@pytest.mark.parametrize("spread", [1e-4, 1e-7])
def test_ill_conditioned_centred_means_with_few_classes_take_the_svd(monkeypatch, spread):
    # eigenvalue ratios 1e-8 and 1e-14 of the deflated Gram: below its bound, so the
    # exact SVD decides (at 1e-14 the Gram's eigenvalue would be mostly rounding)
    rng = np.random.default_rng(5)
    weights = np.ones(40)
    centred = means_with_spectrum(40, 64, spread, weights, rng)
    sigma_w = spd(64, rng)
    want = direct_pinv_trace(sigma_w, centred, 39)
    assert geometry.pseudo_inverse_trace(sigma_w, centred, 39, centring=weights) == \
        pytest.approx(want, rel=1e-9)
    refuse(monkeypatch, (np.linalg, "svd"))
    with pytest.raises(AssertionError, match="svd was taken"):
        geometry.pseudo_inverse_trace(sigma_w, centred, 39, centring=weights)


@pytest.mark.parametrize("weighted_mean", [False, True])
def test_compute_metrics_gives_nc1_of_few_classes_without_an_svd(monkeypatch, weighted_mean):
    from nclab import CollapseStats, compute_metrics

    rng = np.random.default_rng(6)
    classes, dim = 12, 40
    means = rng.standard_normal((classes, dim)) * 4
    labels = rng.integers(0, classes, 600)
    features = means[labels] + rng.standard_normal((len(labels), dim))
    stats = CollapseStats(classes).update(features, labels)
    # float64 brute force from the rows
    counts = np.bincount(labels, minlength=classes)
    class_means = np.stack([features[labels == c].mean(0) for c in range(classes)])
    centre = counts @ class_means / len(labels) if weighted_mean else class_means.mean(0)
    residuals = features - class_means[labels]
    sigma_w = residuals.T @ residuals / len(labels)
    want = direct_pinv_trace(sigma_w, class_means - centre, classes) / classes
    refuse(monkeypatch, (np.linalg, "svd"))
    got = compute_metrics(stats, weighted_mean=weighted_mean).nc1
    assert got == pytest.approx(want, rel=1e-10)


def hadamard(order):
    """An orthogonal matrix whose entries all have magnitude 1 / sqrt(order) (order a
    power of two): it spreads every eigenvalue evenly over the diagonal."""
    matrix = np.ones((1, 1))
    while len(matrix) < order:
        matrix = np.block([[matrix, matrix], [matrix, -matrix]])
    return matrix / np.sqrt(order)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("ratio, rotated, path", [
    (1e-3, True, "certified"),  # ||G||_F ||G^-1||_F about sqrt(15) / ratio: below 1e5
    (2e-5, True, "kept"),  # above 1e5 and the pivots' bound below: the eigenvalues keep it
    (5e-6, True, "refused"),  # ... and refuse it
    (1e-7, False, "surely refused"),  # a diagonal G: the pivots' bound is the ratio itself
])
def test_a_gram_is_inverted_only_above_the_eigenvalue_ratio(monkeypatch, backend, ratio,
                                                            rotated, path):
    torch = pytest.importorskip("torch")
    basis = hadamard(16) if rotated else np.eye(16)
    gram = (basis * np.r_[7.0, np.full(15, 7.0 * ratio)]) @ basis.T
    gram = (gram + gram.T) / 2
    if backend == "torch":
        gram = torch.from_numpy(gram)
    calls = []
    for module in (np.linalg, torch.linalg):
        original = module.eigvalsh
        monkeypatch.setattr(module, "eigvalsh",
                            lambda x, _f=original: calls.append(1) or _f(x))
    inverted = []
    original_inverse = torch.cholesky_inverse
    monkeypatch.setattr(torch, "cholesky_inverse",
                        lambda x, **kw: inverted.append(1) or original_inverse(x, **kw))
    inverse = geometry._well_conditioned_inverse(gram)
    assert bool(calls) == (path in ("kept", "refused"))
    assert bool(inverted) == (path != "surely refused")
    if path in ("refused", "surely refused"):
        assert inverse is None
        return
    assert type(inverse) is type(gram)
    np.testing.assert_allclose(np.asarray(inverse) @ np.asarray(gram), np.eye(16),
                               atol=1e-9)


def test_a_gram_whose_inverse_diagonal_rules_it_out_takes_no_eigenvalues(monkeypatch):
    # pivots 1 and 0.01: their bound, max G_ii / min pivot = 1e4, cannot refuse it; the
    # inverse's, max G_ii max (G^-1)_jj = 1e6, can (the eigenvalue ratio is about 1e-6)
    gram = np.array([[1.0, np.sqrt(99.99)], [np.sqrt(99.99), 100.0]])
    values = np.linalg.eigvalsh(gram)
    assert values[0] / values[-1] < 1e-5
    refuse(monkeypatch, (np.linalg, "eigvalsh"))
    assert geometry._well_conditioned_inverse(gram) is None


def test_a_gram_that_is_not_positive_definite_is_not_inverted():
    gram = np.diag([2.0, 1.0, 0.0])
    assert geometry._well_conditioned_inverse(gram) is None
    assert geometry._well_conditioned_inverse(np.diag([2.0, 1.0, -1.0])) is None
