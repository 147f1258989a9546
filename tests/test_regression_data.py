"""Regression data: the teacher network, the .npz format, and MuJoCo imitation data (tiny)."""

import numpy as np
import pytest

from nclab import NCInputError
from nclab.data import DatasetSplits, load_dataset
from nclab.data.regression_base import load_regression, make_regression_data
from nclab.data.teacher import teacher


def arrays(data: DatasetSplits) -> tuple[np.ndarray, ...]:
    """x, y, x_test, y_test of regression splits, as numpy arrays."""
    assert data.is_regression and data.num_classes is None
    return tuple(a.numpy() for a in (data.train.x, data.train.y, data.test.x, data.test.y))


def test_teacher_imposes_the_target_covariance_exactly():
    cov = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, 0.2], [0.0, 0.2, 0.5]])
    data = teacher(500, input_dim=7, target_dim=3, target_cov=cov, seed=3)
    assert data.train.x.numpy().shape == (400, 7) and data.train.y.numpy().shape == (400, 3)
    assert data.test.x.numpy().shape == (100, 7) and data.target_dim == 3
    np.testing.assert_allclose(np.cov(data.train.y.numpy().T, bias=True), cov, atol=1e-5)
    assert abs(data.train.y.numpy().mean(0)).max() < 1e-5
    # the test targets come from the same fixed function: similar covariance, not equal
    test_cov = np.cov(data.test.y.numpy().T, bias=True)
    assert np.abs(test_cov - cov).max() < 0.6
    again = teacher(500, input_dim=7, target_dim=3, target_cov=cov, seed=3)
    np.testing.assert_array_equal(again.test.y.numpy(), data.test.y.numpy())
    spectrum = teacher(300, target_dim=2, target_cov=[3.0, 0.3], seed=0)
    np.testing.assert_allclose(np.cov(spectrum.train.y.numpy().T, bias=True),
                               np.diag([3.0, 0.3]), atol=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    ({"target_cov": [[1.0, 2.0], [2.0, 1.0]], "target_dim": 2}, "positive semi-definite"),
    ({"target_cov": [1.0, 2.0], "target_dim": 3}, r"target_cov must have shape"),
    ({"num_samples": 4, "target_dim": 3}, "need more than n=3 training samples"),
    ({"input_dim": 0}, "input_dim must be an integer >= 1"),
])
def test_teacher_bad_input(kwargs, match):
    with pytest.raises(NCInputError, match=match):
        teacher(**kwargs)


def test_npz_round_trip_and_split(tmp_path):
    rng = np.random.default_rng(0)
    data = make_regression_data(rng.normal(size=(50, 4)), rng.normal(size=50), name="toy",
                                test_fraction=0.2, seed=1)
    assert data.train.y.numpy().shape == (40, 1) and data.test.y.numpy().shape == (10, 1)
    data.save(tmp_path / "toy.npz")
    back = load_regression(tmp_path / "toy.npz")
    np.testing.assert_array_equal(back.test.x.numpy(), data.test.x.numpy())
    np.testing.assert_array_equal(back.train.y.numpy(), data.train.y.numpy())
    np.savez(tmp_path / "xy.npz", x=rng.normal(size=(30, 3)), y=rng.normal(size=(30, 2)))
    split = load_regression(tmp_path / "xy.npz", test_fraction=0.5)
    assert len(split.train) == 15 and len(split.test) == 15 and split.target_dim == 2
    # the registry's loader of the same file, and the old name with its warning
    x, y, x_test, y_test = arrays(load_dataset("npz_targets", tmp_path / "xy.npz",
                                               test_fraction=0.5))
    np.testing.assert_array_equal(y, split.train.y.numpy())
    with pytest.warns(FutureWarning, match="'npz' is renamed 'npz_targets'"):
        old = load_dataset("npz", tmp_path / "xy.npz", kind="regression", test_fraction=0.5)
    np.testing.assert_array_equal(arrays(old)[3], y_test)


def test_npz_targets_reads_renamed_keys(tmp_path):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(20, 4)), rng.normal(size=(20, 2))
    np.savez(tmp_path / "plain.npz", x=x, y=y)
    np.savez(tmp_path / "named.npz", inputs=x, actions=y)
    plain = arrays(load_dataset("npz_targets", tmp_path / "plain.npz", seed=5))
    named = arrays(load_dataset("npz_targets", tmp_path / "named.npz", seed=5,
                                x_key="inputs", y_key="actions"))
    for got, expected in zip(named, plain, strict=True):
        np.testing.assert_array_equal(got, expected)
    np.savez(tmp_path / "split.npz", inputs=x[:15], actions=y[:15], inputs_test=x[15:],
             actions_test=y[15:])
    split = arrays(load_regression(tmp_path / "split.npz", x_key="inputs", y_key="actions"))
    np.testing.assert_array_equal(split[3], y[15:].astype(np.float32))
    with pytest.raises(NCInputError, match="has no array named 'x', 'y'"):
        load_dataset("npz_targets", tmp_path / "named.npz")
    np.savez(tmp_path / "bad.npz", inputs=x, actions=y, inputs_test=x[:2])
    with pytest.raises(NCInputError, match="give both inputs_test and actions_test"):
        load_regression(tmp_path / "bad.npz", x_key="inputs", y_key="actions")


def test_registry_seeds_the_regression_builders():
    data = load_dataset("teacher", num_samples=60, target_dim=2, seed=4)
    x, y, x_test, y_test = arrays(data)
    direct = arrays(teacher(60, target_dim=2, seed=4))
    for got, expected in zip((x, y, x_test, y_test), direct, strict=True):
        np.testing.assert_array_equal(got, expected)
    assert data.info["seed"] == 4 and data.input_shape == (16,)
    with pytest.raises(NCInputError, match="has real targets: classes, per-class limits and "
                                           "imbalance do not apply"):
        load_dataset("teacher", per_class=3)
    with pytest.raises(NCInputError, match="dataset 'teacher' has no option hidden_size"):
        load_dataset("teacher", hidden_size=3)
    with pytest.raises(NCInputError, match="'teacher' for classification"):
        load_dataset("teacher", kind="classification")


@pytest.mark.parametrize("arrays,match", [
    ({"x": np.ones((5, 2))}, "has no array named 'y'"),
    ({"x": np.ones((5, 2)), "y": np.ones(4)}, "x has 5 rows but y has 4"),
    ({"x": np.ones(5), "y": np.ones(5)}, r"x must be a real array of shape \(N, ...\)"),
    ({"x": np.ones((5, 2)), "y": np.array([1.0, np.inf, 0, 0, 0])},
     r"y contain NaN or inf \(first at row 1\)"),
    ({"x": np.ones((5, 2)), "y": np.ones(5), "x_test": np.ones((2, 2))}, "give both x_test"),
])
def test_bad_npz_is_one_clear_line(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(NCInputError, match=match) as info:
        load_regression(tmp_path / "bad.npz")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------- MuJoCo
def test_reacher_expert_beats_random_and_data_is_deterministic():
    pytest.importorskip("mujoco")
    pytest.importorskip("gymnasium")
    from nclab.data.imitation import imitation_data

    data = imitation_data("reacher", 60, eval_episodes=3, seed=0)
    x, y, x_test, _ = arrays(data)
    assert x.shape == (48, 10) and y.shape == (48, 2) and x_test.shape == (12, 10)
    assert np.abs(data.train.y.numpy()).max() <= 1.0
    info = data.info
    assert info["expert_return"] > info["random_return"] + 20
    again = imitation_data("reacher", 60, eval_episodes=1, seed=0)
    np.testing.assert_array_equal(again.train.x.numpy(), data.train.x.numpy())


def test_swimmer_expert_swims():
    pytest.importorskip("mujoco")
    from nclab.data.imitation import SwimmerExpert, episode_returns, imitation_data, make_env

    data = imitation_data("swimmer", 20, eval_episodes=1, seed=0)
    assert data.train.x.numpy().shape == (16, 8) and data.train.y.numpy().shape == (16, 2)
    env = make_env("swimmer")
    expert = episode_returns(env, SwimmerExpert(), 1, seed=7)
    random = episode_returns(env, None, 1, seed=7)
    assert expert[0] > 150 and expert[0] > random[0] + 100


def test_hopper_policy_search_saves_and_reuses_the_policy(tmp_path):
    pytest.importorskip("mujoco")
    from nclab.data.imitation import LinearPolicy, imitation_data

    policy_file = tmp_path / "hopper_policy.npz"
    first = imitation_data("hopper", 30, eval_episodes=1, noise=0.0,
                           policy_file=policy_file, search_iterations=1)
    x, y, _, _ = arrays(first)
    assert policy_file.exists() and y.shape == (24, 3) and x.shape[1] == 11
    policy = LinearPolicy.load(policy_file)
    np.testing.assert_allclose(y, np.stack([policy(s) for s in x]), atol=1e-6)
    second = imitation_data("hopper", 30, eval_episodes=1, noise=0.0, policy_file=policy_file)
    np.testing.assert_array_equal(second.train.y.numpy(), first.train.y.numpy())


def test_unknown_task_is_a_clear_error():
    pytest.importorskip("mujoco")
    from nclab.data.imitation import imitation_data

    with pytest.raises(NCInputError, match="unknown task 'walker'"):
        imitation_data("walker")
