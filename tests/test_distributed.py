"""all_reduce() over a real 2-process gloo group gives the statistics of the whole data."""

import os

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from distributed_helpers import free_port
from reference import gaussian_classes

from nclab import CollapseStats, DecisionStats


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        H, y = gaussian_classes(np.random.default_rng(0), sizes=[30, 5, 60, 12, 1, 44])
        # uneven shards; rank 1 never sees class 4
        shard = slice(0, 50) if rank == 0 else slice(50, None)
        Hs, ys = H[shard], y[shard]
        if rank == 1:
            Hs, ys = Hs[ys != 4], ys[ys != 4]
        stats = CollapseStats(6, per_class_scatter=True).update(Hs, ys).all_reduce()
        W = np.arange(60.0).reshape(6, 10) % 7
        decisions = DecisionStats.from_stats(stats, W).update(Hs, ys).all_reduce()
        state = {k: v.numpy() for k, v in stats.state_dict().items()}
        state["decisions"] = np.array(decisions.compute())
        state["class_scatter"] = stats.class_scatter()
        # rank 0's features 1e130 times larger: the ranks hold other units (exponents)
        mixed = CollapseStats(6).update(Hs * (1e130 if rank == 0 else 1.0), ys).all_reduce()
        state["mixed_means"] = mixed.means
        state["mixed_scaled_scatter"] = mixed.scaled_scatter()
        state["mixed_scale"] = np.array(mixed.scale)
        np.savez(os.path.join(out, f"rank{rank}.npz"), **state)
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_all_reduce(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    H, y = gaussian_classes(np.random.default_rng(0), sizes=[30, 5, 60, 12, 1, 44])
    keep = np.ones(len(y), bool)
    keep[50:] = y[50:] != 4
    H, y = H[keep], y[keep]
    whole = CollapseStats(6, per_class_scatter=True).update(H, y)
    W = np.arange(60.0).reshape(6, 10) % 7
    expected_decisions = DecisionStats.from_stats(whole, W).update(H, y).compute()
    mixed = CollapseStats(6).update(np.where(np.arange(len(y))[:, None] < 50, H * 1e130, H), y)
    for rank in range(2):
        got = np.load(tmp_path / f"rank{rank}.npz", allow_pickle=False)
        assert float(got["mixed_scale"]) == mixed.scale
        np.testing.assert_allclose(got["mixed_means"], mixed.means, rtol=1e-12)
        np.testing.assert_allclose(got["mixed_scaled_scatter"], mixed.scaled_scatter(),
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(got["counts"], whole.counts)
        np.testing.assert_allclose(got["means"], whole.means, rtol=1e-12)
        np.testing.assert_allclose(got["spread"], whole.spread, rtol=1e-10)
        np.testing.assert_allclose(got["scatter"], whole.scatter, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(got["decisions"], expected_decisions)
        np.testing.assert_allclose(got["class_scatter"], whole.class_scatter(), rtol=1e-10,
                                   atol=1e-10)


def test_all_reduce_without_a_process_group_keeps_the_local_statistics() -> None:
    rng = np.random.default_rng(1)
    h, y = rng.normal(size=(30, 3)), np.repeat(np.arange(3), 10)
    stats = CollapseStats(3).update(h, y)
    before = {k: v.clone() for k, v in stats.state_dict().items()}
    assert stats.all_reduce() is stats
    assert all(torch.equal(before[k], v) for k, v in stats.state_dict().items())
    decisions = DecisionStats.from_stats(stats, rng.normal(size=(3, 3))).update(h, y)
    assert decisions.all_reduce().compute() == decisions.compute()
