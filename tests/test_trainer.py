"""The trainer in one process: logs, TPT onset, determinism, refusals, NaN, extensions."""

import csv
import json

import pytest
import torch
from torch_threads import one_thread  # noqa: F401
from train_helpers import TINY, rows

import nclab
from nclab import NCInputError
from nclab.data import load_dataset
from nclab.models import build_model
from nclab.train import ClassificationTask, Trainer, TrainingDiverged, log_spaced_epochs

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    torch.set_num_threads(1)
    summary = Trainer(TINY, run_dir, progress=False).fit()
    return run_dir, summary


def test_logs_hold_every_scheduled_epoch_and_the_tpt_onset(finished):
    run_dir, summary = finished
    logged = rows(run_dir)
    epochs = [row["epoch"] for row in logged]
    onset = summary["tpt_onset"]
    assert onset is not None, "the tiny run should reach zero training error"
    assert sorted(set(log_spaced_epochs(TINY.epochs, TINY.log_points)) | {onset}) == epochs
    assert next(r for r in logged if r["epoch"] == onset)["train_error"] == 0
    assert all(r["train_error"] > 0 for r in logged if r["epoch"] < onset)
    with open(run_dir / "metrics.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in table] == epochs
    assert float(table[-1]["train_nc1"]) == pytest.approx(logged[-1]["train_nc1"], rel=1e-12)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "complete"


def test_logged_metrics_are_those_of_the_checkpointed_model(finished):
    run_dir, _ = finished
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == TINY.epochs
    data = load_dataset(TINY.dataset, per_class=40, per_class_test=10, **TINY.dataset_options)
    model = build_model("mlp", data.input_shape, data.num_classes, widths=(32, 32))
    model.load_state_dict(checkpoint["model"])
    last = rows(run_dir)[-1]
    for split, dataset in (("train", data.train), ("test", data.test)):
        got = nclab.track(model, [(dataset.x, dataset.y)])
        assert last[f"{split}_nc1"] == pytest.approx(got.nc1, rel=1e-5)
        assert last[f"{split}_ncc_mismatch"] == pytest.approx(got.ncc_mismatch)
        assert last[f"{split}_error"] == pytest.approx(1 - got.accuracy)


def test_same_seed_same_run_other_seed_other_run(finished, tmp_path):
    run_dir, _ = finished
    Trainer(TINY, tmp_path / "again", progress=False).fit()
    assert rows(tmp_path / "again") == rows(run_dir)
    Trainer(TINY.updated(seed=1), tmp_path / "other", progress=False).fit()
    assert rows(tmp_path / "other") != rows(run_dir)


def test_existing_run_dir_refuses_a_fresh_start_and_a_different_config(finished):
    run_dir, _ = finished
    with pytest.raises(NCInputError, match=r"--resume \(in Python: fit\(resume=True\)\)"):
        Trainer(TINY, run_dir, progress=False).fit()
    changed = TINY.updated(lr=0.1, epochs=20)
    with pytest.raises(NCInputError, match=r"different config \(epochs: 12 -> 20; lr: 0.05 -> "
                                           r"0.1\)"):
        Trainer(changed, run_dir, progress=False).fit(resume=True)
    before = rows(run_dir)
    Trainer(TINY, run_dir, progress=False).fit(resume=True)  # complete: nothing to redo
    assert rows(run_dir) == before


class PoisonAfter(ClassificationTask):
    """Turns the weights to NaN after a given optimizer step (a blow-up on demand)."""

    def __init__(self, config, step):
        super().__init__(config)
        self.steps, self.poison_at = 0, step

    def after_step(self, model):
        self.steps += 1
        if self.steps == self.poison_at:
            with torch.no_grad():
                model.classifier.weight.fill_(float("nan"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    steps_per_epoch = 160 // TINY.batch_size  # 4 classes x 40 samples
    task = PoisonAfter(TINY, step=2 * steps_per_epoch + 2)  # inside epoch 3
    with pytest.raises(TrainingDiverged, match=r"loss became nan in epoch 3: stopped; the last "
                                               r"good checkpoint \(epoch 2\) is kept"):
        Trainer(TINY, tmp_path, progress=False, task=task, checkpoint_every=1).fit()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 2
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_epoch"] == 3
    assert [r["epoch"] for r in rows(tmp_path)] == [1, 2]


class WeightNorm:
    """An extra evaluator: the Frobenius norm of the classifier at each logged epoch."""

    name = "weight_norm"

    def __init__(self):
        self.contexts = []

    def __call__(self, context):
        self.contexts.append(context)
        weight = context.model.get_submodule(context.classifier).weight
        return {"classifier_norm": float(weight.detach().norm())}


def test_extra_evaluators_add_columns(tmp_path):
    extra = WeightNorm()
    config = TINY.updated(log_points=2, evaluators=())
    Trainer(config, tmp_path, progress=False, evaluators=[extra]).fit()
    logged = rows(tmp_path)
    onset = logged[-1]["tpt_onset"]
    assert [r["epoch"] for r in logged] == sorted({1, 12, onset})  # the onset is logged too
    assert [c.epoch for c in extra.contexts] == [r["epoch"] for r in logged]
    assert set(extra.contexts[0].loaders) == {"train", "test"}
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert logged[-1]["classifier_norm"] == pytest.approx(
        float(checkpoint["model"]["classifier.weight"].norm()), rel=1e-6)
    assert "train_nc1" not in logged[-1]  # the collapse evaluator was not selected


def test_bad_names_list_the_choices(tmp_path):
    for changes, message in [({"dataset": "cifar11"}, "unknown dataset 'cifar11'; choose from"),
                             ({"model": "resnet7"}, "unknown model 'resnet7'; choose from: mlp"),
                             ({"loss": "hinge"}, "unknown loss 'hinge'; choose from: ce, mse"),
                             ({"evaluators": ("nc9",)}, "unknown evaluator nc9; choose from"),
                             ({"task": "ranking"}, "unknown task 'ranking'; choose from")]:
        with pytest.raises(NCInputError, match=message):
            Trainer(TINY.updated(**changes), tmp_path, progress=False)
    with pytest.raises(NCInputError, match=r"lr_milestones must lie in \(0, 1\)"):
        TINY.updated(lr_milestones=(0.5, 2.0))
    with pytest.raises(NCInputError, match="dataset_options may not set per_class: it is a "):
        Trainer(TINY.updated(dataset_options={"per_class": 5}), tmp_path, progress=False)


def test_onset_check_grows_its_batches_from_a_small_one():
    """The check's batches grow from 64 samples to the evaluation batch size and cover
    the split once, in order: an error among the first samples costs one small batch."""
    from types import SimpleNamespace

    from nclab.train.batches import EvalBatches
    from nclab.train.evaluators import misclassifies

    x, y = torch.arange(1000.0)[:, None], torch.arange(1000)
    batches = EvalBatches(x, y, 300)
    sizes = [len(yb) for _, yb in batches.growing()]
    assert sizes == [64, 128, 256, 300, 252]
    assert torch.equal(torch.cat([xb for xb, _ in batches.growing()]), x)
    assert [len(yb) for _, yb in EvalBatches(x, y, 5).growing()] == [5] * 200
    model = torch.nn.Linear(1, 2)
    seen = []
    model.register_forward_hook(lambda _m, args, _out: seen.append(len(args[0])))
    task = SimpleNamespace(errors=lambda outputs, labels: (outputs.argmax(1) != labels).sum())
    assert misclassifies(model, EvalBatches(x, y % 2, 1024), task) is True
    assert seen == [64]


def test_onset_check_stops_at_the_first_misclassified_batch():
    """Before the TPT onset the training error is checked after every epoch: a batch with
    an error decides it, and the batches after it are not run."""
    from types import SimpleNamespace

    from nclab.train.batches import EvalBatches
    from nclab.train.evaluators import misclassifies

    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
        model.bias.zero_()
    seen = []
    model.register_forward_hook(lambda _m, args, _out: seen.append(len(args[0])))
    task = SimpleNamespace(errors=lambda outputs, y: (outputs.argmax(dim=1) != y).sum())
    x, right = torch.eye(2).repeat(3, 1), torch.tensor([0, 1]).repeat(3)
    for wrong, expected, batches_run in ((None, False, 3), (0, True, 1), (5, True, 3)):
        y = right.clone()
        if wrong is not None:
            y[wrong] = 1 - y[wrong]
        seen.clear()
        assert misclassifies(model, EvalBatches(x, y, 2), task) is expected
        assert seen == [2] * batches_run
    assert model.training  # its mode is restored
