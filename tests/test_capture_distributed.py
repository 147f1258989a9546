"""``nclab.track`` over a real 2-process gloo group: the padding of a DistributedSampler
is not counted, an empty shard is no error, and an error on one rank stops both alike."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
from distributed_helpers import run_ranks
from reference import reference_metrics
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import nclab
from nclab.capture import sharding
from nclab.core import distributed
from nclab.core.errors import NCInputError

SAMPLES, CLASSES, DIM = 101, 3, 5  # odd: a DistributedSampler over 2 ranks pads one sample


def _data() -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(SAMPLES) % CLASSES
    x = 3 * torch.randn(CLASSES, DIM, generator=gen)[labels] + torch.randn(SAMPLES, DIM,
                                                                          generator=gen)
    return TensorDataset(x.double(), labels)


def _model() -> nn.Sequential:
    """In float64: batches of other sizes then change the sums only by float64 rounding."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(DIM, 8), nn.ReLU(), nn.Linear(8, CLASSES)).double()


def _values(metrics: nclab.CollapseMetrics) -> dict[str, float | None]:
    return {key: value for key, value in metrics.to_dict().items()
            if value is None or isinstance(value, (int, float))}


def _assert_close(got: dict, want: dict, rel: float = 1e-12) -> None:
    assert list(got) == list(want)
    for key, value in want.items():
        if value is None:
            assert got[key] is None, key
        else:
            assert got[key] == pytest.approx(value, rel=rel, abs=1e-12), key


# ---------------------------------------------------------------- DistributedSampler
def _sampled(rank: int, world: int) -> dict:
    dataset = _data()
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=3)
    metrics = nclab.track(_model(), DataLoader(dataset, batch_size=16, sampler=sampler))
    return _values(metrics)


def test_distributed_sampler_padding_is_not_counted(tmp_path):
    ranks = run_ranks(_sampled, tmp_path)
    dataset, model = _data(), _model()
    single = _values(nclab.track(model, DataLoader(dataset, batch_size=16)))
    x, y = dataset.tensors
    with torch.no_grad():
        features = model[:2](x).numpy()
    brute = reference_metrics(features, y.numpy(), model[2].weight.detach().double().numpy(),
                              model[2].bias.detach().double().numpy())
    for got in ranks:
        assert got["num_samples"] == SAMPLES
        _assert_close(got, single)
        assert got["nc1"] == pytest.approx(brute["nc1"], rel=1e-9)
        assert got["accuracy"] == pytest.approx(brute["accuracy"], abs=1e-15)


def _loader_indices(loader) -> list[int]:
    return [int(i) for batch in loader for i in np.atleast_1d(batch[0][..., 0].numpy())]


class _Subclass(DistributedSampler):
    pass


def test_unpadded_shards_partition_the_data_set():
    dataset = TensorDataset(torch.arange(SAMPLES)[:, None], torch.zeros(SAMPLES, dtype=int))
    for batch_size in (16, None):
        shards = [sharding.unpadded(DataLoader(dataset, batch_size=batch_size,
                                               sampler=DistributedSampler(dataset, 2, rank)))
                  for rank in range(2)]
        seen = sorted(_loader_indices(shards[0]) + _loader_indices(shards[1]))
        assert seen == list(range(SAMPLES)), batch_size
    hundred = TensorDataset(torch.zeros(100, 1))
    even = DataLoader(hundred, sampler=DistributedSampler(hundred, 2, 0))
    assert sharding.unpadded(even) is even  # nothing padded: the loader as it is


@pytest.mark.parametrize(("drop_last", "says"), [(False, "repeats 1 sample to pad"),
                                                 (True, "leaves 1 sample out")])
def test_a_sampler_that_cannot_be_replaced_warns_with_the_count(drop_last, says):
    dataset = TensorDataset(torch.zeros(SAMPLES, 1))
    loader = DataLoader(dataset, sampler=_Subclass(dataset, 2, 1, drop_last=drop_last))
    with pytest.warns(sharding.PaddedShardWarning, match=f"_Subclass.*{says}"):
        assert sharding.unpadded(loader) is loader


def test_a_plain_loader_is_left_as_it_is():
    loader = DataLoader(TensorDataset(torch.zeros(5, 1)), batch_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sharding.unpadded(loader) is loader


# ---------------------------------------------------------------- empty shards
def _ood() -> torch.Tensor:
    return torch.randn(30, DIM, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _with_empty_shard(rank: int, world: int) -> dict:
    dataset = _data() if rank == 0 else TensorDataset(torch.zeros(0, DIM, dtype=torch.float64),
                                                      torch.zeros(0, dtype=int))
    ood = [_ood()] if rank == 0 else []
    results = nclab.track(_model(), DataLoader(dataset, batch_size=16), layers=["0"],
                          ood_loader=ood)
    return {name: _values(metrics) for name, metrics in results.items()}


def test_an_empty_shard_contributes_nothing(tmp_path):
    ranks = run_ranks(_with_empty_shard, tmp_path)
    single = nclab.track(_model(), DataLoader(_data(), batch_size=16), layers=["0"],
                         ood_loader=[_ood()])
    for got in ranks:
        assert list(got) == list(single) == ["0", "2"]  # depth order, also on rank 1
        for name, metrics in single.items():
            _assert_close(got[name], _values(metrics))
        assert got["2"]["nc5_ood_orthogonality"] is not None


def _all_empty(rank: int, world: int) -> dict:
    try:
        nclab.track(_model(), [])
    except NCInputError as exc:
        return {"error": str(exc)}
    return {}


def test_no_batches_on_any_rank_is_one_error_on_each(tmp_path):
    for got in run_ranks(_all_empty, tmp_path):
        assert got == {"error": "the loader yielded no batches on any rank"}


# ---------------------------------------------------------------- an error on one rank
def _failing_forward(rank: int):
    def forward(model, batch):
        if rank == 1:
            raise RuntimeError("boom on one rank")
        return model(batch[0])
    return forward


def _scenarios(rank: int, world: int) -> dict:
    """Each scenario fails on rank 1 only; after each, one all_reduce shows that the
    ranks' collectives still pair (3 = 1 + 2)."""
    dataset = _data()
    loader = DataLoader(dataset, batch_size=16, sampler=range(rank, SAMPLES, world))
    bad_labels = [(dataset.tensors[0][:4], torch.tensor([0, 1, 2, 7 if rank else 0]))]

    def long_message():
        with distributed.agreed():
            if rank == 1:
                raise NCInputError("é" * 2000)

    scenarios = {
        "first pass": lambda: nclab.track(_model(), bad_labels if rank else loader),
        "second pass": lambda: nclab.track(_model(), iter(loader) if rank else loader,
                                           cache_bytes=0),
        "forward": lambda: nclab.track(_model(), loader, forward=_failing_forward(rank),
                                       labels=lambda batch: batch[1]),
        "long message": long_message,
    }
    out = {}
    for name, scenario in scenarios.items():
        try:
            scenario()
            out[name] = "no error"
        except distributed.RankFailed as exc:
            out[name] = f"{type(exc).__name__} from rank {exc.rank}: {exc}"
        total = torch.tensor([rank + 1.0])
        dist.all_reduce(total)
        out[name + " then"] = float(total)
    return out


def test_an_error_on_one_rank_stops_every_rank_alike(tmp_path):
    zero, one = run_ranks(_scenarios, tmp_path)
    assert zero == one
    assert zero["first pass"] == ("RankFailed from rank 1: rank 1 of 2: label 7 is out of "
                                  "range for num_classes=3: the classifier was taken to be "
                                  "'2', the last nn.Linear (3 outputs); pass classifier= to "
                                  "name another (nn.Linear layers: 0, 2)")
    assert "rank 1 of 2: the features exceed cache_bytes and the loader is a one-shot" in \
        zero["second pass"]
    assert zero["forward"].endswith("rank 1 of 2: RuntimeError: boom on one rank")
    text = zero["long message"].split("rank 1 of 2: ")[1]
    assert set(text) == {"é"} and len(text.encode()) <= distributed.MESSAGE_BYTES
    assert all(zero[name + " then"] == 3.0 for name in ("first pass", "second pass",
                                                        "forward", "long message"))


def test_without_a_process_group_an_agreed_block_raises_as_it_is():
    with pytest.raises(KeyError), distributed.agreed():
        raise KeyError("x")
    distributed.agree(True)
    with pytest.raises(NCInputError, match="^bad thing$"):
        distributed.agree(False, "bad\nthing")
