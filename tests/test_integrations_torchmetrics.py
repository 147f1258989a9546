"""NeuralCollapse as a torchmetrics Metric: streamed batches, torchmetrics' own state
merge and process sync (without a process group) give the metrics of all the data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from docs_helpers import documented, numbers, run_documented
from torch_threads import one_thread  # noqa: F401

import nclab
from nclab import NCInputError

pytest.importorskip("torchmetrics")
pytestmark = pytest.mark.usefixtures("one_thread")

from nclab.integrations.torchmetrics import NeuralCollapse  # noqa: E402

C, D = 4, 5


def _data(n: int = 120, offset: float = 0.0, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (n,), generator=gen)
    y[:C] = torch.arange(C)
    means = 3 * torch.randn(C, D, generator=gen, dtype=torch.float64)
    h = offset + means[y] + torch.randn(n, D, generator=gen, dtype=torch.float64)
    return h, y


def _brute_force_nc1(h: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """nc1 = tr(Sigma_W Sigma_B^+) / C and nc1_trace, straight from the definitions."""
    mu = np.stack([h[y == c].mean(axis=0) for c in range(C)])
    centred = mu - mu.mean(axis=0)
    sigma_b = centred.T @ centred / C
    resid = h - mu[y]
    sigma_w = resid.T @ resid / len(h)
    nc1 = np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=1e-10, hermitian=True)) / C
    return float(nc1), float(np.trace(sigma_w) / np.trace(sigma_b))


def _classifier() -> torch.nn.Linear:
    torch.manual_seed(3)
    return torch.nn.Linear(D, C).double()


def _expected(h, y, head) -> dict[str, float]:
    metrics = nclab.measure(h, y, head.weight.detach(), head.bias.detach())
    return {k: v for k, v in metrics.scalars().items()
            if k not in ("ncc_mismatch", "accuracy")}


def _assert_close(got: dict[str, torch.Tensor], expected: dict[str, float]) -> None:
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        assert math.isclose(float(got[name]), value, rel_tol=1e-9, abs_tol=1e-12), name


def test_streamed_batches_give_the_metrics_of_all_the_data():
    h, y = _data()
    head = _classifier()
    metric = NeuralCollapse(C, classifier=head)
    for hs, ys in zip(h.split(17), y.split(17), strict=True):
        metric.update(hs, ys)
    got = metric.compute()
    _assert_close(got, _expected(h, y, head))
    nc1, nc1_trace = _brute_force_nc1(h.numpy(), y.numpy())
    assert math.isclose(float(got["nc1"]), nc1, rel_tol=1e-9)
    assert math.isclose(float(got["nc1_trace"]), nc1_trace, rel_tol=1e-9)
    assert metric.result().num_samples == len(y)


@pytest.mark.filterwarnings("ignore:The ``compute`` method:UserWarning")
def test_forward_accumulates_and_reset_forgets():
    h, y = _data()
    metric = NeuralCollapse(C, dim=D)
    for hs, ys in zip(h.split(40), y.split(40), strict=True):
        metric(hs, ys)  # forward: this batch's value, and the running state
    assert math.isclose(float(metric.compute()["nc1"]), _brute_force_nc1(h.numpy(),
                                                                         y.numpy())[0],
                        rel_tol=1e-9)
    assert "equinorm_weights" not in metric.compute()  # no classifier given
    metric.reset()
    assert float(metric.moments.abs().sum()) == 0
    with pytest.raises(NCInputError, match="no samples"):
        metric.compute()


@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_torchmetrics_sync_of_two_ranks_merges_exactly(offset):
    """The real sync path of torchmetrics with a stand-in for all_gather: two 'ranks'
    with uneven shards (rank 1 never sees class 0), far from the origin."""
    h, y = _data(offset=offset)
    head = _classifier()
    first = torch.arange(len(y)) < 70
    second = ~first & (y != 0)
    # torchmetrics calls dist_sync_fn(state) for its all_gather: here it returns the
    # states of both ranks, as all_gather would on rank 0
    gathered: list[torch.Tensor] = []
    options = {"dist_sync_fn": lambda tensor, group=None: gathered,
               "distributed_available_fn": lambda: True}
    ranks = [NeuralCollapse(C, classifier=head, **options) for _ in range(2)]
    ranks[0].update(h[first], y[first])
    ranks[1].update(h[second], y[second])
    gathered += [rank.moments.clone() for rank in ranks]
    got = ranks[0].compute()
    assert torch.equal(ranks[0].moments, gathered[0])  # unsynced again after compute
    used = first | second
    _assert_close(got, _expected(h[used], y[used], head))


def test_merge_state_of_two_metrics():
    h, y = _data(seed=1)
    a, b = NeuralCollapse(C, dim=D), NeuralCollapse(C, dim=D)
    a.update(h[:50], y[:50])
    b.update(h[50:], y[50:])
    a.merge_state(b)
    assert math.isclose(float(a.compute()["nc1"]),
                        _brute_force_nc1(h.numpy(), y.numpy())[0], rel_tol=1e-9)


def test_bad_input_is_one_clear_error():
    with pytest.raises(NCInputError, match="dim= or a classifier"):
        NeuralCollapse(C)
    metric = NeuralCollapse(C, dim=D)
    with pytest.raises(NCInputError):
        metric.update(torch.randn(3, D + 1), torch.tensor([0, 1, 2]))
    with pytest.raises(NCInputError):
        metric.update(torch.randn(3, D), torch.tensor([0, 1, C]))


def test_the_documented_example_prints_what_the_docs_say(capsys):
    run_documented("in_your_training.md", "## torchmetrics")
    shown = documented("in_your_training.md", "## torchmetrics")[1]
    assert numbers(capsys.readouterr().out) == pytest.approx(numbers(shown), rel=2e-3)
