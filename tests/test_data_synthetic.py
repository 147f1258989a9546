"""Generated data sets and the subset rules."""

import numpy as np
import pytest
import torch

from nclab.core.errors import NCInputError
from nclab.data import DATASETS, load_dataset


def test_mnist1d_is_generated_locally_and_deterministic():
    a, b = load_dataset("mnist1d", num_samples=400), load_dataset("mnist1d", num_samples=400)
    assert a.input_shape == (1, 40) and a.num_classes == 10
    assert len(a.train) == 320 and len(a.test) == 80
    assert torch.equal(a.train.x, b.train.x) and a.train.x.dtype == torch.float32


def test_mnist1d_leaves_numpy_global_state_alone():
    np.random.seed(7)
    expected = np.random.rand()
    np.random.seed(7)
    load_dataset("mnist1d", num_samples=100)
    assert np.random.rand() == expected


def test_digits_and_gaussian():
    d = load_dataset("digits")
    assert d.input_shape == (1, 8, 8) and len(d.train) + len(d.test) == 1797
    assert float(d.train.x.max()) <= 1.0
    g = load_dataset("gaussian", num_classes=3, dim=5, per_class=7, test_per_class=2)
    assert g.input_shape == (5,) and len(g.train) == 21 and len(g.test) == 6
    assert (g.train.class_counts() == 7).all()


def test_wine_is_bundled_split_and_standardized():
    from sklearn.datasets import load_wine

    raw = load_wine()
    w = load_dataset("wine")
    assert w.input_shape == (13,) and w.num_classes == 3 and len(w.train) == 142
    assert len(w.test) == 36 and w.train.class_names == tuple(raw.target_names)
    # brute force: the same permutation, standardized in float64 by the training split
    order = np.random.default_rng(0).permutation(178)
    x_train, x_test = raw.data[order[:142]], raw.data[order[142:]]
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    np.testing.assert_allclose(w.train.x.numpy(), (x_train - mean) / std, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(w.test.x.numpy(), (x_test - mean) / std, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(w.test.y.numpy(), raw.target[order[142:]])
    assert abs(w.train.x.double().mean(0)).max() < 1e-6
    assert abs(w.train.x.double().std(0, unbiased=False) - 1).max() < 1e-6
    kept = load_dataset("wine", standardize=False)
    np.testing.assert_allclose(kept.train.x.numpy(), x_train, rtol=1e-6)
    sub = load_dataset("wine", classes=[2, 0], per_class=10, seed=3)
    assert list(sub.train.class_counts()) == [10, 10]


def test_subset_relabels_and_balances():
    d = load_dataset("digits", classes=[7, 2], per_class=30, per_class_test=5, seed=1)
    assert d.num_classes == 2 and d.train.class_names == ("7", "2")
    assert list(d.train.class_counts()) == [30, 30] and list(d.test.class_counts()) == [5, 5]
    full = load_dataset("digits")
    sevens = full.train.x[full.train.y == 7]
    picked = d.train.x[d.train.y == 0]
    assert all(any(torch.equal(p, s) for s in sevens) for p in picked[:5])
    again = load_dataset("digits", classes=[7, 2], per_class=30, seed=1)
    assert torch.equal(again.train.x, d.train.x)


def test_bad_names_and_classes():
    with pytest.raises(NCInputError, match="choose from: .*mnist1d"):
        load_dataset("imagenet")
    with pytest.raises(NCInputError, match="out of range"):
        load_dataset("digits", classes=[0, 10])
    assert set(DATASETS) >= {"mnist1d", "digits", "gaussian"}
