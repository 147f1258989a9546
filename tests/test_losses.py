"""The trainer's classification losses: label smoothing and focal loss beside ce and mse."""

import json
import math

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from torch_threads import one_thread  # noqa: F401
from train_helpers import TINY_ARGS

from nclab.core.errors import NCInputError
from nclab.train import TrainConfig
from nclab.train.losses import ClassificationLoss
from nclab.train.tasks import make_task

pytestmark = pytest.mark.usefixtures("one_thread")


def brute_loss(text, outputs, labels):
    """The summed loss with explicit loops over samples and classes, float64."""
    name, _, value = text.partition(":")
    total = 0.0
    for row, label in zip(np.asarray(outputs, dtype=np.float64), labels, strict=True):
        top = max(row)
        log_norm = top + math.log(sum(math.exp(z - top) for z in row))
        log_p = [z - log_norm for z in row]
        classes = len(row)
        if name == "mse":
            total += 0.5 * sum((z - (k == label)) ** 2 for k, z in enumerate(row))
        elif name == "ls":
            eps = float(value)
            total -= sum(((1 - eps) * (k == label) + eps / classes) * log_p[k]
                         for k in range(classes))
        elif name == "focal":
            p = math.exp(log_p[label])
            total -= (1 - p) ** float(value) * log_p[label]
        else:
            total -= log_p[label]
    return total


@pytest.mark.parametrize("text", ["ce", "mse", "ls:0.1", "ls:0.5", "focal:2", "focal:0.5",
                                  "focal:0"])
def test_losses_match_explicit_loops(text):
    generator = torch.Generator().manual_seed(0)
    outputs = 3 * torch.randn(7, 4, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 4, (7,), generator=generator)
    value = ClassificationLoss.parse(text)(outputs, labels)
    assert value.item() == pytest.approx(brute_loss(text, outputs, labels.tolist()), rel=1e-12)


def test_zero_smoothing_and_zero_focusing_are_the_cross_entropy():
    outputs, labels = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 2, 0])
    ce = ClassificationLoss.parse("ce")(outputs, labels)
    for text in ("ls:0", "focal:0"):
        assert ClassificationLoss.parse(text)(outputs, labels).item() == pytest.approx(
            ce.item(), rel=1e-14)


def test_focal_gradient_is_finite_where_a_probability_rounds_to_one():
    outputs = torch.tensor([[60.0, 0.0, 0.0], [0.0, 1.0, 0.0]], requires_grad=True)
    for gamma in ("focal:0.5", "focal:2"):
        loss = ClassificationLoss.parse(gamma)(outputs, torch.tensor([0, 1]))
        (grad,) = torch.autograd.grad(loss, outputs)
        assert torch.isfinite(grad).all() and torch.isfinite(loss)


@pytest.mark.parametrize(("text", "message"), [
    ("hinge", "unknown loss 'hinge'"), ("ls:1", "must lie in [0, 1)"),
    ("ls:-0.1", "must lie in [0, 1)"), ("ls:nan", "must lie in [0, 1)"),
    ("focal:-1", "finite number >= 0"), ("focal:inf", "finite number >= 0"),
    ("focal", "unknown loss 'focal'"), ("ce:1", "unknown loss 'ce:1'"),
    ("ls:x", "takes a number"),
])
def test_bad_losses_are_one_line(text, message):
    with pytest.raises(NCInputError, match=message.replace("[", r"\[").replace(")", r"\)")):
        make_task(TrainConfig(loss=text))


def test_train_with_focal_loss_runs_and_records_its_canonical_spelling(tmp_path, capsys):
    code, _, err = run_cli(["train", *TINY_ARGS, "--epochs", "2", "--log-points", "1",
                            "--loss", "focal:2.0", "--no-report", "--out", tmp_path / "run"],
                           capsys)
    assert code in (0, None), err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["loss"] == "focal:2"
    code, _, err = run_cli(["train", *TINY_ARGS, "--loss", "ls:1", "--out", tmp_path / "bad"],
                           capsys)
    assert code == 2 and "--loss: the label smoothing EPS" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
