"""The NRC evaluator over a 2-process gloo group gives the values of one pass over all."""

import json
import os
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nclab.models import build_model
from nclab.train import EvalBatches, EvalContext, NRCEvaluator, regression_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup():
    torch.manual_seed(0)
    model = build_model("mlp", (5,), 2, widths=[12, 12])
    x = torch.randn(90, 5)
    y = torch.stack([x[:, 0] - x[:, 1] ** 2, torch.sin(x[:, 2])], dim=1)
    return model, x, y


def _evaluate(rank: int, world: int, distributed: bool) -> dict:
    model, x, y = _setup()
    loaders = {split: EvalBatches(x, y, 16, rank, world) for split in ("train", "test")}
    context = EvalContext(model, loaders, "classifier", 1, regression_config(),
                          torch.device("cpu"), distributed)
    return NRCEvaluator()(context)


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        row = _evaluate(rank, world, distributed=True)
        with open(os.path.join(out, f"rank{rank}.json"), "w") as handle:
            json.dump(row, handle)
    finally:
        dist.destroy_process_group()


def test_two_process_nrc_evaluator(tmp_path):
    # fork: the children inherit the imported modules instead of importing them again
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    whole = _evaluate(0, 1, distributed=False)
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert set(got) == set(whole)
        for key, value in whole.items():  # head_gram and target_cov are n x n lists
            np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-9, err_msg=key)
