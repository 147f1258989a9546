"""The Lightning callback logs exactly what nclab.track gives, once per sample, also
under DDP, and leaves the training itself unchanged."""

from __future__ import annotations

import copy
import csv

import pytest
import torch
from docs_helpers import documented, numbers, run_documented
from integration_helpers import assert_same_values, clusters, mlp, tracked
from torch.utils.data import DataLoader, TensorDataset
from torch_threads import one_thread  # noqa: F401

import nclab

pl = pytest.importorskip("pytorch_lightning")
pytestmark = pytest.mark.usefixtures("one_thread")

from nclab.integrations.common import finite  # noqa: E402
from nclab.integrations.lightning import CollapseCallback  # noqa: E402


class Classifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Snapshots(pl.Callback):
    """The module's weights at the end of every training epoch (after the measurement)."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.states.append(copy.deepcopy(pl_module.state_dict()))


def _fit(callbacks, logger=False, **trainer_options):
    torch.manual_seed(0)
    module = Classifier()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=logger, callbacks=callbacks,
                         enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, **trainer_options)
    trainer.fit(module, DataLoader(clusters(), batch_size=8, shuffle=True))
    return trainer, module


def _at(state: dict[str, torch.Tensor]) -> Classifier:
    module = Classifier()
    module.load_state_dict(state)
    return module


def test_every_epoch_logs_what_track_gives_to_callback_metrics_and_the_logger(tmp_path):
    snapshots = Snapshots()
    logger = pl.loggers.CSVLogger(tmp_path, name="csv")
    trainer, module = _fit([CollapseCallback(), snapshots], logger=logger)
    data = clusters()
    logged = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("nc/")}
    assert_same_values(logged, tracked(module, data, "nc/"))
    with open(logger.experiment.metrics_file_path) as handle:
        rows = [{k: float(v) for k, v in row.items() if v != "" and k.startswith("nc/")}
                for row in csv.DictReader(handle)]
    rows = [row for row in rows if row]
    assert len(rows) == len(snapshots.states) == 2
    for row, state in zip(rows, snapshots.states, strict=True):
        assert_same_values(row, tracked(_at(state), data, "nc/"))
    assert rows[0]["nc/nc1"] != rows[1]["nc/nc1"]  # the model changed between epochs


def test_the_measurement_leaves_the_training_unchanged():
    _, with_callback = _fit([CollapseCallback(every_n_epochs=1)])
    _, without = _fit([])
    for a, b in zip(with_callback.parameters(), without.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_every_n_epochs_and_a_layer_profile():
    trainer, module = _fit([CollapseCallback(every_n_epochs=2, layers=["net.0"], prefix="p/")])
    logged = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("p/")}
    profile = nclab.track(module, DataLoader(clusters(), batch_size=16), layers=["net.0"])
    expected = {**profile["net.0"].scalars("p/net.0/"), **profile["net.2"].scalars("p/")}
    assert any(k.startswith("p/net.0/") for k in expected)
    assert_same_values(logged, finite(expected))


def test_ddp_counts_every_sample_once(tmp_path):
    """Two CPU processes (DDP over gloo); 45 samples, so DistributedSampler pads one."""
    trainer, module = _fit([CollapseCallback()], strategy="ddp_fork", devices=2)
    logged = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("nc/")}
    assert_same_values(logged, tracked(module, clusters(), "nc/"))


def test_bad_every_n_epochs_is_one_clear_error():
    from nclab import NCInputError

    with pytest.raises(NCInputError, match="every_n_epochs"):
        CollapseCallback(every_n_epochs=0)


def test_the_documented_example_prints_what_the_docs_say(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # its CSVLogger writes into the working directory
    namespace = run_documented("in_your_training.md", "## Lightning")
    shown = documented("in_your_training.md", "## Lightning")[1]
    assert numbers(capsys.readouterr().out) == pytest.approx(numbers(shown), rel=2e-3)
    x, y = namespace["loader"].dataset.tensors
    module = namespace["trainer"].lightning_module
    assert float(namespace["trainer"].callback_metrics["nc/nc1"]) == pytest.approx(
        nclab.track(module, DataLoader(TensorDataset(x, y), batch_size=100)).nc1, rel=1e-6)
