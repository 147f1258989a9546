"""A small standalone trainer for regression collapse: the paper's MLP with an MSE head.

Andriopoulos et al. train an MLP of 3 hidden layers of 256 ReLU units with SGD (learning
rate 1e-2, batch 256) and weight decay on all parameters, and follow NRC1-NRC3 of the
last hidden layer (the features) and the linear head over training. This module does that
on a :class:`~nclab.data.regression_base.RegressionData`, on the CPU or a GPU.

NRC3's gamma follows SPEC: chosen by grid search on the final W, then held fixed for every
recorded epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nclab.data.regression_base import RegressionData
from nclab.errors import NCInputError
from nclab.regression import RegressionStats, compute_regression_metrics


class RegressionMLP(nn.Module):
    """``depth`` hidden ReLU layers of ``width`` units (the features), then a linear head."""

    def __init__(self, input_dim: int, target_dim: int, width: int = 256, depth: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        for k in range(depth):
            layers += [nn.Linear(input_dim if k == 0 else width, width), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, target_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclass
class RegressionRun:
    """What a training run recorded: one dict of metrics per recorded epoch."""

    history: list[dict[str, Any]] = field(default_factory=list)
    gamma: float | None = None
    model: RegressionMLP | None = None


def train_regression(
    data: RegressionData,
    *,
    weight_decay: float = 1e-2,
    epochs: int = 200,
    lr: float = 1e-2,
    batch_size: int = 256,
    width: int = 256,
    depth: int = 3,
    record: int = 20,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: Callable[[int, dict[str, Any]], None] | None = None,
) -> RegressionRun:
    """Train the MLP with SGD and MSE, recording NRC metrics at ``record`` log-spaced epochs.

    Inputs are standardized with the training mean and standard deviation.

    Returns
    -------
    RegressionRun
        ``history[k]`` has ``epoch``, ``train_mse``, ``test_mse`` and the train-set
        ``nrc1``, ``nrc2``, ``nrc3`` (with the final gamma), ``r2`` and ``top_n_explained``.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0 or weight_decay < 0:
        raise NCInputError("need epochs >= 1, batch_size >= 1, lr > 0 and weight_decay >= 0")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, y, x_test, y_test = _tensors(data, device)
    model = RegressionMLP(x.shape[1], y.shape[1], width, depth).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
    marks = set(np.unique(np.geomspace(1, epochs, record).round().astype(int)).tolist())
    run, weights = RegressionRun(model=model), []
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=generator).to(x.device)
        for batch in order.split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
        if epoch in marks:
            row, stats = _evaluate(model, x, y, x_test, y_test)
            row["epoch"] = epoch
            weights.append((stats, model.head.weight.detach().cpu().double().numpy().copy()))
            run.history.append(row)
            if progress is not None:
                progress(epoch, row)
    _fill_nrc3(run, weights)
    return run


def _tensors(data: RegressionData, device: Any) -> tuple[torch.Tensor, ...]:
    flat = data.x.reshape(len(data.x), -1).astype(np.float64)
    mean, std = flat.mean(axis=0), flat.std(axis=0) + 1e-8
    test = data.x_test.reshape(len(data.x_test), -1).astype(np.float64)
    arrays = ((flat - mean) / std, data.y, (test - mean) / std, data.y_test)
    return tuple(torch.as_tensor(np.asarray(a, dtype=np.float32), device=device) for a in arrays)


@torch.no_grad()
def _evaluate(model: RegressionMLP, x, y, x_test, y_test) -> tuple[dict[str, Any], Any]:
    model.eval()
    stats = RegressionStats().update(model.body(x), y)
    head = model.head
    metrics = compute_regression_metrics(stats, head.weight, head.bias, gamma=None)
    test_mse = float(nn.functional.mse_loss(model(x_test), y_test)) if len(x_test) else None
    row = {"train_mse": metrics.mse, "test_mse": test_mse, "r2": metrics.r2,
           "nrc1": metrics.nrc1, "nrc2": metrics.nrc2,
           "top_n_explained": metrics.top_n_explained}
    return row, stats


def _fill_nrc3(run: RegressionRun, weights: list[tuple[RegressionStats, np.ndarray]]) -> None:
    """gamma by grid search on the final W, then NRC3 of every recorded W at that gamma."""
    final_stats, final_w = weights[-1]
    final = compute_regression_metrics(final_stats, final_w, gamma="search")
    run.gamma = final.gamma
    for row, (stats, w) in zip(run.history, weights, strict=True):
        row["nrc3"] = None
        if run.gamma is not None:
            row["nrc3"] = compute_regression_metrics(stats, w, gamma=run.gamma).nrc3
