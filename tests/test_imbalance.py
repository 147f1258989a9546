"""Imbalanced classes: the long-tail subsampler, its option, the metrics of definitions §12."""

import itertools
import json
import math

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from torch_threads import one_thread  # noqa: F401
from train_helpers import TINY, TINY_ARGS

from nclab.capture import features as capture_features
from nclab.core.errors import NCInputError
from nclab.core.imbalance import (
    group_accuracies,
    imbalance_metrics,
    minority_collapse_means,
    minority_collapse_weights,
    seli_distance_means,
    seli_distance_weights,
    seli_grams,
)
from nclab.data import load_dataset
from nclab.data.base import ArrayDataset
from nclab.data.imbalance import Imbalance, long_tail, long_tail_indices
from nclab.train import TrainConfig, Trainer
from nclab.ufm import RegularizedUFM

pytestmark = pytest.mark.usefixtures("one_thread")


def toy_split(counts, dim=3, seed=0):
    """An ArrayDataset with ``counts[c]`` samples of class c, shuffled; x[i, 0] = i."""
    labels = np.repeat(np.arange(len(counts)), counts)
    labels = labels[np.random.default_rng(seed).permutation(len(labels))]
    x = np.zeros((len(labels), dim), dtype=np.float32)
    x[:, 0] = np.arange(len(labels))
    return ArrayDataset(torch.from_numpy(x), torch.from_numpy(labels), len(counts), "toy")


# ---------------------------------------------------------------- the profiles


def test_step_profile_counts_exactly():
    split, info = long_tail(toy_split([50] * 10), Imbalance.parse("step:0.1,3"), seed=0)
    assert split.class_counts().tolist() == [50] * 7 + [5] * 3
    assert info == {"profile": "step:0.1,3", "counts": [50] * 7 + [5] * 3,
                    "minority": [7, 8, 9], "largest": 50}


def test_exponential_profile_counts_exactly():
    split, info = long_tail(toy_split([100] * 5), Imbalance.parse("exp:0.01"), seed=0)
    expected = [math.floor(100 * 0.01 ** (c / 4) + 0.5) for c in range(5)]  # Cui et al.
    assert expected == [100, 32, 10, 3, 1]
    assert split.class_counts().tolist() == expected == info["counts"]
    assert info["minority"] == [2, 3, 4]  # the last ceil(C/2) classes


def test_the_largest_count_is_the_smallest_class_available():
    split, info = long_tail(toy_split([30, 20, 25, 40]), Imbalance.parse("step:0.5,1"))
    assert split.class_counts().tolist() == [20, 20, 20, 10] and info["largest"] == 20


def test_kept_samples_are_original_rows_in_order_drawn_by_seed():
    original = toy_split([40] * 4)
    profile = Imbalance.parse("step:0.25,2")
    kept, _ = long_tail(original, profile, seed=3)
    index = kept.x[:, 0].long()
    assert torch.equal(original.y[index], kept.y)  # each kept row keeps its label
    assert (index.diff() > 0).all()  # the split's order
    again, _ = long_tail(original, profile, seed=3)
    other, _ = long_tail(original, profile, seed=4)
    assert torch.equal(again.x, kept.x)
    assert not torch.equal(other.x, kept.x)
    assert other.class_counts().tolist() == kept.class_counts().tolist()


def test_indices_are_a_uniform_draw_within_each_class():
    labels = np.repeat([0, 1], 10)
    profile = Imbalance.parse("step:0.5,1")
    chosen = np.zeros(20)
    for seed in range(200):
        keep, _ = long_tail_indices(labels, 2, profile, seed)
        chosen[keep] += 1
    assert (chosen[:10] == 200).all()  # the majority class keeps everything
    assert 60 < chosen[10:].min() and chosen[10:].max() < 140  # each minority sample ~ 1/2


def test_load_dataset_leaves_the_test_split_untouched_and_records_the_draw():
    options = dict(TINY.dataset_options, classes=[0, 1, 2, 3], per_class_test=10, seed=1)
    plain = load_dataset("gaussian", **options)
    tailed = load_dataset("gaussian", imbalance="step:0.1,2", **options)
    assert torch.equal(plain.test.x, tailed.test.x) and torch.equal(plain.test.y, tailed.test.y)
    smallest = int(plain.train.class_counts().min())
    minority = round(0.1 * smallest)
    assert tailed.train.class_counts().tolist() == [smallest] * 2 + [minority] * 2
    assert tailed.info["imbalance"]["counts"] == tailed.train.class_counts().tolist()
    with pytest.raises(NCInputError, match="real targets"):
        load_dataset("teacher", imbalance="exp:0.5")


@pytest.mark.parametrize(("text", "message"), [
    ("step:2,3", "R must lie in"), ("exp:0", "R must lie in"), ("exp:-0.5", "R must lie in"),
    ("exp:inf", "R must lie in"), ("foo:1", "unknown profile 'foo'"),
    ("step:0.1", "is not step:R,K"), ("exp:0.1,2", "is not exp:R"), ("step:0.1,0", "K must"),
    ("step:0.1,1.5", "K must be an integer"), ("step:x,2", "must be a number"), ("", "profile"),
])
def test_bad_profile_texts_are_one_line(text, message):
    with pytest.raises(NCInputError, match=message) as error:
        Imbalance.parse(text)
    assert "\n" not in str(error.value)


def test_profiles_that_do_not_fit_the_classes_are_refused():
    with pytest.raises(NCInputError, match="K = 4 minority classes must lie in 1..C-1 = 1..3"):
        long_tail(toy_split([10] * 4), Imbalance.parse("step:0.5,4"))
    with pytest.raises(NCInputError, match="class 3 would keep 0 of 10 samples; raise R or use "
                                           "at least 50"):
        long_tail(toy_split([10] * 4), Imbalance.parse("step:0.01,1"))
    with pytest.raises(NCInputError, match="class 1 would keep 0 of 10 samples; raise R or use "
                                           "at least 500"):
        Imbalance.parse("exp:0.001").counts(10, 3)  # class 1: 10 sqrt(0.001) = 0.32
    assert Imbalance.parse("exp:0.001").counts(500, 3).tolist() == [500, 16, 1]


# ---------------------------------------------------------------- the config and the trainer


def test_config_stores_the_canonical_text_and_round_trips():
    config = TrainConfig(imbalance="step:0.10, 5")
    assert config.imbalance == "step:0.1,5"
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict({"dataset": "digits"}).imbalance is None  # older configs
    with pytest.raises(NCInputError, match="unknown profile"):
        TrainConfig(imbalance="foo:1")


def test_trainer_records_the_profile_resumes_and_refuses_another(tmp_path):
    config = TINY.updated(epochs=3, log_points=2, imbalance="step:0.1,2")
    run_dir = tmp_path / "run"
    trainer = Trainer(config, run_dir, device="cpu", progress=False)
    trainer.fit()
    assert json.loads((run_dir / "config.json").read_text())["imbalance"] == "step:0.1,2"
    assert trainer.data.train.class_counts().tolist() == [40, 40, 4, 4]
    # another spelling of the same profile resumes (the config holds the canonical text)
    resumed = Trainer(config.updated(imbalance="step:0.10, 2"), run_dir, device="cpu",
                      progress=False)
    assert resumed.fit(resume=True)["epochs_done"] == 3
    assert torch.equal(resumed.data.train.x, trainer.data.train.x)  # the same draw
    with pytest.raises(NCInputError, match='imbalance: "step:0.1,2" -> "step:0.2,2"'):
        Trainer(config.updated(imbalance="step:0.2,2"), run_dir, device="cpu",
                progress=False).fit(resume=True)


def brute_cosine_mean(vectors):
    """Mean pairwise cosine with explicit loops, float64."""
    total, pairs = 0.0, 0
    for a, b in itertools.combinations(range(len(vectors)), 2):
        u, v = np.asarray(vectors[a], float), np.asarray(vectors[b], float)
        total += float(u @ v) / math.sqrt(float(u @ u) * float(v @ v))
        pairs += 1
    return total / pairs


def test_imbalanced_run_logs_the_minority_metrics_of_its_final_model(tmp_path):
    config = TINY.updated(epochs=3, log_points=2, imbalance="step:0.1,2")
    trainer = Trainer(config, tmp_path / "run", device="cpu", progress=False)
    trainer.fit()
    last = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()][-1]
    weight = trainer.model.get_submodule(trainer.classifier).weight.detach().double().numpy()
    assert last["train_minority_collapse_weights"] == pytest.approx(
        brute_cosine_mean(weight[[2, 3]]), abs=1e-12)
    for split in ("train", "test"):
        data = getattr(trainer.data, split)
        captured = capture_features(trainer.model, [(data.x, data.y)])
        h, y = captured.features.double().numpy(), data.y.numpy()
        means = np.stack([h[y == c].mean(axis=0) for c in range(4)])
        centred = means - means.mean(axis=0)
        assert last[f"{split}_minority_collapse_means"] == pytest.approx(
            brute_cosine_mean(centred[[2, 3]]), abs=1e-9)
        right = captured.outputs.argmax(dim=1).numpy() == y
        per_class = [right[y == c].mean() for c in range(4)]
        assert last[f"{split}_majority_accuracy"] == pytest.approx(np.mean(per_class[:2]))
        assert last[f"{split}_minority_accuracy"] == pytest.approx(np.mean(per_class[2:]))


def test_balanced_run_logs_no_minority_metrics(tmp_path):
    trainer = Trainer(TINY.updated(epochs=1, log_points=1), tmp_path / "run", device="cpu",
                      progress=False)
    trainer.fit()
    assert not any("minority" in key for key in trainer.state.rows[-1])


# ---------------------------------------------------------------- the metrics


def test_minority_collapse_matches_explicit_loops():
    rng = np.random.default_rng(0)
    weight, means = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)) + 3.0
    minority = [1, 4, 5]
    assert minority_collapse_weights(weight, minority) == pytest.approx(
        brute_cosine_mean(weight[minority]), abs=1e-14)
    centred = [[means[c][j] - sum(means[k][j] for k in range(6)) / 6 for j in range(4)]
               for c in range(6)]
    assert minority_collapse_means(means, minority) == pytest.approx(
        brute_cosine_mean([centred[c] for c in minority]), abs=1e-14)


def test_minority_collapse_on_a_simplex_and_on_merged_rows():
    etf = np.sqrt(5 / 4) * (np.eye(5) - 1 / 5)
    assert minority_collapse_weights(etf, [2, 3, 4]) == pytest.approx(-1 / 4, abs=1e-14)
    merged = etf.copy()
    merged[[3, 4]] = 2.0 * etf[2]
    assert minority_collapse_weights(merged, [2, 3, 4]) == pytest.approx(1.0, abs=1e-14)


def test_minority_collapse_refusals():
    with pytest.raises(NCInputError, match="at least 2 minority"):
        minority_collapse_weights(np.eye(3), [1])
    with pytest.raises(NCInputError, match="distinct classes in 0..2"):
        minority_collapse_weights(np.eye(3), [1, 3])
    with pytest.raises(NCInputError, match="row 0 is zero"):
        minority_collapse_weights(np.zeros((3, 2)), [1, 2])


def repeated_label_svd(counts):
    """U Lambda U^T and the class blocks of V Lambda V^T of the SEL matrix, by numeric SVD."""
    num = len(counts)
    labels = np.repeat(np.arange(num), counts)
    one_hot = np.zeros((num, len(labels)))
    one_hot[labels, np.arange(len(labels))] = 1.0
    sel = (np.eye(num) - np.ones((num, num)) / num) @ one_hot
    u, s, vt = np.linalg.svd(sel, full_matrices=False)
    u, s, vt = u[:, :num - 1], s[:num - 1], vt[:num - 1]
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    features = (vt.T * s) @ vt
    return u @ np.diag(s) @ u.T, features[np.ix_(first, first)]


@pytest.mark.parametrize("counts", [[5, 5, 5, 1, 1], [100, 32, 10, 3, 1], [7, 2], [3, 9, 4]])
def test_seli_grams_match_the_svd_of_the_repeated_label_matrix(counts):
    weights, means = seli_grams(counts)
    svd_weights, svd_means = repeated_label_svd(counts)
    np.testing.assert_allclose(weights, svd_weights / np.linalg.norm(svd_weights), atol=1e-12)
    np.testing.assert_allclose(means, svd_means / np.linalg.norm(svd_means), atol=1e-12)
    # the features of a class coincide in V Lambda V^T: its blocks are constant
    labels = np.repeat(np.arange(len(counts)), counts)
    sel = (np.eye(len(counts)) - 1 / len(counts)) @ np.eye(len(counts))[:, labels]
    _, s, vt = np.linalg.svd(sel, full_matrices=False)
    block = (vt[:len(counts) - 1].T * s[:len(counts) - 1]) @ vt[:len(counts) - 1]
    np.testing.assert_allclose(block, svd_means[np.ix_(labels, labels)], atol=1e-12)


def test_balanced_seli_is_the_simplex_etf():
    etf = (np.eye(6) - 1 / 6) / np.sqrt(5)
    for gram in seli_grams([4] * 6):
        np.testing.assert_allclose(gram, etf, atol=1e-14)
    rng = np.random.default_rng(1)
    weight, means = rng.normal(size=(6, 8)), rng.normal(size=(6, 8))
    gram = weight @ weight.T
    brute = np.sqrt(((gram / np.linalg.norm(gram) - etf) ** 2).sum())
    assert seli_distance_weights(weight, [4] * 6) == pytest.approx(brute, abs=1e-13)
    centred = means - means.mean(axis=0)
    gram = centred @ centred.T
    brute = np.sqrt(((gram / np.linalg.norm(gram) - etf) ** 2).sum())
    assert seli_distance_means(means, [4] * 6) == pytest.approx(brute, abs=1e-13)


def test_seli_distance_is_zero_at_the_seli_point_and_refuses_bad_counts():
    counts = [9, 9, 1]
    weights, means = seli_grams(counts)
    values, vectors = np.linalg.eigh(weights)
    w = vectors * np.sqrt(np.clip(values, 0, None))  # W W^T = the SELI Gram
    values, vectors = np.linalg.eigh(means)
    m = vectors * np.sqrt(np.clip(values, 0, None)) + 5.0  # shifted: centring removes it
    assert seli_distance_weights(w, counts) < 1e-7
    assert seli_distance_means(m, counts) < 1e-7
    assert seli_distance_weights(w, [1, 1, 1]) > 0.05  # not the ETF
    with pytest.raises(NCInputError, match="every class count must be > 0"):
        seli_grams([3, 0, 2])
    with pytest.raises(NCInputError, match="weight has 3 rows but there are 2 counts"):
        seli_distance_weights(w, [3, 1])


def test_group_accuracies_and_the_metrics_dict():
    accuracy = [1.0, 0.9, 0.8, 0.1, 0.0]
    assert group_accuracies(accuracy, [3, 4]) == (pytest.approx(0.9), pytest.approx(0.05))
    with pytest.raises(NCInputError, match="proper, nonempty"):
        group_accuracies(accuracy, [0, 1, 2, 3, 4])
    values = imbalance_metrics(np.eye(5), np.eye(5), [4, 4, 4, 1, 1], [4], accuracy)
    assert values["minority_collapse_weights"] is None  # one minority class: undefined
    assert values["minority_accuracy"] == 0.0
    with pytest.raises(NCInputError, match="one entry per class"):
        imbalance_metrics(np.eye(5), np.eye(4), [1] * 5, [3, 4])


# ---------------------------------------------------------------- the UFM with class counts


def brute_ufm_objective(w, h, b, labels, model):
    total = 0.0
    for feature, label in zip(h, labels, strict=True):
        logits = w @ feature + b
        if model.loss == "ce":
            total += math.log(sum(math.exp(z) for z in logits)) - logits[label]
        else:
            total += 0.5 * sum((z - (k == label)) ** 2 for k, z in enumerate(logits))
    penalty = model.lambda_w * (w**2).sum() + model.lambda_h * (h**2).sum() \
        + model.lambda_b * (b**2).sum()
    return total / len(labels) + 0.5 * penalty


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_ufm_with_counts_matches_brute_force_objective_and_autograd(loss):
    model = RegularizedUFM(3, 4, counts=[4, 2, 1], loss=loss, lambda_b=0.01)
    assert model.num_samples == 7 and model.labels().tolist() == [0, 0, 0, 0, 1, 1, 2]
    assert model.optimal_value is None and model.logit_scale is None
    params = [p.requires_grad_() for p in model.random_start([0, 1])]
    value, grads = model.value_and_grad(tuple(p.detach() for p in params))
    for s in range(2):
        w, h, b = (p[s].detach().numpy() for p in params)
        assert value[s].item() == pytest.approx(
            brute_ufm_objective(w, h, b, model.labels().numpy(), model), rel=1e-12)
    auto = torch.autograd.grad(model.value_and_grad(tuple(params))[0].sum(), params)
    for mine, reference in zip(grads, auto, strict=True):
        torch.testing.assert_close(mine, reference, rtol=1e-10, atol=1e-12)


def test_ufm_with_equal_counts_is_the_balanced_model():
    balanced, counted = RegularizedUFM(3, 4, 2), RegularizedUFM(3, 4, counts=[2, 2, 2])
    assert counted.optimal_value == balanced.optimal_value
    start = balanced.random_start([0])
    assert torch.equal(balanced.value_and_grad(start)[0], counted.value_and_grad(start)[0])
    with pytest.raises(NCInputError, match="one entry per class"):
        RegularizedUFM(3, 4, counts=[2, 2])
    with pytest.raises(NCInputError, match="integer >= 1"):
        RegularizedUFM(3, 4, counts=[2, 0, 2])


def test_solve_ufm_refuses_a_profile_for_the_sphere_model_before_solving(tmp_path):
    from nclab.studies.ufm import solve_ufm
    from nclab.ufm import SphereUFM

    with pytest.raises(NCInputError, match="--imbalance applies to the regularized model"):
        solve_ufm(SphereUFM(3, 4, 2), tmp_path / "out", seeds=1, steps=1, lr=1.0,
                  grad_tol=0.0, tol=1e-6, device=torch.device("cpu"),
                  imbalance=Imbalance("step", 0.5, 1))
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the command line


def test_train_with_imbalance_runs_and_records_it(tmp_path, capsys):
    code, _, err = run_cli(["train", *TINY_ARGS, "--epochs", "2", "--log-points", "1",
                            "--imbalance", "step:0.1,2", "--no-report", "--out",
                            tmp_path / "run"], capsys)
    assert code in (0, None), err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["imbalance"] == \
        "step:0.1,2"
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert -1 <= row["train_minority_collapse_weights"] <= 1


@pytest.mark.parametrize(("command", "text", "message"), [
    ("train", "step:2,3", "--imbalance: the ratio R must lie in (0, 1]; got '2'"),
    ("train", "exp:0", "--imbalance: the ratio R must lie in (0, 1]; got '0'"),
    ("train", "foo:1", "--imbalance: unknown profile 'foo'"),
    ("train", "step:0.5,4", "K = 4 minority classes must lie in 1..C-1 = 1..3"),
    ("train", "step:0.001,1", "class 3 would keep 0 of 40 samples"),
    ("demo", "exp:0", "--imbalance: the ratio R must lie in (0, 1]"),
    ("finegrained", "foo:1", "--imbalance: unknown profile 'foo'"),
    ("ufm", "step:0.5,10", "K = 10 minority classes must lie in 1..C-1 = 1..9"),
    ("ufm", "step:0.01,5", "class 5 would keep 0 of 5 samples"),
])
def test_bad_imbalance_options_are_one_line_and_write_nothing(command, text, message, tmp_path,
                                                              capsys):
    args = [*TINY_ARGS] if command == "train" else []
    code, out, err = run_cli([command, *args, "--imbalance", text, "--out", tmp_path / "run"],
                             capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_ufm_command_writes_the_minority_collapse(tmp_path, capsys):
    code, out, err = run_cli(["ufm", "--classes", 4, "--dim", 4, "--per-class", 4,
                              "--imbalance", "step:0.25,2", "--steps", 300, "--seeds", 2,
                              "--no-progress", "--out", tmp_path], capsys)
    assert code in (0, None), err
    data = json.loads((tmp_path / "ufm.json").read_text())
    assert data["config"]["counts"] == [4, 4, 1, 1]
    assert data["imbalance"] == {"profile": "step:0.25,2", "counts": [4, 4, 1, 1],
                                 "minority": [2, 3]}
    best = int(np.argmin([run["objective"] for run in data["runs"]]))
    assert data["minority_collapse_weights"] == \
        data["runs"][best]["imbalance"]["minority_collapse_weights"]
    assert "minority_collapse_weights of the best start" in out
