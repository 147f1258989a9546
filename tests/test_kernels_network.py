"""The trained two-layer network: it fits, records NC1, and reports divergence."""

import math

import numpy as np
import pytest
import torch

from nclab import measure
from nclab.core.errors import NCInputError
from nclab.kernels import TwoLayerNetwork, d1, train_network


def test_training_fits_d1_and_tracks_hidden_nc1():
    x, y = d1(4).sample((24, 40), rng=0)
    result = train_network(x, y, width=64, steps=150, records=8, seed=1)
    history = result.history
    assert history["step"][0] == 0 and history["step"][-1] == 150
    assert len(history["step"]) == len(history["nc1"]) == len(history["loss"]) >= 5
    assert result.accuracy == 1.0 and not result.diverged
    assert history["loss"][-1] < 0.2 * history["loss"][0]
    # the recorded NC1 is nc1_trace of the foundation's metrics on the hidden features
    net = TwoLayerNetwork(4, 64, 1, "erf", generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hidden = net.hidden(torch.from_numpy(x).float())
    assert result.nc1_init == pytest.approx(measure(hidden, y).nc1_trace, rel=1e-5)
    assert result.nc1 == history["nc1"][-1] and result.nc1_init == history["nc1"][0]


def test_same_seed_same_run_and_relu_multiclass():
    x, y = d1(2).sample(32, rng=0)
    a = train_network(x, y, width=16, steps=20, seed=3)
    b = train_network(x, y, width=16, steps=20, seed=3)
    assert a.history == b.history
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 10)
    points = rng.normal(size=(3, 5))[labels] * 3 + rng.normal(size=(30, 5)) * 0.3
    multi = train_network(points, labels, width=32, steps=60, activation="relu", lr=0.5)
    assert math.isfinite(multi.nc1) and multi.accuracy > 0.9


def test_divergence_is_reported():
    x, y = d1(8).sample(32, rng=0)
    result = train_network(x, y, width=16, steps=50, lr=1e3)
    assert result.diverged and math.isnan(result.nc1)
    assert not math.isfinite(result.history["loss"][-1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, "steps and records"),
        ({"lr": 0.0}, "lr must be"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"activation": "tanh"}, "unknown activation"),
        ({"width": 0}, "width"),
    ],
)
def test_bad_input(kwargs, message):
    x, y = d1(2).sample(8, rng=0)
    with pytest.raises(NCInputError, match=message):
        train_network(x, y, **kwargs)
    with pytest.raises(NCInputError, match="single class"):
        train_network(x, np.zeros(8, int))


def test_update_is_torch_sgd_with_weight_decay():
    x, y = d1(3).sample(16, rng=0)
    ours = train_network(x, y, width=8, steps=3, lr=0.3, weight_decay=0.1, seed=2, records=3)
    net = TwoLayerNetwork(3, 8, 1, "erf", generator=torch.Generator().manual_seed(2))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.3, weight_decay=0.1)
    xt = torch.from_numpy(x).float()
    target = torch.from_numpy(np.where(y == 1, 1.0, -1.0)).float()[:, None]
    losses = []
    for _ in range(4):
        optimizer.zero_grad()
        loss = 0.5 * ((net(xt) - target) ** 2).sum(dim=1).mean()
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
    assert ours.history["step"] == [0, 1, 2, 3]
    assert ours.history["loss"] == pytest.approx(losses, rel=1e-6)
