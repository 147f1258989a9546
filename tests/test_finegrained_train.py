"""Coarse-label training, the recovery evaluator and ``nclab finegrained`` (definitions §6)."""

import json

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from torch import nn
from torch_threads import one_thread  # noqa: F401

from nclab import capture
from nclab.core.errors import NCInputError
from nclab.data import load_dataset
from nclab.finegrained import CoarseLabeling, recover_fine_labels
from nclab.train import TASKS, EvalContext, TrainConfig, Trainer, make_task
from nclab.train.finegrained import DEFAULT_NUM_COARSE, RECOVERY_COLUMNS, RecoveryEvaluator

pytestmark = pytest.mark.usefixtures("one_thread")

#: 5 superclasses x 2 well separated sub-clusters: fine labels are recoverable.
DATA = dict(dataset="hierarchical", dataset_options={"dim": 8}, per_class=30, per_class_test=10)
COARSE = TrainConfig(
    **DATA, model="mlp", model_options={"widths": [32]}, task="coarse",
    evaluators=("recovery",), options={"num_coarse": 5, "recovery_n_init": 3},
    epochs=6, batch_size=32, lr=0.05, log_points=3, eval_batch_size=1000,
)
#: The same tiny comparison on the command line.
CLI_ARGS = ["--dataset", "hierarchical", "--data-opt", "dim=8", "--per-class", "30",
            "--per-class-test", "10", "--model", "mlp", "--widths", "32", "--epochs", "4",
            "--batch-size", "32", "--log-points", "3", "--n-init", "3", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    trainer = Trainer(COARSE, tmp_path_factory.mktemp("coarse"), progress=False)
    summary = trainer.fit()
    return trainer, summary


def test_coarse_task_trains_on_superclasses_and_keeps_the_fine_labels(trained):
    trainer, summary = trained
    data = trainer.data
    fine = load_dataset("hierarchical", dim=8, per_class=30, per_class_test=10)
    assert torch.equal(data.fine.train.y, fine.train.y) and torch.equal(data.train.x, fine.train.x)
    assert torch.equal(data.train.y, fine.train.y % 5)  # the mod pairing
    assert trainer.model.classifier.out_features == 5
    # the logged error is the superclass error of the final model
    with torch.no_grad():
        predicted = trainer.model.eval()(data.test.x).argmax(1)
    assert summary["final"]["test_error"] == pytest.approx(
        float((predicted != data.test.y).float().mean()))


def test_logged_recovery_equals_recovery_on_features_extracted_by_hand(trained):
    trainer, summary = trained
    model, data = trainer.model.eval(), trainer.data
    with torch.no_grad():  # the classifier input of an nclab Network is body(x)
        h_train, h_test = model.body(data.train.x), model.body(data.test.x)
        predicted = model.classifier(h_test).argmax(1)
    expected = recover_fine_labels(h_train, data.fine.train.y, data.fine.train.y % 5, h_test,
                                   predicted, data.fine.test.y,
                                   labeling=CoarseLabeling.mod(10, 5), n_init=3, seed=0,
                                   threads=1)
    last = summary["final"]
    assert last["epoch"] == COARSE.epochs
    assert last["recovery_train_accuracy"] == expected.train_accuracy
    assert last["recovery_test_accuracy"] == expected.test_accuracy
    assert last["coarse_nc1"] == pytest.approx(expected.coarse_nc1, rel=1e-6)
    assert last["fine_nc1"] == pytest.approx(expected.fine_nc1, rel=1e-6)
    assert expected.train_accuracy > 0.8  # separable sub-clusters survive a short training
    rows = [json.loads(line) for line in (trainer.run.path / "metrics.jsonl").open()]
    assert len(rows) == 3 and all(set(RECOVERY_COLUMNS) <= set(row) for row in rows)


def test_capture_features_is_the_classifier_input_in_loader_order():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).train()
    x, y = torch.randn(25, 4), torch.arange(25) % 3
    got = capture.features(model, [(x[i:i + 10], y[i:i + 10]) for i in range(0, 25, 10)])
    with torch.no_grad():
        assert torch.allclose(got.features, model[1](model[0](x)))
        assert torch.allclose(got.outputs, model(x))
    assert torch.equal(got.labels, y) and model.training


def test_pairings_and_a_map_read_back_from_json():
    def labeling(options):
        config = TrainConfig(**DATA, task="coarse", options=options)
        config = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
        return make_task(config).load_data().labeling

    assert labeling({"coarse_pairing": "random", "num_coarse": 3, "coarse_seed": 4}) == \
        CoarseLabeling.random(10, 3, 4)
    mapping = {y: int(y >= 7) for y in range(10)}
    expected = CoarseLabeling.from_map(mapping)
    assert labeling({"coarse_pairing": "explicit", "coarse_map": mapping}) == expected
    assert labeling({"coarse_pairing": "explicit", "coarse_map": "0,0,0,0,0,0,0,1,1,1"}) == \
        expected
    assert TASKS["coarse"] is type(make_task(COARSE))
    # without num_coarse the mod and random pairings make DEFAULT_NUM_COARSE superclasses
    assert labeling({}) == CoarseLabeling.mod(10, DEFAULT_NUM_COARSE)


@pytest.mark.parametrize(("options", "message"), [
    ({"coarse_pairing": "nearest", "num_coarse": 5}, "unknown pairing 'nearest'; choose from: "
                                                     "mod, random, explicit"),
    ({"coarse_pairing": "random", "num_coarse": 4.0},
     "coarse option num_coarse must be an integer or none; got 4.0"),
    ({"num_coarse": 0}, "option num_coarse must be an integer >= 1"),
    ({"num_coarse": 11}, "need 1 <= num_coarse <= num_fine"),
    ({"coarse_pairing": "explicit"}, "give a coarse map"),
    ({"coarse_pairing": "explicit", "coarse_map": "0:0,1:0,2:1,3:1"},
     r"does not cover fine classes [4, 5, 6, 7, 8, 9]"),
    ({"num_coarse": 5, "recovery_n_init": 0}, "option recovery_n_init must be an integer >= 1"),
])
def test_bad_options_are_refused(options, message, tmp_path):
    config = COARSE.updated(options=options)
    with pytest.raises(NCInputError) as err:
        Trainer(config, tmp_path, progress=False).fit()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_recovery_evaluator_needs_a_coarse_task(trained):
    trainer, _ = trained
    context = EvalContext(trainer.model, {}, "classifier", 1, COARSE, torch.device("cpu"),
                          data=trainer.data.fine)
    with pytest.raises(NCInputError, match="needs fine labels: train with the coarse task"):
        RecoveryEvaluator()(context)


def test_cli_writes_json_and_figures(tmp_path, capsys):
    out = tmp_path / "fg"
    code, stdout, err = run_cli(["finegrained", *CLI_ARGS, "--out", out], capsys)
    assert code in (0, None), err
    result = json.loads((out / "finegrained.json").read_text())
    coarse_rows = [json.loads(line) for line in (out / "coarse" / "metrics.jsonl").open()]
    fine_summary = json.loads((out / "fine" / "summary.json").read_text())
    # the numbers are those of the two runs' logs
    assert result["recovered_test_accuracy"] == coarse_rows[-1]["recovery_test_accuracy"]
    assert result["baseline_test_accuracy"] == pytest.approx(
        1 - fine_summary["final"]["test_error"])
    assert result["ratio"] == pytest.approx(
        result["recovered_test_accuracy"] / result["baseline_test_accuracy"])
    assert [row["epoch"] for row in result["history"]] == [row["epoch"] for row in coarse_rows]
    # same network and budget, different labels
    coarse_cfg, fine_cfg = result["config"], result["baseline_config"]
    assert coarse_cfg["task"] == "coarse" and fine_cfg["task"] == "classification"
    same = {k for k in coarse_cfg if k not in ("task", "evaluators", "options")}
    assert all(coarse_cfg[k] == fine_cfg[k] for k in same)
    assert result["projection"]["fine_classes"] == [0, 5]
    assert np.asarray(result["recovery"]["test_confusion"]).sum() == 100
    for name in ("recovery.png", "projection.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ratio recovered / baseline" in stdout
    # a second start without --resume is refused; with it, nothing is retrained
    code, _, err = run_cli(["finegrained", *CLI_ARGS, "--out", out], capsys)
    assert code == 2 and "already holds runs: pass --resume" in err
    code, _, err = run_cli(["finegrained", *CLI_ARGS, "--out", out, "--resume"], capsys)
    assert code in (0, None), err
    again = json.loads((out / "finegrained.json").read_text())
    assert again["recovered_test_accuracy"] == result["recovered_test_accuracy"]


@pytest.mark.parametrize(("args", "message"), [
    (["--pairing", "nearest"], "unknown pairing 'nearest'"),
    (["--pairing", "explicit", "--coarse-map", "0:0,1:0,2:1,3:1,4:2,5:2"],
     "does not cover fine classes [6, 7, 8, 9]"),
    (["--coarse-map", "0,0,1,1,2,2,3,3,4,4"], "give a coarse map (option coarse_map) exactly"),
    (["--superclass", "5"], "--superclass must be a superclass, in 0..K'-1 (K' = 5); got 5"),
    (["--threads", "0"], "--threads must lie in [1, "),
])
def test_cli_bad_input_gives_one_line_errors(args, message, tmp_path, capsys):
    epochs = ["--epochs", "1", "--log-points", "1"]
    code, _, err = run_cli(["finegrained", *CLI_ARGS, *epochs, *args, "--out", tmp_path / "o"],
                           capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_cnn1d_global_pooling_option():
    from nclab.models import build_model

    torch.manual_seed(0)
    model = build_model("cnn1d", (1, 40), 5, channels=(4, 8), hidden=6, pool="max").eval()
    x = torch.randn(3, 1, 40)
    assert model(x).shape == (3, 5)
    # the pooled maps do not depend on the length: the same weights take longer inputs
    assert model(torch.randn(3, 1, 64)).shape == (3, 5)
    with pytest.raises(NCInputError, match="cnn1d pool must be one of flatten, max, mean"):
        build_model("cnn1d", (1, 40), 5, pool="sum")


def test_cnn1d_without_hidden_layer():
    from nclab.models import build_model

    torch.manual_seed(0)
    x = torch.randn(3, 1, 40)
    pooled = build_model("cnn1d", (1, 40), 5, channels=(4, 8), hidden=0, pool="max").eval()
    # h is the max over positions of the last convolution's (ReLU) maps, one per channel
    maps = pooled.body[:-2](x)  # up to the pooling and the flattening
    assert maps.shape == (3, 8, 10)
    assert pooled.feature_dim == 8
    assert torch.equal(pooled.body(x), maps.amax(dim=2))
    assert not any(isinstance(m, torch.nn.Linear) for m in pooled.body.modules())
    flat = build_model("cnn1d", (1, 40), 5, channels=(4, 8), hidden=0).eval()
    assert flat.feature_dim == 8 * 10 and flat(x).shape == (3, 5)
    with pytest.raises(NCInputError, match="cnn1d hidden must be >= 0"):
        build_model("cnn1d", (1, 40), 5, hidden=-1)
