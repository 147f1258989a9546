"""OOD scores (nclab.ood) against float64 brute forces written here, the detection metrics
against independent counts, the model path against the array path, and ``nclab ood``."""

import json

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from docs_helpers import documented
from reference import gaussian_classes
from torch import nn

import nclab.ood
from nclab.capture import features as capture_features
from nclab.core.errors import NCInputError
from nclab.ood import scores

EPS = np.finfo(np.float64).eps


# ------------------------------------------------------------------ brute forces
def brute_scores(H, y, W, b, X, k=None, alpha=1e-4, standardize=True):
    """Every score of the rows of X, fitted on (H, y), by explicit loops in float64."""
    H, X = np.asarray(H, np.float64), np.asarray(X, np.float64)
    N, d = H.shape
    classes = sorted(set(y.tolist()))
    means = {c: H[y == c].mean(axis=0) for c in classes}
    within = np.zeros((d, d))
    for h, c in zip(H, y, strict=True):
        within += np.outer(h - means[c], h - means[c])
    within /= N
    precision = np.linalg.pinv(within, rcond=d * EPS, hermitian=True)
    mu = H.mean(axis=0)
    std = H.std(axis=0)
    if standardize:
        std = np.where(std == 0, 1.0, std)
    else:
        std = np.ones(d)
    Z = (H - mu) / std
    _, s, vt = np.linalg.svd(Z - Z.mean(axis=0), full_matrices=False)
    share = np.cumsum(s**2) / np.sum(s**2)
    if k is None:
        k = next(i + 1 for i, v in enumerate(share) if v >= 0.9 - 1e-12)
    out = {m: [] for m in nclab.ood.METHODS}
    for x in X:
        out["mahalanobis"].append(-min((x - means[c]) @ precision @ (x - means[c])
                                       for c in classes))
        z = (x - mu) / std
        ratio = np.linalg.norm(vt[:k] @ z) / np.linalg.norm(z)
        out["neco"].append(ratio)
        if W is None:
            continue
        logits = W @ x + (b if b is not None else 0.0)
        top = logits.max()
        total = sum(np.exp(v - top) for v in logits)
        out["msp"].append(1.0 / total)
        out["energy"].append(top + np.log(total))
        out["neco_maxlogit"].append(ratio * top)
        w = W[int(np.argmax(logits))]
        out["nci"].append(w @ (x - mu) / np.linalg.norm(x - mu) + alpha * np.abs(x).sum())
    return {m: np.array(v) for m, v in out.items() if v}, k


def assert_close(got, want, rel=1e-9):
    want = np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=rel, atol=rel * max(np.abs(want).max(), 1e-300))


def data(seed=0, C=4, d=6, sizes=None, spread=0.5):
    rng = np.random.default_rng(seed)
    H, y = gaussian_classes(rng, C=C, d=d, sizes=sizes or [25] * C, spread=spread)
    W, b = rng.normal(size=(C, d)), rng.normal(size=C)
    X = np.concatenate([H[:7], 4 * rng.normal(size=(9, d))])
    return H, y, W, b, X


def fitted(H, y, W=None, b=None, **options):
    stats = nclab.CollapseStats(len(W) if W is not None else int(y.max()) + 1)
    stats.update(H, y)
    return nclab.ood.OODFit.from_stats(stats, W, b, **options)


# ------------------------------------------------------------------ the scores
@pytest.mark.parametrize("standardize", [True, False])
def test_every_score_matches_the_brute_force(standardize):
    H, y, W, b, X = data()
    fit = fitted(H, y, W, b, neco_standardize=standardize)
    got = fit.score(X)
    want, k = brute_scores(H, y, W, b, X, standardize=standardize)
    assert fit.methods == nclab.ood.METHODS and fit.k == k and fit.warnings == ()
    for method in nclab.ood.METHODS:
        assert_close(got[method], want[method])


@pytest.mark.parametrize("k", [1, 3, 6])
def test_neco_with_a_given_k_and_no_bias(k):
    H, y, W, _, X = data(seed=1)
    got = fitted(H, y, W, None, neco_k=k, nci_alpha=0.5).score(X)
    want, _ = brute_scores(H, y, W, None, X, k=k, alpha=0.5)
    for method in nclab.ood.METHODS:
        assert_close(got[method], want[method])


def test_neco_is_the_authors_standard_scaler_and_pca_pipeline():
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    H, y, W, b, X = data(seed=2, d=8)
    scaler = StandardScaler().fit(H)
    pca = PCA(H.shape[1]).fit(scaler.transform(H))
    z = scaler.transform(X)
    want = np.linalg.norm(pca.transform(z)[:, :3], axis=1) / np.linalg.norm(z, axis=1)
    got = fitted(H, y, W, b, neco_k=3).score(X)
    assert_close(got["neco"], want, rel=1e-8)
    assert_close(got["neco_maxlogit"], want * (X @ W.T + b).max(axis=1), rel=1e-8)


def test_rank_deficient_features_fewer_samples_than_dimensions():
    # N = 12 < d = 20: the within-class covariance has rank 9, the pseudo-inverse is used
    H, y, W, b, X = data(seed=3, C=3, d=20, sizes=[4, 4, 4])
    got = fitted(H, y, W, b).score(X)
    want, _ = brute_scores(H, y, W, b, X)
    for method in nclab.ood.METHODS:
        assert_close(got[method], want[method], rel=1e-8)


def test_a_constant_coordinate_is_left_unscaled_as_standard_scaler_does():
    H, y, W, b, X = data(seed=4)
    H[:, 2] = 0.0  # a dead unit over the fit set
    got = fitted(H, y, W, b).score(X)
    want, _ = brute_scores(H, y, W, b, X)
    assert_close(got["neco"], want["neco"])


@pytest.mark.parametrize("factor", [2.0**-480, 1e-150, 1e150, 2.0**480])
def test_geometric_scores_are_the_same_at_extreme_scales(factor):
    H, y, _, _, X = data(seed=5)
    want = fitted(H, y).score(X)
    got = fitted(H * factor, y).score(X * factor)
    assert set(got) == {"mahalanobis", "neco"}
    assert_close(got["neco"], want["neco"])
    assert_close(got["mahalanobis"], want["mahalanobis"])


def test_collapsed_classes_have_tiny_exact_mahalanobis_distances():
    # means of norm ~1e3, spread 1e-6: the expansion alone would cancel to noise of
    # order |mu|^2 / spread^2 * eps ~ 1e2; float64 means themselves are good to about
    # 1e-13 / 1e-6 relative, which bounds the agreement of any two float64 computations
    rng = np.random.default_rng(6)
    mu = 1e3 * rng.normal(size=(3, 5))
    y = np.repeat(np.arange(3), 20)
    H = mu[y] + 1e-6 * rng.normal(size=(60, 5))
    X = mu[[0, 1, 2]] + 1e-6 * rng.normal(size=(3, 5))
    got = fitted(H, y, methods=["mahalanobis"]).score(X)["mahalanobis"]
    want, _ = brute_scores(H, y, None, None, X)
    assert_close(got, want["mahalanobis"], rel=1e-5)
    assert np.all(got > -30)


def test_one_sample_per_class_leaves_mahalanobis_out_with_a_warning():
    rng = np.random.default_rng(7)
    H, y = rng.normal(size=(4, 3)), np.arange(4)
    W = rng.normal(size=(4, 3))
    fit = fitted(H, y, W)
    assert "mahalanobis" not in fit.methods and "neco" in fit.methods
    assert any("mahalanobis needs within-class variance" in w for w in fit.warnings)
    with pytest.raises(NCInputError, match="'mahalanobis' needs within-class variance"):
        fitted(H, y, W, methods=["mahalanobis"])


def test_score_functions_edge_values():
    logits = torch.tensor([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    assert scores.max_softmax(logits).tolist() == [1.0, pytest.approx(1 / 3)]
    assert scores.energy(logits).tolist() == [1000.0, pytest.approx(np.log(3))]
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    mean, ones = x[0].clone(), torch.ones(2, dtype=torch.float64)
    axis = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    # a feature at the mean: NECO 1 by definition, NCI's proximity term 0
    assert scores.neco(x, mean, ones, axis).tolist() == [1.0, pytest.approx(1 / np.sqrt(2))]
    weight = torch.eye(2, dtype=torch.float64)
    assert scores.nci(x, x, weight, mean, 0.0).tolist() == [0.0, pytest.approx(1 / np.sqrt(2))]


# ------------------------------------------------------------------ the metrics
def brute_metrics(pos, neg):
    """Mann-Whitney AUROC, step-wise average precision and FPR95 by counting."""
    auroc = np.mean([[1.0 if p > n else 0.5 if p == n else 0.0 for n in neg] for p in pos])
    thresholds = sorted(set(pos) | set(neg), reverse=True)
    ap, last_recall = 0.0, 0.0
    fpr95 = None
    for t in thresholds:
        tp, fp = sum(p >= t for p in pos), sum(n >= t for n in neg)
        recall = tp / len(pos)
        ap += (recall - last_recall) * tp / (tp + fp)
        last_recall = recall
        if fpr95 is None and recall >= 0.95:
            fpr95 = fp / len(neg)
    return {"auroc": auroc, "aupr": ap, "fpr95": fpr95}


@pytest.mark.parametrize("seed", range(4))
def test_metrics_equal_independent_counts_with_ties(seed):
    rng = np.random.default_rng(seed)
    pos = np.round(rng.normal(1.0, 1.0, size=40), 1)  # rounding makes ties
    neg = np.round(rng.normal(0.0, 1.0, size=33), 1)
    got = nclab.ood.detection_metrics(pos, neg)
    want = brute_metrics(pos.tolist(), neg.tolist())
    for name in nclab.ood.METRICS:
        assert got[name] == pytest.approx(want[name], rel=1e-12), name


def test_fpr95_by_hand():
    # 20 ID scores 1..20: TPR >= 0.95 first at threshold 2 (19 of 20 kept); the OOD
    # scores >= 2 are 19.5, 18.5 and 2: 3 of 5
    ids, ood = np.arange(1.0, 21.0), np.array([19.5, 18.5, 2.0, 1.5, 0.0])
    got = nclab.ood.detection_metrics(ids, ood)
    assert got["fpr95"] == 0.6
    # ID scores above each OOD score (a tie counts one half): 1, 2, 18.5, 19, 20
    assert got["auroc"] == pytest.approx((1 + 2 + 18.5 + 19 + 20) / 100)
    assert nclab.ood.detection_metrics([3.0, 2.0], [1.0])["fpr95"] == 0.0


def test_result_metrics_are_scikit_learns_on_its_own_scores():
    from sklearn.metrics import average_precision_score, roc_auc_score

    H, y, W, b, X = data(seed=8)
    result = nclab.ood.evaluate(H, y, W, b, ood={"x": X, "y": X[::2] + 1})
    for name in ("x", "y"):
        for method in result.methods:
            pos, neg = result.id_scores[method], result.ood_scores[name][method]
            truth = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
            metrics = result.metrics[name][method]
            assert metrics["auroc"] == roc_auc_score(truth, np.r_[pos, neg])
            assert metrics["aupr"] == average_precision_score(truth, np.r_[pos, neg])
    assert result.num_ood == {"x": 16, "y": 8} and result.num_id == len(H)


def test_fit_set_scores_the_evaluation_set_and_batches_do_not_matter():
    H, y, W, b, X = data(seed=9)
    train, train_y, test = H[::2], y[::2], H[1::2]
    one = nclab.ood.evaluate(test, None, W, b, ood={"far": X}, fit_features=train,
                             fit_labels=train_y, batch_size=5)
    want, _ = brute_scores(train, train_y, W, b, test)
    for method in one.methods:
        assert_close(one.id_scores[method], want[method])
    two = nclab.ood.evaluate(test, None, W, b, ood={"far": X}, fit_features=train,
                             fit_labels=train_y)
    assert one.metrics == two.metrics and one.num_fit == len(train)


# ------------------------------------------------------------------ from a model
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(5, 8), nn.Tanh())
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.body(x))


def loaders():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(60, 5, generator=g)
    y = torch.arange(60) % 3
    ids = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 60, 16)]
    far = [3 * torch.randn(10, 5, generator=g) for _ in range(2)]  # bare input tensors
    return ids, far


def test_model_path_equals_the_array_path():
    model, (ids, far) = Net(), loaders()
    streamed = nclab.ood.evaluate_model(model, ids, {"far": far})
    captured = capture_features(model, ids)
    far_features = capture_features(model, [(b, torch.zeros(len(b))) for b in far]).features
    W, b = model.head.weight.detach(), model.head.bias.detach()
    arrays = nclab.ood.evaluate(captured.features, captured.labels, W, b,
                                ood={"far": far_features})
    assert streamed.methods == arrays.methods and streamed.k == arrays.k
    for method in streamed.methods:
        assert_close(streamed.id_scores[method], arrays.id_scores[method], rel=1e-12)
        assert_close(streamed.ood_scores["far"][method], arrays.ood_scores["far"][method],
                     rel=1e-12)
    assert streamed.metrics == arrays.metrics
    assert model.training  # restored


def test_model_path_with_token_batches_and_a_fit_loader():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Embedding(11, 6), nn.Linear(6, 4))
    ids = torch.randint(0, 11, (8, 5))
    labels = torch.randint(0, 4, (8, 5))
    labels[0, :2] = -100  # ignored positions
    loader = [(ids[:4], labels[:4]), (ids[4:], labels[4:])]
    ood = [(torch.randint(0, 11, (3, 5)), torch.zeros(3, 5, dtype=torch.int64))]
    result = nclab.ood.evaluate_model(model, loader, {"tokens": ood}, fit_loader=loader,
                                      methods=["msp", "neco"], neco_k=2)
    captured = capture_features(model, loader)
    W, b = model[1].weight.detach(), model[1].bias.detach()
    arrays = nclab.ood.evaluate(captured.features, captured.labels, W, b,
                                ood={"tokens": capture_features(model, ood).features},
                                methods=["msp", "neco"], neco_k=2)
    assert result.num_id == 38 and result.num_ood == {"tokens": 15} and result.k == 2
    assert_close(result.id_scores["neco"], arrays.id_scores["neco"], rel=1e-12)


def test_model_path_bad_loaders_give_one_line():
    model, (ids, far) = Net(), loaders()
    with pytest.raises(NCInputError, match="one-shot iterator"):
        nclab.ood.evaluate_model(model, iter(ids), {"far": far})
    with pytest.raises(NCInputError, match="yielded no batches"):
        nclab.ood.evaluate_model(model, ids, {"far": []})
    with pytest.raises(NCInputError, match="ood_loaders is empty"):
        nclab.ood.evaluate_model(model, ids, {})


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("change, message", [
    ({"ood": {}}, "ood is empty"),
    ({"ood": [np.ones((3, 6))]}, "must be a dict"),
    ({"ood": {"a": np.ones((3, 5))}}, "OOD set 'a' has feature dimension 5"),
    ({"ood": {"a": np.full((3, 6), np.nan)}}, "OOD set 'a' features contain NaN"),
    ({"ood": {"a": np.zeros((0, 6))}}, "OOD set 'a' has no rows"),
    ({"ood": {"a": np.ones(6)}}, "must be 2-D"),
    ({"weight": None, "methods": ["nci"]}, "'nci' needs the classifier"),
    ({"methods": ["odin"]}, "unknown OOD method 'odin'"),
    ({"methods": []}, "no OOD method given"),
    ({"num_classes": 0}, "num_classes must be an integer >= 1"),
    ({"neco_k": 7}, "at most the feature dimension d = 6"),
    ({"neco_k": 0}, "neco_k must be an integer >= 1"),
    ({"nci_alpha": float("nan")}, "nci_alpha must be a finite number"),
    ({"id_labels": None}, "id_labels are needed"),
    ({"weight": np.ones((4, 5))}, "weight must have shape"),
    ({"fit_features": np.ones((4, 6))}, "fit_features given without fit_labels"),
])
def test_bad_input_gives_one_line(change, message):
    H, y, W, b, X = data()
    arguments = {"id_labels": y, "weight": W, "ood": {"a": X}, **change}
    labels = arguments.pop("id_labels")
    with pytest.raises(NCInputError, match=message) as info:
        nclab.ood.evaluate(H, labels, **arguments)
    assert "\n" not in str(info.value)


def test_scores_beyond_float64_are_refused():
    H, y, W, b, _ = data()
    with pytest.raises(NCInputError, match="not finite"):
        nclab.ood.evaluate(H, y, W * 1e300, ood={"a": H * 1e10})


# ------------------------------------------------------------------ the command line
@pytest.fixture
def files(tmp_path):
    H, y, W, b, X = data(seed=10)
    np.savez(tmp_path / "id.npz", features=H.astype(np.float32), labels=y, weight=W, bias=b)
    np.savez(tmp_path / "far.npz", features=X)
    np.savez(tmp_path / "near.npz", features=H[:10] + 0.1)
    return tmp_path, H.astype(np.float32), y, W, b, X


def test_cli_writes_what_evaluate_gives(files, capsys):
    path, H, y, W, b, X = files
    code, out, err = run_cli(["ood", path / "id.npz", path / "far.npz", path / "near.npz",
                              "--json", path / "o.json", "--neco-k", "2"], capsys)
    assert code == 0, err
    data_ = json.loads((path / "o.json").read_text())
    want = nclab.ood.evaluate(H, y, W, b, ood={"far": X, "near": H[:10] + 0.1}, neco_k=2)
    assert data_["k"] == 2 and data_["methods"] == list(nclab.ood.METHODS)
    far = data_["ood"][str(path / "far.npz")]
    assert far["num_samples"] == 16
    for method in nclab.ood.METHODS:
        for metric in nclab.ood.METRICS:
            assert far[method][metric] == pytest.approx(want.metrics["far"][method][metric])
    assert "neco_maxlogit" in out and "FPR95" in out


def test_cli_without_classifier_and_with_a_fit_file(files, capsys):
    path, H, y, W, b, X = files
    np.savez(path / "plain.npz", features=H, labels=y)
    np.savez(path / "train.npz", features=H[::2], labels=y[::2])
    code, _, err = run_cli(["ood", path / "plain.npz", path / "far.npz", "--fit",
                            path / "train.npz", "--json", path / "o.json"], capsys)
    data_ = json.loads((path / "o.json").read_text())
    assert code == 0 and data_["methods"] == ["mahalanobis", "neco"]
    assert data_["num_fit"] == len(H[::2]) and data_["fit_file"] == str(path / "train.npz")
    assert "need the classifier" in err and err.count("\n") == 1


@pytest.mark.parametrize("extra, message", [
    (["--methods", "msp"], "'msp' needs the classifier"),
    (["--methods", "bogus"], "unknown OOD method"),
    (["--neco-k", "99"], "at most the feature dimension"),
    (["--nci-alpha", "-1"], "--nci-alpha must be >= 0"),
])
def test_cli_bad_options(files, capsys, extra, message):
    path = files[0]
    np.savez(path / "plain.npz", features=files[1], labels=files[2])
    code, _, err = run_cli(["ood", path / "plain.npz", path / "far.npz", *extra, "--json",
                            path / "o.json"], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (path / "o.json").exists()


@pytest.mark.parametrize("arrays, message", [
    ({"features": np.ones((4, 5))}, "has feature dimension 5"),
    ({"features": np.full((4, 6), np.inf)}, "contain NaN or inf"),
    ({"features": np.zeros((0, 6))}, "has no rows"),
    ({"other": np.ones((4, 6))}, "no array named 'features'"),
])
def test_cli_bad_ood_files(files, capsys, arrays, message):
    path = files[0]
    np.savez(path / "bad.npz", **arrays)
    code, _, err = run_cli(["ood", path / "id.npz", path / "far.npz", path / "bad.npz",
                            "--json", path / "o.json"], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert err.count("\n") == 1 and not (path / "o.json").exists()


def test_cli_the_same_ood_file_twice_and_a_missing_one(files, capsys):
    path = files[0]
    code, _, err = run_cli(["ood", path / "id.npz", path / "far.npz", path / "far.npz"], capsys)
    assert code == 2 and "given twice" in err
    code, _, err = run_cli(["ood", path / "id.npz", path / "nope.npz"], capsys)
    assert code == 2 and "no such file" in err


# ------------------------------------------------------------------ the docs' experiment
def test_documented_experiment_prints_what_the_page_shows(capsys):
    code, shown = documented("ood.md", "## A collapsed set against a far-OOD set")
    namespace = {}
    exec(compile(code, "docs/ood.md", "exec"), namespace)
    assert capsys.readouterr().out == shown
    metrics = namespace["result"].metrics["far"]
    assert metrics["neco"]["auroc"] == 1.0 and metrics["msp"]["auroc"] < 0.7
