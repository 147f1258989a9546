"""RegressionStats.all_reduce() over a real 2-process gloo group equals one pass over all."""

import os

import numpy as np
import torch.distributed as dist
import torch.multiprocessing as mp
from distributed_helpers import free_port
from regression_reference import regression_problem

from nclab import RegressionStats, compute_regression_metrics


def _data():
    H, Y, W, b = regression_problem(np.random.default_rng(0), 150, 9, 3, offset=5.0)
    H[[4, 120]] = 0.0  # zero features: counted in the joint moments, not in the unit ones
    return H, Y, W, b


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        H, Y, _, _ = _data()
        shard = slice(0, 40) if rank == 0 else slice(40, None)  # uneven shards
        stats = RegressionStats().update(H[shard], Y[shard]).all_reduce()
        state = {k: v.numpy() for k, v in stats.state_dict().items()}
        np.savez(os.path.join(out, f"rank{rank}.npz"), **state)
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_all_reduce(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    H, Y, W, b = _data()
    whole = RegressionStats().update(H, Y)
    expected = compute_regression_metrics(whole, W, b)
    reference = whole.state_dict()
    for rank in range(2):
        got = dict(np.load(tmp_path / f"rank{rank}.npz", allow_pickle=False))
        stats = RegressionStats().load_state_dict(got)
        assert stats.num_samples == 150 and stats.zero_features == 2
        np.testing.assert_allclose(got["joint_means"], reference["joint_means"], rtol=1e-12)
        np.testing.assert_allclose(got["joint_scatter"], reference["joint_scatter"], rtol=1e-10,
                                   atol=1e-9)
        np.testing.assert_allclose(got["unit_scatter"], reference["unit_scatter"], rtol=1e-10,
                                   atol=1e-12)
        metrics = compute_regression_metrics(stats, W, b)
        for key in ("nrc1", "nrc2", "nrc3", "mse", "r2"):
            assert np.isclose(getattr(metrics, key), getattr(expected, key), rtol=1e-8), key
