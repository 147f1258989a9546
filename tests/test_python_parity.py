"""The Python API behaves as the command line: one thread policy, the same digits, and
the messages a user meets on either side."""

import importlib.util

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from train_helpers import TINY, TINY_ARGS, rows

import nclab
from nclab.cli.train import nc1_change
from nclab.core.errors import NCInputError
from nclab.train import Callback, Trainer
from nclab.train.threads import DEFAULT_THREADS

SHORT = TINY.updated(epochs=4, log_points=4)
#: TINY_ARGS without its --threads 1: the default is what is compared
DEFAULT_ARGS = [a for i, a in enumerate(TINY_ARGS)
                if "--threads" not in TINY_ARGS[max(i - 1, 0):i + 1]]


class ThreadsSeen(Callback):
    def on_train_start(self, trainer):
        self.threads = torch.get_num_threads()


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_trainer_trains_on_the_command_lines_default_thread_count_and_restores(
        tmp_path, two_threads):
    seen = ThreadsSeen()
    Trainer(SHORT, tmp_path / "run", progress=False, callbacks=[seen]).fit()
    assert seen.threads == DEFAULT_THREADS == 1
    assert torch.get_num_threads() == 2  # the caller's setting is back


def test_trainer_threads_none_keeps_the_callers_setting(tmp_path, two_threads):
    seen = ThreadsSeen()
    Trainer(SHORT, tmp_path / "run", progress=False, threads=None, callbacks=[seen]).fit()
    assert seen.threads == 2


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", True])
def test_bad_thread_counts_are_refused_before_anything_is_written(tmp_path, threads):
    with pytest.raises(NCInputError, match="threads must be an integer >= 1 or None"):
        Trainer(SHORT, tmp_path / "run", progress=False, threads=threads)
    assert not (tmp_path / "run").exists()


def test_python_and_command_line_runs_log_the_same_digits(tmp_path, capsys, two_threads):
    """Both on their defaults (the Python caller's torch has 2 threads here)."""
    Trainer(SHORT, tmp_path / "python", progress=False).fit()
    code, out, _ = run_cli(["train", *DEFAULT_ARGS, "--epochs", "4", "--log-points", "4",
                            "--no-report", "--out", tmp_path / "cli"], capsys)
    assert code == 0
    assert rows(tmp_path / "python") == rows(tmp_path / "cli")


def test_thread_count_is_announced_only_when_not_the_default(tmp_path, capsys):
    code, out, _ = run_cli(["train", *DEFAULT_ARGS, "--epochs", "1", "--no-report",
                            "--out", tmp_path / "default"], capsys)
    assert code == 0 and "torch threads" not in out
    code, out, _ = run_cli(["train", *DEFAULT_ARGS, "--epochs", "1", "--no-report",
                            "--threads", "2", "--out", tmp_path / "two"], capsys)
    assert code == 0 and out.count("torch threads: 2 (--threads)") == 1


@pytest.mark.parametrize(("drop", "words"), [
    (134.2, "134x smaller"), (1.5156, "1.52x smaller"), (0.5, "2x larger"),
    (1 / 12.4, "12x larger"), (1.0, "unchanged")])
def test_nc1_change_says_larger_when_nc1_rises(drop, words):
    assert nc1_change(drop) == words


def test_missing_extra_names_the_install_command_with_its_brackets(tmp_path, capsys,
                                                                   monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("tensorboard")
                        else real(name, *a))
    code, _, err = run_cli(["train", *DEFAULT_ARGS, "--epochs", "1", "--logger",
                            "tensorboard", "--out", tmp_path / "run"], capsys)
    assert code == 2 and 'pip install "nclab[tensorboard]"' in err
    assert not (tmp_path / "run").exists()


def test_a_transposed_weight_gets_the_expected_shape_and_the_hint():
    rng = np.random.default_rng(0)
    labels = np.arange(100) % 10
    features, weight = rng.normal(size=(100, 32)), rng.normal(size=(10, 32))
    expected = r"weight must have shape \(C, d\) = \(10, 32\).*got \(32, 10\): pass weight\.T"
    with pytest.raises(NCInputError, match=expected):
        nclab.measure(features, labels, weight=weight.T)
    stats = nclab.CollapseStats(num_classes=10)
    stats.update(features, labels)
    with pytest.raises(NCInputError, match=expected):
        stats.compute(weight.T)
    with pytest.raises(NCInputError, match=r"= \(10, 32\).*got \(10, 5\)$"):
        nclab.measure(features, labels, weight=weight[:, :5])  # no transpose fits
