"""Tiny models and data shared by the integration tests, and the comparison they make:
every logged value equals what ``nclab.track`` gives on the same model and data."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nclab

NUM_CLASSES, DIM, SAMPLES = 3, 6, 45


def clusters(samples: int = SAMPLES, seed: int = 0) -> TensorDataset:
    """Three Gaussian clusters in 6 dimensions; an odd count, so that DistributedSampler
    pads two ranks."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(samples) % NUM_CLASSES
    centres = 2 * torch.randn(NUM_CLASSES, DIM, generator=gen)
    x = centres[labels] + torch.randn(samples, DIM, generator=gen)
    return TensorDataset(x, labels)


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(DIM, 16), nn.ReLU(), nn.Linear(16, NUM_CLASSES))


def tracked(model: nn.Module, dataset: TensorDataset, prefix: str = "") -> dict[str, float]:
    """``nclab.track`` of ``model`` on the whole data set, as flat scalars."""
    metrics = nclab.track(model, DataLoader(dataset, batch_size=16))
    return {key: value for key, value in metrics.scalars(prefix).items() if math.isfinite(value)}


def assert_same_values(logged: Mapping[str, float], expected: Mapping[str, float],
                       rel: float = 1e-6) -> None:
    """Same names, and every value within ``rel`` (relative) of the expected one."""
    assert sorted(logged) == sorted(expected)
    for name, value in expected.items():
        assert math.isclose(float(logged[name]), value, rel_tol=rel, abs_tol=1e-9), (
            name, float(logged[name]), value)
