"""The NRC evaluator over a 2-process gloo group gives the values of one pass over all,
also when one rank's shard is empty."""

from functools import partial

import numpy as np
import pytest
import torch
from distributed_helpers import run_ranks

from nclab.models import build_model
from nclab.train import EvalBatches, EvalContext, NRCEvaluator, regression_config
from nclab.train.tasks import make_task


def _setup():
    torch.manual_seed(0)
    model = build_model("mlp", (5,), 2, widths=[12, 12])
    x = torch.randn(90, 5)
    y = torch.stack([x[:, 0] - x[:, 1] ** 2, torch.sin(x[:, 2])], dim=1)
    return model, x, y


def _evaluate(rank: int, world: int, distributed: bool, empty_rank: int | None = None) -> dict:
    """The evaluator's row and the mean loss; rank ``empty_rank`` has no samples (the
    other takes them all)."""
    model, x, y = _setup()
    if empty_rank is not None:
        keep = slice(0, 0) if rank == empty_rank else slice(None)
        x, y, rank, world = x[keep], y[keep], 0, 1
    loaders = {split: EvalBatches(x, y, 16, rank, world) for split in ("train", "test")}
    config = regression_config(dataset="teacher")
    context = EvalContext(model, loaders, "classifier", 1, config, torch.device("cpu"),
                          distributed, make_task(config))
    return {**NRCEvaluator()(context), "loss": context.loss_and_error("train")[0]}


@pytest.mark.parametrize("empty_rank", [None, 1])
def test_two_process_nrc_evaluator(tmp_path, empty_rank):
    ranks = run_ranks(partial(_evaluate, distributed=True, empty_rank=empty_rank), tmp_path)
    whole = _evaluate(0, 1, distributed=False)
    for got in ranks:
        assert set(got) == set(whole)
        for key, value in whole.items():  # head_gram and target_cov are n x n lists
            np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-9, err_msg=key)
