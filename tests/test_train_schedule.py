"""Log-spaced logging epochs, the step learning rate, sharded batches, config round trips."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nclab import NCInputError
from nclab.train import (
    EvalBatches,
    TrainBatches,
    TrainConfig,
    config_diff,
    learning_rate,
    log_spaced_epochs,
)


@settings(max_examples=200, deadline=None)
@given(epochs=st.integers(1, 3000), points=st.integers(1, 120))
def test_log_spaced_epochs(epochs, points):
    chosen = log_spaced_epochs(epochs, points)
    assert len(chosen) == min(points, epochs)
    assert chosen[-1] == epochs and all(1 <= e <= epochs for e in chosen)
    assert all(a < b for a, b in zip(chosen, chosen[1:], strict=False))
    if 2 <= points < epochs:
        assert chosen[0] == 1
        ideal = math.log(epochs) / (points - 1)
        for a, b in zip(chosen, chosen[1:], strict=False):
            # log-spaced: no gap much wider than the ideal one, except between
            # consecutive epochs (where rounding to integers forces it)
            assert b == a + 1 or math.log(b / a) <= 2 * ideal + 1e-12, (a, b)


def test_papyan_schedule_350_epochs():
    chosen = log_spaced_epochs(350, 50)
    assert chosen[:10] == list(range(1, 11)) and chosen[-3:] == [293, 320, 350]
    rates = [learning_rate(e, 0.1, 350, (1 / 3, 2 / 3), 0.1) for e in range(1, 351)]
    assert rates[116] == 0.1 and rates[117] == pytest.approx(0.01)  # after epoch 117
    assert rates[232] == pytest.approx(0.01) and rates[233] == pytest.approx(0.001)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_rank_batches_partition_the_single_process_batches(world):
    x = torch.arange(50.0)[:, None]
    y = torch.arange(50) % 3
    single = [set(xb[:, 0].tolist()) for xb, _, _ in TrainBatches(x, y, 16, seed=7, epoch=4)]
    shards = [list(TrainBatches(x, y, 16, seed=7, epoch=4, rank=r, world=world))
              for r in range(world)]
    for b, expected in enumerate(single):
        parts = [set(shard[b][0][:, 0].tolist()) for shard in shards]
        assert set().union(*parts) == expected
        assert sum(len(p) for p in parts) == len(expected)
        assert all(shard[b][2] == len(expected) for shard in shards)  # global batch size
    other_epoch = [set(xb[:, 0].tolist()) for xb, _, _ in TrainBatches(x, y, 16, 7, 5)]
    assert other_epoch != single
    evaluated = torch.cat([xb for r in range(world)
                           for xb, _ in EvalBatches(x, y, 7, rank=r, world=world)])
    assert sorted(evaluated[:, 0].tolist()) == x[:, 0].tolist()  # no padding, no repeats


def test_config_round_trip_and_diff():
    config = TrainConfig(classes=(0, 3), model_options={"widths": [8]}, lr_milestones=(0.5,))
    data = config.to_dict()
    assert TrainConfig.from_dict(data) == config
    changed = config.updated(lr=0.2).to_dict()
    assert config_diff(data, changed) == ["lr: 0.05 -> 0.2"]
    with pytest.raises(NCInputError, match="unknown config keys: colour"):
        TrainConfig.from_dict({**data, "colour": "red"})
    with pytest.raises(NCInputError, match="momentum must lie in"):
        TrainConfig(momentum=1.0)
