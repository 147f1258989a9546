"""The bias-free head, the schedule and the activation of ``nclab regress``: the head
computes W h only, the evaluator measures that network (checked by a brute-force pass),
W starts where it starts with a bias, and the schedule reaches the trainer."""

import json

import numpy as np
import pytest
import torch
from regression_reference import nrc_reference
from test_regression_train import SMALL, data_file  # noqa: F401
from threadpoolctl import threadpool_limits
from torch_threads import one_thread  # noqa: F401

from nclab import NCInputError
from nclab.cli.options import ConfigChanges
from nclab.cli.regress_train import PRESET
from nclab.data.regression_base import load_regression
from nclab.models import build_model
from nclab.train import Trainer, regression_config
from nclab.train.tasks import make_task

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bias_free_head_keeps_the_initial_W(data_file):  # noqa: F811
    heads = []
    for head_bias in (True, False):
        config = regression_config(dataset="npz_targets", root=str(data_file), **SMALL,
                                   options={"head_bias": head_bias})
        task = make_task(config)
        torch.manual_seed(0)
        heads.append(task.build_model(task.load_data()).classifier)
    assert heads[0].bias is not None and heads[1].bias is None
    assert "bias" not in dict(heads[1].named_parameters())
    assert torch.equal(heads[0].weight, heads[1].weight)


def test_command_line_sets_head_bias_schedule_and_activation(capsys, monkeypatch):
    from cli_helpers import run_cli

    seen = []
    original = ConfigChanges.apply

    def record(self, base):
        seen.append(original(self, base))
        raise SystemExit(0)  # stop before training

    monkeypatch.setattr(ConfigChanges, "apply", record)
    run_cli(["regress", "train", "teacher", "--no-head-bias", "--milestones", "0.5",
             "--lr-gamma", "0.2", "--activation", "leaky_relu"], capsys)
    run_cli(["regress", "train", "teacher"], capsys)
    given, default = seen
    assert given.options == {"head_bias": False}
    assert given.model_options == {**PRESET.model_options, "activation": "leaky_relu"}
    assert given.lr_milestones == (0.5,) and given.lr_gamma == 0.2
    assert default == PRESET.updated(dataset="teacher")
    model = build_model("mlp", (3,), 2, widths=[4], activation="leaky_relu")
    assert isinstance(model.body[2], torch.nn.LeakyReLU)


def test_bias_free_head_trains_with_a_schedule(tmp_path, data_file):  # noqa: F811
    run_dir = tmp_path / "run"
    config = regression_config(dataset="npz_targets", root=str(data_file),
                               **{**SMALL, "epochs": 4, "log_points": 2},
                               options={"head_bias": False}, lr_milestones=(0.5,), lr_gamma=0.2)
    with threadpool_limits(1):
        Trainer(config, run_dir, progress=False).fit()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(row["epoch"], row["lr"]) for row in rows] == [
        (1, 0.05), (4, pytest.approx(0.01))]

    # the logged metrics are those of the network f(x) = W h(x), measured by hand
    data = load_regression(data_file)
    x, y = data.train.x.numpy(), data.train.y.numpy()
    model = build_model("mlp", x.shape[1:], 2, **SMALL["model_options"])
    model.classifier.register_parameter("bias", None)
    model.load_state_dict(torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"])
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-8
    with torch.no_grad():
        features = model.body(torch.as_tensor((x - mean) / std,
                                              dtype=torch.float32)).double().numpy()
    W = model.classifier.weight.detach().double().numpy()
    last = rows[-1]
    assert last["train_mse"] == pytest.approx(np.mean((features @ W.T - y) ** 2), rel=1e-5)
    with threadpool_limits(1):
        reference = nrc_reference(features, y, W)
    assert last["train_nrc1"] == pytest.approx(reference["nrc1"], rel=1e-4)
    assert last["train_nrc2"] == pytest.approx(reference["nrc2"], rel=1e-4)


def test_head_bias_must_be_a_flag(tmp_path):
    config = regression_config(dataset="teacher", **SMALL, options={"head_bias": "no"})
    with pytest.raises(NCInputError, match="head_bias must be true or false; got 'no'"):
        Trainer(config, tmp_path, progress=False)
