"""Fine-label recovery (definitions §6): labelings, Hungarian matching, the pipeline."""

import itertools
import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nclab import measure
from nclab.core.errors import NCInputError
from nclab.data import load_dataset
from nclab.data.hierarchical import hierarchical, hierarchical_coarse_map
from nclab.finegrained import (
    CoarseLabeling,
    SuperclassClustering,
    coarsen_splits,
    match_clusters,
    parse_coarse_map,
    recover_fine_labels,
)

COMMON = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _recover(splits, labeling, test_superclass=None, **kwargs):
    """Recovery with the data's inputs as features and, by default, the true superclasses."""
    train, test = splits.train, splits.test
    if test_superclass is None:
        test_superclass = labeling.coarse(test.y)
    return recover_fine_labels(train.x, train.y, labeling.coarse(train.y), test.x,
                               test_superclass, test.y, labeling=labeling, threads=1, **kwargs)


# --------------------------------------------------------------------------- labelings


def test_mod_pairing():
    labeling = CoarseLabeling.mod(10, 4)
    assert labeling.fine_to_coarse == tuple(y % 4 for y in range(10))
    assert labeling.members(1) == (1, 5, 9) and labeling.members(3) == (3, 7)
    assert labeling.num_coarse == 4 and labeling.num_fine == 10 and labeling.pairing == "mod"


@COMMON
@given(num_fine=st.integers(1, 40), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_random_pairing_is_a_balanced_seeded_partition(num_fine, data, seed):
    num_coarse = data.draw(st.integers(1, num_fine))
    labeling = CoarseLabeling.random(num_fine, num_coarse, seed)
    groups = [labeling.members(s) for s in range(num_coarse)]
    assert sorted(itertools.chain(*groups)) == list(range(num_fine))  # a partition
    sizes = [len(g) for g in groups]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    assert CoarseLabeling.random(num_fine, num_coarse, seed) == labeling


def test_random_pairing_depends_on_the_seed():
    maps = {CoarseLabeling.random(10, 5, seed).fine_to_coarse for seed in range(5)}
    assert len(maps) > 1
    assert CoarseLabeling.random(10, 5, 0) != CoarseLabeling.mod(10, 5)


def test_explicit_map_from_dict_sequence_and_text():
    by_dict = CoarseLabeling.from_map({0: 1, 1: 0, 2: 1})
    by_list = CoarseLabeling.from_map([1, 0, 1])
    by_text = CoarseLabeling.create("explicit", 3, mapping="0:1, 1:0, 2:1")
    by_position = CoarseLabeling.create("explicit", 3, mapping="1,0,1")
    assert by_dict == by_list == by_text == by_position
    assert by_dict.members(1) == (0, 2) and by_dict.num_coarse == 2
    assert parse_coarse_map("3:0,0:1") == {3: 0, 0: 1}
    assert CoarseLabeling.create("random", 10, 5, seed=3) == CoarseLabeling.random(10, 5, 3)
    assert CoarseLabeling.create("mod", 10, 5) == CoarseLabeling.mod(10, 5)


def test_map_missing_fine_classes_is_refused_with_them_named():
    with pytest.raises(NCInputError, match=r"does not cover fine classes \[2, 4\]") as err:
        CoarseLabeling.from_map({0: 0, 1: 0, 3: 1}, num_fine=5)
    assert "\n" not in str(err.value)
    with pytest.raises(NCInputError, match=r"fine classes \[1\]"):
        CoarseLabeling.create("explicit", 3, mapping="0:0,2:1")


@pytest.mark.parametrize("make, message", [
    (lambda: CoarseLabeling.from_map([0, 0, 2]), r"superclasses \[1\] have no fine classes"),
    (lambda: CoarseLabeling.from_map([0, 1, 5], num_coarse=2), r"superclasses \[5\] outside"),
    (lambda: CoarseLabeling.from_map({0: 0, 1: 1, 2: 0, 7: 0}, num_fine=3), r"fine classes \[7\]"),
    (lambda: CoarseLabeling.mod(3, 4), "num_coarse <= num_fine"),
    (lambda: CoarseLabeling((0, 1, 3), 2), r"superclasses \[3\] outside 0..1"),
    (lambda: CoarseLabeling.create("stripes", 4, 2), "choose from: mod, random, explicit"),
    (lambda: CoarseLabeling.create("mod", 4), "needs the number of superclasses"),
    (lambda: CoarseLabeling.create("mod", 4, 2, mapping="0,0,1,1"), "exactly when"),
    (lambda: parse_coarse_map("0:1,0:0"), "appears twice"),
    (lambda: parse_coarse_map("0-1"), "expected fine:superclass"),
])
def test_bad_maps_are_refused(make, message):
    with pytest.raises(NCInputError, match=message):
        make()


def test_coarse_labels_and_coarsened_data_keep_the_fine_labels():
    splits = load_dataset("digits", per_class=20, per_class_test=5)
    labeling = CoarseLabeling.mod(10, 5)
    coarse = coarsen_splits(splits, labeling)
    assert coarse.num_classes == 5 and coarse.train.class_names[2] == "2+7"
    assert coarse.train.x is splits.train.x and coarse.fine is splits
    assert torch.equal(coarse.train.y, splits.train.y % 5)
    assert torch.equal(coarse.test.y, splits.test.y % 5)
    assert list(coarse.train.class_counts()) == [40] * 5
    y = np.array([9, 0, 4])
    assert labeling.coarse(y).tolist() == [4, 0, 4] and isinstance(labeling.coarse(y), np.ndarray)
    with pytest.raises(NCInputError, match="out of range"):
        labeling.coarse(np.array([10]))
    with pytest.raises(NCInputError, match="for 6 fine classes; the data set has 10"):
        CoarseLabeling.mod(6, 3).coarsen(splits.train)


# --------------------------------------------------------------------------- matching


def _brute_force_best(clusters, fine, classes):
    """Largest number of agreements over every bijection clusters -> classes."""
    return max(sum(int(np.sum((clusters == c) & (fine == perm[c]))) for c in range(len(classes)))
               for perm in itertools.permutations(classes))


@COMMON
@given(k=st.integers(1, 5), n=st.integers(0, 60), seed=st.integers(0, 10_000))
def test_hungarian_matching_is_optimal_and_ignores_cluster_ids(k, n, seed):
    rng = np.random.default_rng(seed)
    classes = rng.choice(20, size=k, replace=False)
    fine = classes[rng.integers(0, k, n)]
    # clusters that mostly follow the fine label, with noise
    truth = np.searchsorted(np.sort(classes), fine)
    clusters = np.where(rng.random(n) < 0.7, truth, rng.integers(0, k, n))
    mapping = match_clusters(clusters, fine, classes)
    assert sorted(mapping.tolist()) == sorted(classes.tolist())  # a bijection
    agreements = int(np.sum(mapping[clusters] == fine))
    assert agreements == _brute_force_best(clusters, fine, classes)
    renamed = rng.permutation(k)  # cluster c becomes cluster renamed[c]
    mapping_renamed = match_clusters(renamed[clusters], fine, classes)
    assert int(np.sum(mapping_renamed[renamed[clusters]] == fine)) == agreements
    unique_optimum = sum(
        sum(int(np.sum((clusters == c) & (fine == p[c]))) for c in range(k)) == agreements
        for p in itertools.permutations(classes)) == 1
    if unique_optimum:  # then each sample gets the same label whatever the ids
        np.testing.assert_array_equal(mapping_renamed[renamed[clusters]], mapping[clusters])


def test_matching_rejects_labels_outside_the_classes():
    with pytest.raises(NCInputError, match="given classes"):
        match_clusters([0, 1], [3, 4], [3, 5])
    with pytest.raises(NCInputError, match="0..k-1"):
        match_clusters([0, 2], [3, 5], [3, 5])


# --------------------------------------------------------------------------- recovery


@pytest.fixture(scope="module")
def separable():
    return hierarchical(num_coarse=4, fine_per_coarse=3, dim=16, train_per_class=80,
                        test_per_class=40, fine_separation=8.0, seed=1)


def test_separable_sub_clusters_are_recovered(separable):
    labeling = CoarseLabeling.from_map(hierarchical_coarse_map(4, 3))
    result = _recover(separable, labeling)
    assert result.train_accuracy >= 0.99 and result.test_accuracy >= 0.98
    assert result.test_coarse_accuracy == 1.0 and result.chance_accuracy == pytest.approx(1 / 3)
    assert all(r.train_accuracy >= 0.97 for r in result.superclasses)
    # collapsed-looking for the coarse labels relative to the fine ones, same features
    train = separable.train
    assert result.coarse_nc1 == pytest.approx(measure(train.x, train.y % 4).nc1)
    assert result.fine_nc1 == pytest.approx(measure(train.x, train.y).nc1)
    # confusion matrices agree with the accuracies and with the per-superclass blocks
    assert result.train_confusion.sum() == len(train.y)
    assert np.trace(result.train_confusion) / len(train.y) == result.train_accuracy
    assert sum(np.trace(r.test_confusion) for r in result.superclasses) == np.trace(
        result.test_confusion)
    assert np.mean(result.test_recovered == separable.test.y.numpy()) == result.test_accuracy
    assert "test_recovered" not in result.to_dict()
    fine_of_0 = [0, 4, 8]
    np.testing.assert_array_equal(result.superclasses[0].train_confusion,
                                  result.train_confusion[np.ix_(fine_of_0, fine_of_0)])


def test_identical_sub_clusters_give_chance():
    splits = hierarchical(num_coarse=4, fine_per_coarse=2, dim=16, train_per_class=150,
                          test_per_class=150, fine_separation=0.0, seed=2)
    labeling = CoarseLabeling.mod(8, 4)
    result = _recover(splits, labeling)
    # 1200 test samples: chance is 0.5 with standard deviation ~0.015
    assert abs(result.test_accuracy - 0.5) < 0.06
    assert result.train_accuracy < 0.62  # matching on train can only be a little optimistic
    assert result.fine_nc1 > 10 * result.coarse_nc1


def test_recovery_grows_with_the_separation_of_the_sub_clusters():
    labeling = CoarseLabeling.mod(6, 3)
    accuracy = [
        _recover(hierarchical(3, 2, dim=8, train_per_class=100, test_per_class=100,
                              fine_separation=sep, seed=3), labeling).test_accuracy
        for sep in (0.0, 2.0, 6.0)]
    assert accuracy[0] < accuracy[1] < accuracy[2]
    assert accuracy[2] > 0.98


def test_labeling_is_inferred_from_the_training_pairs(separable):
    train, test = separable.train, separable.test
    a = recover_fine_labels(train.x, train.y, train.y % 4, test.x, test.y % 4, test.y, threads=1)
    b = _recover(separable, CoarseLabeling.mod(12, 4))
    assert a.labeling.fine_to_coarse == b.labeling.fine_to_coarse
    assert a.test_accuracy == b.test_accuracy


def test_single_fine_class_superclass_is_trivially_recovered():
    rng = np.random.default_rng(0)
    labeling = CoarseLabeling.from_map([0, 0, 1])  # fine class 2 alone in superclass 1
    y_train, y_test = np.repeat([0, 1, 2], 30), np.repeat([0, 1, 2], 10)
    x_train, x_test = rng.normal(size=(90, 5)), rng.normal(size=(30, 5))  # no structure
    result = recover_fine_labels(x_train, y_train, labeling.coarse(y_train), x_test,
                                 labeling.coarse(y_test), y_test, labeling=labeling, threads=1)
    trivial = result.superclasses[1]
    assert trivial.trivial and not result.superclasses[0].trivial
    assert trivial.fine_classes == (2,)
    assert trivial.train_accuracy == 1.0 and trivial.test_accuracy == 1.0
    assert result.trivial_superclasses == (1,)
    assert json.loads(json.dumps(result.to_dict()))["trivial_superclasses"] == [1]


def test_test_samples_are_assigned_within_their_predicted_superclass():
    # superclass 0 = fine {0, 1} around (0, 0); superclass 1 = fine {2, 3} around (10, 0)
    centres = np.array([[0.0, -1.0], [0.0, 1.0], [10.0, -1.0], [10.0, 1.0]])
    y_train = np.repeat(np.arange(4), 20)
    rng = np.random.default_rng(0)
    x_train = centres[y_train] + 0.05 * rng.normal(size=(80, 2))
    labeling = CoarseLabeling.from_map([0, 0, 1, 1])
    # two test samples of fine class 0 sitting exactly on its centre; the second one's
    # superclass is mispredicted, so it must get a fine label of superclass 1
    x_test, y_test = centres[[0, 0]], np.array([0, 0])
    result = recover_fine_labels(x_train, y_train, labeling.coarse(y_train), x_test,
                                 np.array([0, 1]), y_test, labeling=labeling, threads=1)
    model = SuperclassClustering(threads=1).fit(x_train, y_train, labeling.coarse(y_train))
    recovered = model.predict(x_test, [0, 1])
    assert recovered[0] == 0 and recovered[1] == 2  # nearest of superclass 1's centres
    assert result.test_recovered.tolist() == [0, 2]
    assert result.test_accuracy == 0.5 and result.test_coarse_accuracy == 0.5
    assert result.superclasses[0].test_misrouted == 1
    assert result.test_confusion[0, 2] == 1 and result.test_confusion[0, 0] == 1


def test_fully_collapsed_superclass_is_reported_not_hidden():
    y = np.repeat(np.arange(4), 10)
    labeling = CoarseLabeling.mod(4, 2)
    x = np.eye(2)[labeling.coarse(y)]  # every superclass is one point: perfect collapse
    result = recover_fine_labels(x, y, labeling.coarse(y), x, labeling.coarse(y), y,
                                 labeling=labeling, threads=1)
    assert result.train_accuracy == pytest.approx(0.5)
    assert any("cannot separate" in note for note in result.warnings)


@pytest.mark.parametrize("change, message", [
    (dict(train_coarse=np.zeros(40, dtype=int)), "coarse map puts"),
    (dict(test_superclass=np.full(8, 2)), "test superclass labels: label 2 is out of range"),
    (dict(test_features=np.zeros((8, 3))), "features have 3 dims"),
    (dict(train_features=np.full((40, 2), np.nan)), "NaN"),
    (dict(test_fine=np.zeros(7, dtype=int)), "7 entries"),
])
def test_bad_recovery_input(change, message):
    rng = np.random.default_rng(0)
    y, y_test = np.repeat(np.arange(4), 10), np.repeat(np.arange(4), 2)
    labeling = CoarseLabeling.mod(4, 2)
    args = dict(train_features=rng.normal(size=(40, 2)), train_fine=y,
                train_coarse=labeling.coarse(y), test_features=rng.normal(size=(8, 2)),
                test_superclass=labeling.coarse(y_test), test_fine=y_test)
    args.update(change)
    with pytest.raises(NCInputError, match=message):
        recover_fine_labels(**args, labeling=labeling, threads=1)


def test_inferred_labeling_refuses_a_fine_class_under_two_superclasses():
    y = np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(NCInputError, match=r"fine classes \[1\] appear under more than one"):
        SuperclassClustering().fit(np.zeros((6, 2)), y, [0, 0, 0, 1, 1, 1])
    with pytest.raises(NCInputError, match=r"fine classes \[1\] have no training samples"):
        SuperclassClustering().fit(np.zeros((4, 2)), [0, 0, 2, 2], [0, 0, 1, 1])


# --------------------------------------------------------------------------- the data


def test_hierarchical_data_has_the_known_structure():
    splits = hierarchical(num_coarse=3, fine_per_coarse=2, dim=6, train_per_class=400,
                          test_per_class=5, coarse_separation=20.0, fine_separation=4.0,
                          noise=0.5, seed=4)
    assert splits.num_classes == 6 and splits.input_shape == (6,)
    assert len(splits.train) == 2400 and len(splits.test) == 30
    assert splits.train.class_names[4] == "1.1"
    x, y = splits.train.x.double().numpy(), splits.train.y.numpy()
    means = np.stack([x[y == c].mean(axis=0) for c in range(6)])
    # sub-clusters fine_separation apart around centres coarse_separation apart (up to
    # sampling error: 400 samples of noise 0.5 in 6 dims move a mean by ~0.06)
    within = [np.linalg.norm(means[c] - means[c + 3]) for c in range(3)]
    assert within == pytest.approx([4.0] * 3, abs=0.25)
    centres = (means[:3] + means[3:]) / 2
    between = [np.linalg.norm(centres[a] - centres[b]) for a, b in ((0, 1), (0, 2), (1, 2))]
    assert between == pytest.approx([20.0] * 3, abs=0.25)
    assert np.std(x[y == 0], axis=0) == pytest.approx([0.5] * 6, abs=0.07)
    coarse = hierarchical_coarse_map(3, 2)
    assert coarse.tolist() == [0, 1, 2, 0, 1, 2]
    same = hierarchical(num_coarse=3, fine_per_coarse=2, dim=6, train_per_class=400,
                        test_per_class=5, coarse_separation=20.0, fine_separation=4.0,
                        noise=0.5, seed=4)
    assert torch.equal(same.train.x, splits.train.x)


def test_hierarchical_refuses_bad_arguments():
    with pytest.raises(NCInputError, match="fine_separation must be finite and >= 0"):
        hierarchical(fine_separation=-1.0)
    with pytest.raises(NCInputError, match="num_coarse must be an integer >= 1"):
        hierarchical(num_coarse=0)
