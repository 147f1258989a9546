"""Each statistic declares its state once; persistence, the flat encoding, merge, reset
and sync follow from the declaration, and a loaded state is checked whole.

The scale paths: float32 features at 1e+-13 and float64 at 1e+-250 give the metrics of
the same features at scale 1 through CollapseStats, the torchmetrics metric (one
process and synced), ``nclab.track``, the Lightning and the HF callbacks, and two gloo
ranks.
"""

from __future__ import annotations

import importlib.util
import math
import os
import socket
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from reference import gaussian_classes
from torch_threads import one_thread  # noqa: F401

import nclab
from nclab import CollapseStats, DecisionStats, NCInputError, RegressionStats

pytestmark = pytest.mark.usefixtures("one_thread")


def _classes(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return gaussian_classes(np.random.default_rng(seed), sizes=[20, 9, 31, 14])


def _collapse() -> CollapseStats:
    H, y = _classes()
    return CollapseStats(4).update(H, y)


def _decisions() -> DecisionStats:
    H, y = _classes()
    stats = CollapseStats(4).update(H, y)
    W = np.random.default_rng(1).normal(size=(4, H.shape[1]))
    return DecisionStats.from_stats(stats, W).update(H, y)


def _regression() -> RegressionStats:
    rng = np.random.default_rng(2)
    H = rng.normal(size=(40, 5))
    H[3] = 0  # one feature without direction
    return RegressionStats().update(H, H @ rng.normal(size=(5, 2)))


def _fresh(stat):
    """An empty statistic of the same configuration."""
    if isinstance(stat, DecisionStats):
        return _decisions().reset()
    return type(stat)(**{name: getattr(stat, name) for name in stat.CONFIG})


STATISTICS = {"collapse": _collapse, "decisions": _decisions, "regression": _regression}


# ---------------------------------------------------------------------------- derived methods
@pytest.mark.parametrize("make", STATISTICS.values(), ids=list(STATISTICS))
def test_state_dict_holds_the_configuration_and_every_declared_field(make):
    stat = make()
    declared = [field.key for part in stat._parts().values() for field in part.fields]
    assert list(stat.state_dict()) == list(stat.CONFIG) + declared
    assert stat.vector_size() == sum(int(np.prod(v.shape)) for k, v in stat.state_dict().items()
                                     if k not in stat.CONFIG)


@pytest.mark.parametrize("make", STATISTICS.values(), ids=list(STATISTICS))
def test_state_dict_and_flat_vector_round_trip_bit_for_bit(make):
    stat = make()
    state = stat.state_dict()
    vector = stat.to_vector()
    for restored in (_fresh(stat).load_state_dict(state), _fresh(stat).load_vector(vector)):
        again = restored.state_dict()
        assert list(again) == list(state)
        for key, value in state.items():
            assert torch.equal(again[key], value), key


@pytest.mark.parametrize("make", STATISTICS.values(), ids=list(STATISTICS))
def test_every_declared_field_is_required_by_name(make):
    stat = make()
    for key in stat.state_dict():
        state = stat.state_dict()
        del state[key]
        with pytest.raises(NCInputError, match=f"no entry '{key}'"):
            _fresh(stat).load_state_dict(state)


@pytest.mark.parametrize("make", STATISTICS.values(), ids=list(STATISTICS))
def test_merge_of_a_part_with_itself_doubles_the_counts_and_reset_empties(make):
    stat = make()
    before = stat.state_dict()
    stat.merge(make())
    for part in stat._parts().values():
        counts = part.fields[0]
        assert counts.role == "counts"
        assert torch.equal(stat.state_dict()[counts.key], 2 * before[counts.key])
    stat.reset()
    assert all(int(v.abs().sum()) == 0 for k, v in stat.state_dict().items()
               if k not in stat.CONFIG)


def test_a_field_added_to_a_part_is_saved_and_synced_without_another_line():
    """The declaration is the one place: a statistic with an extra tally part gets it in
    its state dict, its flat vector, its merge and its reset."""
    from nclab.core.streaming import Tally, declare

    class Counted(CollapseStats):
        def _declare(self, config):
            return {**super()._declare(config), "extra": declare(Tally((2,)), prefix="extra_")}

    a, b = Counted(4), Counted(4)
    H, y = _classes()
    a.update(H, y)
    b.update(H, y)
    a._parts()["extra"].part.counts += torch.tensor([1, 2])
    b._parts()["extra"].part.counts += torch.tensor([3, 4])
    assert a.state_dict()["extra_counts"].tolist() == [1, 2]
    assert a.to_vector()[-2:].tolist() == [1.0, 2.0]
    assert a.merge(b).state_dict()["extra_counts"].tolist() == [4, 6]
    assert Counted(4, H.shape[1]).load_vector(a.to_vector()).state_dict()["extra_counts"].tolist() \
        == [4, 6]


# ---------------------------------------------------------------------------- loading checks
def test_counts_whose_sum_overflows_are_refused():
    stat = _collapse()
    state = stat.state_dict()
    state["counts"] = torch.tensor([2**62, 2**62, 3, 4])
    before = stat.state_dict()
    with pytest.raises(NCInputError, match="too many samples"):
        stat.load_state_dict(state)
    assert all(torch.equal(before[k], v) for k, v in stat.state_dict().items())


def test_a_class_with_count_zero_but_nonzero_sums_is_refused():
    state = _collapse().state_dict()
    state["counts"][1] = 0
    with pytest.raises(NCInputError, match=r"'means' is nonzero for group\(s\) \[1\]"):
        CollapseStats(4).load_state_dict(state)
    state = _collapse().state_dict()
    state["means"][1] = 0
    state["counts"][1] = 0
    with pytest.raises(NCInputError, match="'spread' is nonzero"):
        CollapseStats(4).load_state_dict(state)


@pytest.mark.parametrize("value,message", [
    (torch.tensor(2**63 - 1), "out of range"),
    (torch.tensor(1e300, dtype=torch.float64), "beyond the int64 range"),
    (torch.tensor(3.5), "whole numbers"),
])
def test_a_bad_exponent_is_refused(value, message):
    state = _collapse().state_dict()
    state["scale_exponent"] = value
    with pytest.raises(NCInputError, match=message):
        CollapseStats(4).load_state_dict(state)


def test_a_flat_vector_of_the_wrong_length_or_with_fractional_counts_is_refused():
    stat = _collapse()
    vector = stat.to_vector()
    with pytest.raises(NCInputError, match="has .* entries; got"):
        CollapseStats(4, stat.dim).load_vector(vector[:-1])
    vector[0] += 0.5
    with pytest.raises(NCInputError, match="whole numbers"):
        CollapseStats(4, stat.dim).load_vector(vector)


def test_an_empty_first_batch_fixes_nothing():
    stats = CollapseStats(3).update(np.zeros((0, 3)), np.zeros(0, dtype=int))
    assert stats.dim is None
    stats.update(np.ones((2, 5)), [0, 1])
    assert stats.dim == 5
    regression = RegressionStats().update(np.zeros((0, 3)), np.zeros((0, 2)))
    assert regression.dim is None


# ---------------------------------------------------------------------------- scale paths
SCALES = [(np.float32, 1e13, 1e-5), (np.float32, 1e-13, 1e-5),
          (np.float64, 1e250, 1e-9), (np.float64, 1e-250, 1e-9)]


def _scaled_problem():
    H, y = gaussian_classes(np.random.default_rng(5), sizes=[25, 30, 18, 27])
    W = np.random.default_rng(6).normal(size=(4, H.shape[1]))
    return H, y, W


def _assert_metrics_equal(got: dict, expected: dict, rel: float) -> None:
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        assert math.isclose(float(got[name]), value, rel_tol=rel, abs_tol=1e-12), (
            name, float(got[name]), value)


def _unit_metrics(H, y, W) -> dict:
    stats = CollapseStats(4).update(H, y)
    return stats.compute(W).scalars()


@pytest.mark.parametrize("dtype,scale,rel", SCALES)
def test_collapse_stats_and_torchmetrics_are_scale_free(dtype, scale, rel):
    pytest.importorskip("torchmetrics")
    from nclab.integrations.torchmetrics import NeuralCollapse

    H, y, W = _scaled_problem()
    expected = _unit_metrics(H.astype(dtype).astype(np.float64), y, W)
    x = torch.from_numpy((H * scale).astype(dtype))
    labels = torch.from_numpy(y)
    stats = CollapseStats(4).update(x, labels)
    _assert_metrics_equal(stats.compute(W / scale).scalars(), expected, rel)
    head = torch.nn.Linear(H.shape[1], 4, bias=False, dtype=torch.float64)
    with torch.no_grad():  # W / scale: the products W h, and every metric, as at scale 1
        head.weight.copy_(torch.from_numpy(W / scale))

    metric = NeuralCollapse(4, classifier=head)
    for start in range(0, len(y), 16):
        metric.update(x[start : start + 16], labels[start : start + 16])
    _assert_metrics_equal(metric.compute(), {k: v for k, v in expected.items()
                                             if k not in ("ncc_mismatch", "accuracy")}, rel)
    # torchmetrics' own sync path, with a stand-in for all_gather over two 'ranks'
    gathered: list[torch.Tensor] = []
    options = {"dist_sync_fn": lambda tensor, group=None: gathered,
               "distributed_available_fn": lambda: True}
    ranks = [NeuralCollapse(4, classifier=head, **options) for _ in range(2)]
    ranks[0].update(x[::2], labels[::2])
    ranks[1].update(x[1::2], labels[1::2])
    gathered += [rank.moments.clone() for rank in ranks]
    _assert_metrics_equal(ranks[0].compute(), {k: v for k, v in expected.items()
                                               if k not in ("ncc_mismatch", "accuracy")}, rel)


class _Scaled(torch.nn.Module):
    """Features h = scale * x (fixed), then the linear classifier W."""

    def __init__(self, W: np.ndarray, scale: float, dtype: torch.dtype) -> None:
        super().__init__()
        self.scale = scale
        self.fc = torch.nn.Linear(W.shape[1], W.shape[0], bias=False).to(dtype)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(W))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x * self.scale)


@pytest.mark.parametrize("dtype,scale,rel", SCALES)
def test_track_and_the_lightning_and_hf_callbacks_are_scale_free(dtype, scale, rel):
    pl = pytest.importorskip("pytorch_lightning")
    from torch.utils.data import DataLoader, TensorDataset

    from nclab.integrations.lightning import CollapseCallback

    H, y, W = _scaled_problem()
    torch_dtype = torch.float32 if dtype == np.float32 else torch.float64
    x = torch.from_numpy(H.astype(dtype))
    data = TensorDataset(x, torch.from_numpy(y))
    model = _Scaled(W, scale, torch_dtype)
    expected = CollapseStats(4).update(x * scale, y)  # the model's own features
    weight = model.fc.weight.detach().double().numpy()
    # unc3_duality_var of features at 1e250 is beyond float64 (inf): loggers get the rest
    want = {k: v for k, v in expected.compute(weight).scalars().items()
            if k not in ("ncc_mismatch", "accuracy") and math.isfinite(v)}
    got = nclab.track(model, DataLoader(data, batch_size=16)).scalars()
    _assert_metrics_equal({k: got[k] for k in want}, want, rel)

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, inputs):
            return self.net(inputs)

        def training_step(self, batch, batch_idx):
            inputs, labels = batch
            return torch.nn.functional.cross_entropy(self(inputs), labels) * 0.0

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    callback = CollapseCallback(DataLoader(data, batch_size=16), prefix="nc/")
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, callbacks=[callback],
                         enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)
    trainer.fit(Module(), DataLoader(data, batch_size=16))
    logged = {k[len("nc/"):]: float(v) for k, v in trainer.callback_metrics.items()
              if k.startswith("nc/")}
    _assert_metrics_equal({k: logged[k] for k in want}, want, rel)
    # the HF TrainerCallback, called as transformers' CallbackHandler calls it
    if importlib.util.find_spec("transformers") is not None:
        from nclab.integrations.transformers import CollapseCallback as HFCallback

        hf = HFCallback(loader=DataLoader(data, batch_size=16), prefix="nc/")
        state = SimpleNamespace(epoch=1.0, global_step=1, log_history=[])
        hf.on_epoch_end(SimpleNamespace(world_size=1), state, None, model=model)
        row = state.log_history[-1]
        _assert_metrics_equal({k: row[f"nc/{k}"] for k in want}, want, rel)


# ---------------------------------------------------------------------------- two gloo ranks
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        H, y, W = _scaled_problem()
        results = {}
        for i, (dtype, scale, _) in enumerate(SCALES):
            x = torch.from_numpy((H[rank::2] * scale).astype(dtype))
            stats = CollapseStats(4).update(x, y[rank::2]).all_reduce()
            results[f"scale{i}"] = np.array([stats.compute(W).scalars()[k] for k in _KEYS])
        # ranks that disagree on d both stop with the same line
        try:
            CollapseStats(4).update(np.ones((2, 3 + rank)), [0, 1]).all_reduce()
            results["disagree"] = np.array("no error")
        except NCInputError as exc:
            results["disagree"] = np.array(str(exc))
        np.savez(os.path.join(out, f"rank{rank}.npz"), **results)
    finally:
        dist.destroy_process_group()


_KEYS = ("nc1", "nc1_trace", "cdnv", "equinorm_means", "etf_error_means", "self_duality")


def test_two_gloo_ranks_give_the_unit_scale_metrics_at_every_scale(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    H, y, W = _scaled_problem()
    for rank in range(2):
        got = np.load(tmp_path / f"rank{rank}.npz", allow_pickle=False)
        for i, (dtype, _, rel) in enumerate(SCALES):
            expected = _unit_metrics(H.astype(dtype).astype(np.float64), y, W)
            np.testing.assert_allclose(got[f"scale{i}"], [expected[k] for k in _KEYS], rtol=rel)
        assert str(got["disagree"]) == "ranks disagree on dim: 3 on one, 4 on another"
