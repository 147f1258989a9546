"""Imitation-learning regression data from gymnasium's MuJoCo tasks, made on this machine.

Each task has an expert controller; the data are (state, expert action) pairs along its
trajectories, as in Andriopoulos et al. (Swimmer and Reacher: n = 2, Hopper: n = 3).

- Reacher: analytic inverse kinematics of the two-link arm, then joint-space PD control.
- Swimmer: a feedback oscillator. The phase of the first joint is read from its angle and
  velocity, and both joints are driven by sinusoids of that phase with fixed offsets (a
  travelling wave down the body), so the action is a function of the state alone.
- Hopper: a linear policy on normalized states, found on the machine by augmented random
  search (Mania, Guy & Recht 2018), seeded; it can be saved and reused (``policy_file``).

States are visited with exploration noise on the executed action (the recorded target is
the expert's noise-free action), which spreads the states around the expert's path.
Needs the optional extra ``mujoco`` (``pip install 'nclab[mujoco]'``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nclab.core.errors import NCInputError
from nclab.core.io import load_npz, write_atomic
from nclab.data.base import DatasetSplits
from nclab.data.regression_base import make_regression_data

Policy = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Environment:
    """A MuJoCo environment: its gymnasium id, the paper's data size and the sampling stride."""

    env_id: str
    num_samples: int
    stride: int


#: name -> MuJoCo environment of the imitation data sets (each a data set of the registry).
ENVIRONMENTS: dict[str, Environment] = {
    "reacher": Environment("Reacher-v5", 1000, 1),
    "swimmer": Environment("Swimmer-v5", 1000, 10),
    "hopper": Environment("Hopper-v5", 10_000, 5),
}


# ---------------------------------------------------------------------------- experts
class ReacherExpert:
    """Inverse kinematics to the target, then PD control of the two joints.

    Observation: cos q (2), sin q (2), target (2), joint velocities (2), fingertip - target
    (2). Of the two elbow solutions the one closer to the current angles is tracked.
    """

    links = (0.1, 0.11)  # shoulder-elbow and elbow-fingertip lengths of reacher.xml

    def __init__(self, kp: float = 0.5, kd: float = 0.1) -> None:
        self.kp, self.kd = kp, kd

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        l1, l2 = self.links
        q = np.arctan2(obs[2:4], obs[0:2])
        tx, ty = obs[4], obs[5]
        cos_elbow = np.clip((tx * tx + ty * ty - l1 * l1 - l2 * l2) / (2 * l1 * l2), -1, 1)
        best, best_gap = q, math.inf
        for elbow in (np.arccos(cos_elbow), -np.arccos(cos_elbow)):
            shoulder = math.atan2(ty, tx) - math.atan2(l2 * math.sin(elbow),
                                                       l1 + l2 * math.cos(elbow))
            goal = np.array([shoulder, elbow])
            gap = float(np.abs(_wrap(goal - q)).sum())
            if gap < best_gap:
                best, best_gap = goal, gap
        return np.clip(self.kp * _wrap(best - q) - self.kd * obs[6:8], -1, 1)


class SwimmerExpert:
    """Feedback oscillator: torques sin(theta + offset), sin(theta + offset - lag).

    theta = atan2(-q1_dot / omega, q1) is the phase of the first joint's oscillation.
    Observation: body angle, q1, q2, then velocities (vx, vy, body, q1_dot, q2_dot).
    """

    def __init__(self, omega: float = 3.0, offset: float = 3.4, lag: float = 0.7) -> None:
        self.omega, self.offset, self.lag = omega, offset, lag

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        theta = math.atan2(-obs[6] / self.omega, obs[1]) + self.offset
        return np.array([math.sin(theta), math.sin(theta - self.lag)])


class LinearPolicy:
    """a = clip(K (s - mean) / std, -1, 1): the policy class of augmented random search."""

    def __init__(self, gain: np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
        self.gain, self.mean, self.std = gain, mean, std

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.clip(self.gain @ ((obs - self.mean) / self.std), -1, 1)

    def save(self, path: str | os.PathLike) -> None:
        import io

        buffer = io.BytesIO()
        np.savez(buffer, gain=self.gain, mean=self.mean, std=self.std)
        write_atomic(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> LinearPolicy:
        arrays = load_npz(path, required=("gain", "mean", "std"))
        return cls(arrays["gain"], arrays["mean"], arrays["std"])


def random_search(
    env: Any,
    iterations: int = 100,
    *,
    directions: int = 8,
    top: int = 4,
    step: float = 0.02,
    exploration: float = 0.03,
    target_return: float = 2500.0,
    seed: int = 0,
    progress: Callable[[int, float], None] | None = None,
) -> LinearPolicy:
    """Augmented random search (ARS V2-t) for a linear policy, seeded and deterministic.

    Every iteration tries ``directions`` random perturbations of K in both signs, keeps
    the ``top`` best and moves K along them; states are normalized by running statistics.
    The alive bonus (1 per step) is subtracted during the search, as ARS does, so that
    standing still is not a local optimum. Every 10 iterations the policy is evaluated
    (3 episodes without perturbation); the best one is returned, and the search stops
    early once it reaches ``target_return``.
    """
    rng = np.random.default_rng(seed)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    gain = np.zeros((act_dim, obs_dim))
    states = _RunningMoments(obs_dim)
    best, best_return = LinearPolicy(gain.copy(), np.zeros(obs_dim), np.ones(obs_dim)), -math.inf
    for it in range(1, iterations + 1):
        mean, std = states.mean.copy(), states.std()
        deltas = rng.normal(size=(directions, act_dim, obs_dim))
        scores = np.zeros((directions, 2))
        for k, delta in enumerate(deltas):
            for j, sign in enumerate((1, -1)):
                policy = LinearPolicy(gain + sign * exploration * delta, mean, std)
                ret, visited = _episode(env, policy, int(rng.integers(10**9)), bonus=-1.0)
                states.push(visited)
                scores[k, j] = ret
        keep = np.argsort(-scores.max(axis=1))[:top]
        spread = scores[keep].std() + 1e-8
        gain += step / (top * spread) * np.einsum("k,kij->ij", scores[keep, 0] - scores[keep, 1],
                                                  deltas[keep])
        if it % 10 == 0 or it == iterations:
            candidate = LinearPolicy(gain.copy(), states.mean.copy(), states.std())
            score = float(np.mean(episode_returns(env, candidate, 3, seed=10_000 + it)))
            if progress is not None:
                progress(it, score)
            if score > best_return:
                best, best_return = candidate, score
            if score >= target_return:
                break
    return best


class _RunningMoments:
    """Count, mean and sum of squared deviations of states, merged batch by batch."""

    def __init__(self, dim: int) -> None:
        self.count, self.mean, self.m2 = 0, np.zeros(dim), np.zeros(dim)

    def push(self, batch: np.ndarray) -> None:
        n = len(batch)
        if n == 0:
            return
        mean = batch.mean(axis=0)
        total = self.count + n
        delta = mean - self.mean
        self.m2 += ((batch - mean) ** 2).sum(axis=0) + delta**2 * self.count * n / total
        self.mean += delta * n / total
        self.count = total

    def std(self) -> np.ndarray:
        if self.count < 2:
            return np.ones_like(self.mean)
        return np.sqrt(self.m2 / (self.count - 1)) + 1e-8


# ---------------------------------------------------------------------------- rollouts
def make_env(task: str) -> Any:
    """The gymnasium environment of a task; a clear error when MuJoCo is not installed."""
    if task not in ENVIRONMENTS:
        raise NCInputError(f"unknown task '{task}'; choose from: {', '.join(ENVIRONMENTS)}")
    try:
        import gymnasium
        import mujoco  # noqa: F401
    except ImportError:
        raise NCInputError(
            "the MuJoCo tasks need the optional extra: pip install 'nclab[mujoco]'"
        ) from None
    return gymnasium.make(ENVIRONMENTS[task].env_id)


def _episode(
    env: Any, policy: Policy, seed: int, noise: float = 0.0,
    rng: np.random.Generator | None = None, bonus: float = 0.0,
) -> tuple[float, np.ndarray]:
    """Run one episode; return its total reward (plus ``bonus`` per step) and the states."""
    obs, _ = env.reset(seed=seed)
    total, states = 0.0, []
    while True:
        states.append(obs)
        action = policy(obs)
        if noise:
            action = np.clip(action + noise * rng.normal(size=action.shape), -1, 1)
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward) + bonus
        if terminated or truncated:
            return total, np.asarray(states)


def episode_returns(env: Any, policy: Policy | None, episodes: int, seed: int = 0) -> np.ndarray:
    """Returns (episodes,) of ``policy``, or of uniform random actions when it is None."""
    if policy is None:
        space = env.action_space
        space.seed(seed)
        policy = lambda obs: space.sample()  # noqa: E731
    return np.array([_episode(env, policy, seed + k)[0] for k in range(episodes)])


def collect(
    env: Any, policy: Policy, num_samples: int, *, stride: int = 1, noise: float = 0.1,
    seed: int = 0, progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(states, expert actions) from episodes run with exploration noise.

    Every ``stride``-th state of each episode is kept, until ``num_samples`` are in.
    Returns arrays of shapes (num_samples, obs_dim) and (num_samples, act_dim).
    """
    rng = np.random.default_rng(seed)
    states: list[np.ndarray] = []
    episode, have = 0, 0
    while have < num_samples:
        _, visited = _episode(env, policy, seed + episode, noise, rng)
        kept = visited[::stride][: num_samples - have]
        states.append(kept)
        have += len(kept)
        episode += 1
        if progress is not None:
            progress(have)
    x = np.concatenate(states)
    return x, np.stack([policy(s) for s in x])


def expert_policy(
    task: str, env: Any = None, *, policy_file: str | os.PathLike | None = None,
    search_iterations: int = 100, seed: int = 0,
    progress: Callable[[int, float], None] | None = None,
) -> Policy:
    """The expert of a task. Hopper's is read from ``policy_file`` when it exists, else
    found by random search (and written there when a path is given)."""
    if task == "reacher":
        return ReacherExpert()
    if task == "swimmer":
        return SwimmerExpert()
    if task != "hopper":
        raise NCInputError(f"unknown task '{task}'; choose from: {', '.join(ENVIRONMENTS)}")
    if policy_file is not None and os.path.exists(policy_file):
        return LinearPolicy.load(policy_file)
    policy = random_search(env if env is not None else make_env(task), search_iterations,
                           seed=seed, progress=progress)
    if policy_file is not None:
        policy.save(policy_file)
    return policy


def imitation_data(
    task: str,
    num_samples: int | None = None,
    *,
    test_fraction: float = 0.2,
    noise: float = 0.1,
    eval_episodes: int = 5,
    seed: int = 0,
    policy_file: str | os.PathLike | None = None,
    search_iterations: int = 100,
    search_progress: Callable[[int, float], None] | None = None,
    collect_progress: Callable[[int], None] | None = None,
) -> DatasetSplits:
    """(state, expert action) pairs of a MuJoCo task, and how good the expert is.

    Parameters
    ----------
    task : {"reacher", "swimmer", "hopper"}
    num_samples : int, optional
        Train + test samples; the paper's size by default (1k, 1k, 10k).
    test_fraction : float
        The last samples (from the last episodes) form the test set.
    noise : float
        Standard deviation of the exploration noise on executed actions.
    eval_episodes : int
        Episodes over which the expert and a uniform random policy are scored.
    seed : int
    policy_file : path, optional
        Hopper: where the expert's linear policy is read from / saved to.
    search_iterations : int
        Hopper: most iterations of the random search.

    Returns
    -------
    DatasetSplits
        ``info`` holds ``expert_return`` and ``random_return`` (means over
        ``eval_episodes``), their standard deviations, and how the data were made.
    """
    env = make_env(task)
    spec = ENVIRONMENTS[task]
    num_samples = spec.num_samples if num_samples is None else int(num_samples)
    if num_samples < 2:
        raise NCInputError(f"num_samples must be >= 2; got {num_samples}")
    if not 0 < test_fraction < 1:
        raise NCInputError(f"test_fraction must lie in (0, 1); got {test_fraction}")
    if noise < 0 or eval_episodes < 1:
        raise NCInputError("noise must be >= 0 and eval_episodes >= 1")
    try:
        policy = expert_policy(task, env, policy_file=policy_file, seed=seed,
                               search_iterations=search_iterations, progress=search_progress)
        expert = episode_returns(env, policy, eval_episodes, seed=1_000_000 + seed)
        random = episode_returns(env, None, eval_episodes, seed=1_000_000 + seed)
        x, y = collect(env, policy, num_samples, stride=spec.stride, noise=noise,
                       seed=2_000_000 + seed, progress=collect_progress)
    finally:
        env.close()
    cut = min(max(int(round(num_samples * (1 - test_fraction))), 1), num_samples - 1)
    info = {
        "task": task, "env_id": spec.env_id, "num_samples": num_samples, "noise": noise,
        "stride": spec.stride, "seed": seed, "eval_episodes": eval_episodes,
        "expert_return": float(expert.mean()), "expert_return_std": float(expert.std()),
        "random_return": float(random.mean()), "random_return_std": float(random.std()),
    }
    return make_regression_data(x[:cut], y[:cut], x[cut:], y[cut:], name=task, info=info)


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angles mapped to [-pi, pi)."""
    return (angle + np.pi) % (2 * np.pi) - np.pi
