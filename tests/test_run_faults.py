"""Faults a training run survives: every one ends in one clear line (or a normal end),
loses nothing, and leaves the run directory as it was whenever the start fails.

NaN metrics, weights that blow up, a second writer, SIGINT/SIGTERM, a deleted config, a
killed write's temporary, damaged checkpoints and configs, file-system faults (read-only,
disk full, a file in the way, no permission), failed starts; and reports of logs with
bad lines or written by hand.
"""

from __future__ import annotations

import csv
import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from torch_threads import one_thread  # noqa: F401
from train_helpers import SRC, TINY, TINY_ARGS, rows

import nclab.core.io
import nclab.runs
from nclab import NCInputError
from nclab.report import write_comparison, write_report
from nclab.report.pages import lacks_note, run_title
from nclab.report.regression import TITLE_SETTINGS
from nclab.runs import RunLogWarning, load_run
from nclab.train import ClassificationTask, TrainConfig, Trainer, TrainingDiverged
from nclab.train.trainer import TrainingInterrupted

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS_PER_EPOCH = 160 // TINY.batch_size  # 4 classes x 40 samples, batch 32


def snapshot(path: Path) -> dict[str, bytes] | None:
    """Every file under ``path`` with its bytes; None when ``path`` does not exist."""
    if not path.exists():
        return None
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(path.rglob("*"))}


def one_line(info: pytest.ExceptionInfo) -> str:
    message = str(info.value)
    assert message and "\n" not in message, message
    return message


def strict_json(path: Path):
    """Parse ``path`` refusing NaN and Infinity (what json.dumps(allow_nan=True) writes)."""
    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A complete TINY run, checkpointed after every epoch."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    torch.set_num_threads(1)
    Trainer(TINY, run_dir, progress=False, checkpoint_every=1).fit()
    return run_dir


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(run_dir, target)
    return target


# --- NaN metrics (item 7) -----------------------------------------------------------------


class NaNEvaluator:
    """Logs non-finite values at the top level and inside lists; summarizes nested ones."""

    name = "nans"

    def __call__(self, context):
        return {"nan_metric": math.nan, "values": [1.0, math.inf, -math.inf]}

    def summarize(self, rows):
        return {"history": {"nan_metric": [r["nan_metric"] for r in rows], "x": [math.nan]}}


def test_nan_metrics_at_any_depth_are_stored_as_null_and_the_run_ends(tmp_path):
    config = TINY.updated(epochs=4, log_points=2)
    summary = Trainer(config, tmp_path, progress=False, evaluators=[NaNEvaluator()]).fit()
    assert summary["status"] == "complete"
    stored = strict_json(tmp_path / "summary.json")
    assert summary == stored  # what fit returns is what summary.json holds
    assert stored["final"]["nan_metric"] is None and stored["final"]["values"] == [1.0, None, None]
    assert stored["history"]["x"] == [None] and set(stored["history"]["nan_metric"]) == {None}
    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        assert json.loads(line, parse_constant=lambda c: pytest.fail(c))["nan_metric"] is None
    with open(tmp_path / "metrics.csv") as handle:
        table = list(csv.DictReader(handle))
    assert {(r["nan_metric"], r["values"]) for r in table} == {("", "[1.0, null, null]")}
    # the finished run can be resumed (nothing to redo), as any complete run
    Trainer(config, tmp_path, progress=False, evaluators=[NaNEvaluator()]).fit(resume=True)


def test_the_issue_reproduction_lr_100_ends_normally(tmp_path):
    """lr 100 and one batch: cdnv and others become NaN in the last row (issue 13, 7)."""
    config = TrainConfig(dataset="gaussian", epochs=5, lr=100, batch_size=100_000,
                         log_points=5)
    summary = Trainer(config, tmp_path, progress=False).fit()
    assert summary["status"] == strict_json(tmp_path / "summary.json")["status"] == "complete"
    assert None in summary["final"].values()  # the NaN values, stored as null


# --- weights and outputs that blow up (item 9) ------------------------------------------


class BlowUpAfter(ClassificationTask):
    """Sets the first layer's weights to ``value`` after a given optimizer step."""

    def __init__(self, config, step, value):
        super().__init__(config)
        self.steps, self.at, self.value = 0, step, value

    def after_step(self, model):
        self.steps += 1
        if self.steps == self.at:
            first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
            with torch.no_grad():
                first.weight.fill_(self.value)


@pytest.mark.parametrize(("value", "message"), [
    (math.nan, "the weights became NaN or infinite in epoch 3"),
    (math.inf, "the weights became NaN or infinite in epoch 3"),
    (3e38, "the network's outputs became NaN or infinite in epoch 3"),  # finite weights
])
def test_a_last_step_that_blows_up_the_network_is_a_divergence(tmp_path, value, message):
    config = TINY.updated(log_points=TINY.epochs)  # epoch 3 is evaluated
    task = BlowUpAfter(config, 3 * STEPS_PER_EPOCH, value)  # the last step of epoch 3
    with pytest.raises(TrainingDiverged, match=message) as info:
        Trainer(config, tmp_path, progress=False, task=task, checkpoint_every=1).fit()
    assert "the last good checkpoint (epoch 2) is kept" in one_line(info)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 2
    summary = strict_json(tmp_path / "summary.json")
    assert summary["status"] == "diverged" and summary["diverged_epoch"] == 3
    assert [r["epoch"] for r in rows(tmp_path)] == [1, 2]


@pytest.mark.parametrize(("entries", "dtype", "finite"), [
    ([1.0, -2.0], torch.float32, True),
    ([3e38, 3e38], torch.float32, True),  # the sum overflows: settled entry by entry
    ([1e300, 1e300], torch.float64, True),
    ([60000.0, 60000.0], torch.float16, True),
    ([1.0, math.nan], torch.float32, False),
    ([math.inf, -math.inf], torch.float32, False),  # the sum is NaN, not a cancellation
    ([1.0, math.inf], torch.bfloat16, False),
])
def test_the_weights_check_finds_every_non_finite_entry(entries, dtype, finite):
    from nclab.train.trainer import _weights_finite

    weights = [torch.ones(3, 4), torch.tensor(entries, dtype=dtype)]
    assert _weights_finite(weights) is finite
    assert _weights_finite([]) is True


class FailingEvaluator:
    """An evaluator that breaks, and records how the model runs during the outputs check
    that follows."""

    name = "failing"

    def __init__(self):
        self.forward_modes = []

    def __call__(self, context):
        context.model.register_forward_hook(
            lambda module, args, out: self.forward_modes.append(
                (module.training, torch.is_grad_enabled())))
        raise RuntimeError("evaluator bug")


def test_an_evaluation_error_with_finite_outputs_is_raised_as_it_is(tmp_path):
    # the outputs check runs through the one capture: eval mode, no gradients, the
    # model's training mode restored; finite outputs mean the error is no divergence
    evaluator = FailingEvaluator()
    trainer = Trainer(TINY, tmp_path, progress=False, evaluators=[evaluator])
    with pytest.raises(RuntimeError, match="evaluator bug"):
        trainer.fit()
    assert evaluator.forward_modes and set(evaluator.forward_modes) == {(False, False)}
    assert trainer.model.training
    assert not (tmp_path / "summary.json").exists()


def test_the_issue_reproduction_of_overflowing_features_is_a_divergence(tmp_path):
    config = TrainConfig(dataset="gaussian", dataset_options={"num_classes": 4, "dim": 8},
                         epochs=5, lr=100, batch_size=100_000, log_points=5)
    with pytest.raises(TrainingDiverged, match="outputs became NaN or infinite in epoch 4"):
        Trainer(config, tmp_path, progress=False).fit()
    assert strict_json(tmp_path / "summary.json")["status"] == "diverged"


# --- one writer at a time (item 8) ------------------------------------------------------

HOLD_LOCK = """
import sys, time
from nclab.runs import RunDir
lock = RunDir(sys.argv[1]).lock()
lock.__enter__()
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_writer_is_refused_and_kill_9_leaves_no_stale_lock(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)],
                              env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(run_dir)
        for resume in (False, True):
            with pytest.raises(NCInputError, match=rf"is in use by another nclab process "
                                                   rf"\(pid {holder.pid}\)") as info:
                Trainer(TINY, run_dir, progress=False).fit(resume=resume)
            one_line(info)
            assert snapshot(run_dir) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    assert (run_dir / ".lock").exists()  # what kill -9 leaves: a file, not a lock
    Trainer(TINY, run_dir, progress=False).fit()
    assert not (run_dir / ".lock").exists()
    assert strict_json(run_dir / "summary.json")["status"] == "complete"


# --- SIGINT / SIGTERM inside the training loop (item 19) --------------------------------


class SignalAt(ClassificationTask):
    """Sends this process ``signum`` after optimizer step ``step`` (counted from 1)."""

    def __init__(self, config, step, signum):
        super().__init__(config)
        self.steps, self.at, self.signum = 0, step, signum

    def after_step(self, model):
        self.steps += 1
        if self.steps == self.at:
            signal.raise_signal(self.signum)


def test_signals_checkpoint_where_they_land_and_the_resumed_run_is_identical(tmp_path,
                                                                             finished):
    run_dir = tmp_path / "run"
    # the handler the process had (a shell ignores SIGINT in background jobs)
    sigint_before = signal.getsignal(signal.SIGINT)
    mid_epoch = SignalAt(TINY, 3 * STEPS_PER_EPOCH + 2, signal.SIGINT)  # inside epoch 4
    with pytest.raises(TrainingInterrupted) as info:  # before any periodic checkpoint
        Trainer(TINY, run_dir, progress=False, task=mid_epoch, checkpoint_every=100).fit()
    assert info.value.exit_code == 130
    assert one_line(info) == (
        f"stopped by SIGINT in epoch 4 (after step 2); checkpoint saved in "
        f"{run_dir / 'checkpoint.pt'}; continue with: nclab train --out {run_dir} --resume")
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["step"]) == (3, 2)
    assert signal.getsignal(signal.SIGINT) == sigint_before  # restored

    # the rest of epoch 4, then epochs 5 to 7: the signal comes in the last step of 7
    at_boundary = SignalAt(TINY, STEPS_PER_EPOCH - 2 + 3 * STEPS_PER_EPOCH, signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="stopped by SIGTERM after epoch 7 of 12") \
            as info:
        Trainer(TINY, run_dir, progress=False, task=at_boundary).fit(resume=True)
    assert info.value.exit_code == 143
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["step"]) == (7, 0)

    Trainer(TINY, run_dir, progress=False).fit(resume=True)
    assert rows(run_dir) == rows(finished)
    ours = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    theirs = torch.load(finished / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)  # bitwise


# --- a run directory in an unexpected state (items 10, 11) ------------------------------


def test_a_checkpoint_without_its_config_is_never_overwritten(tmp_path, finished):
    run_dir = copy_of(finished, tmp_path)
    (run_dir / "config.json").unlink()
    before = snapshot(run_dir)
    for resume in (False, True):
        with pytest.raises(NCInputError, match="holds checkpoint.pt, metrics.jsonl, "
                                               "metrics.csv, summary.json but no config.json"):
            Trainer(TINY, run_dir, progress=False).fit(resume=resume)
        assert snapshot(run_dir) == before


def test_stale_temporaries_of_killed_writes_are_removed_on_start(tmp_path, finished):
    run_dir = copy_of(finished, tmp_path)
    stale = [run_dir / ".checkpoint.pt.k1x2y3.tmp", run_dir / ".metrics.csv.abc.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    (run_dir / "notes.tmp").write_text("not ours")
    Trainer(TINY, run_dir, progress=False).fit(resume=True)
    assert not any(path.exists() for path in stale)
    assert (run_dir / "notes.tmp").exists()


# --- damaged checkpoints and configs (item 12) ------------------------------------------


def _set(key, value):
    return lambda ckpt: {**ckpt, key: value}


def _without(key):
    return lambda ckpt: {k: v for k, v in ckpt.items() if k != key}


def _model(change):
    def mutate(ckpt):
        model = dict(ckpt["model"])
        change(model)
        return {**ckpt, "model": model}
    return mutate


def _optimizer(change):
    def mutate(ckpt):
        optimizer = json.loads(json.dumps(ckpt["optimizer"], default=lambda t: None))
        optimizer["state"] = ckpt["optimizer"]["state"]
        change(optimizer)
        return {**ckpt, "optimizer": optimizer}
    return mutate


def _momentum_group(optimizer):
    optimizer["param_groups"][0]["momentum"] = "abc"


def _short_buffer(optimizer):
    optimizer["state"] = {0: {"momentum_buffer": torch.zeros(2)}}


DAMAGED_CHECKPOINTS = {
    "a tensor": (lambda ckpt: torch.zeros(3), r"holds a tensor of shape \(3,\), not the dict"),
    "a list": (lambda ckpt: [], r"holds \[\], not the dict"),
    "a number": (lambda ckpt: 3, "holds 3, not the dict"),
    "no model": (_without("model"), "lacks model: not an nclab checkpoint"),
    "no rows": (_without("rows"), "lacks rows"),
    "other format": (_set("format", 7), "unknown format 7"),
    "epoch -5": (_set("epoch", -5), r"epoch is -5; expected an integer in 0\.\.12"),
    "epoch 1e9": (_set("epoch", 1e9), "epoch is 1000000000.0; expected an integer"),
    "epoch 10**9": (_set("epoch", 10**9), "epoch is 1000000000; expected"),
    "epoch text": (_set("epoch", "abc"), "epoch is 'abc'"),
    "epoch tensor": (_set("epoch", torch.tensor([5, 6])), r"epoch is a tensor of shape \(2,\)"),
    "onset beyond": (_set("tpt_onset", 99), r"tpt_onset is 99; expected an integer in -1\.\.12"),
    "onset 0": (_set("tpt_onset", 0), "tpt_onset is 0"),
    "rows a number": (_set("rows", "3"), "rows is not the JSON list"),
    "rows not JSON": (_set("rows", "[{"), "rows is not the JSON list"),
    "rows a tensor": (_set("rows", torch.zeros(2)), "rows is not the JSON list"),
    "rows unordered": (_set("rows", '[{"epoch": 5}, {"epoch": 3}]'),
                       "a logged row has epoch 3; expected increasing epochs in 1..12"),
    "rows without epochs": (_set("rows", "[[1, 2]]"), "a logged row has epoch None"),
    "elapsed text": (_set("elapsed", "abc"), "elapsed is 'abc'; expected a finite number"),
    "elapsed nan": (_set("elapsed", math.nan), "elapsed is nan"),
    "step beyond": (_set("step", 99), r"step is 99; expected an integer in 0\.\.0"),
    "model a tensor": (_set("model", torch.zeros(2)), "model is a tensor of shape"),
    "model shape": (_model(lambda m: m.update({"classifier.weight": torch.zeros(5, 32)})),
                    r"does not fit the model: classifier.weight has shape \(5, 32\), the "
                    r"model \(4, 32\)"),
    "model key": (_model(lambda m: m.pop("classifier.bias")), "missing classifier.bias"),
    "model extra": (_model(lambda m: m.update({"head.weight": torch.zeros(1)})),
                    "unexpected head.weight"),
    "model nan": (_model(lambda m: m.update({"classifier.bias": torch.full((4,), math.nan)})),
                  "model weights classifier.bias hold NaN or inf"),
    "optimizer empty": (_set("optimizer", {}), "optimizer is not the state"),
    "optimizer a list": (_set("optimizer", [1]), "optimizer is not the state"),
    "optimizer momentum": (_optimizer(_momentum_group),
                           "the optimizer's momentum is 'abc', the config gives 0.9"),
    "optimizer buffer": (_optimizer(_short_buffer),
                         r"momentum_buffer has shape \(2,\) for a parameter of shape"),
    "rng size": (_set("rng_cpu", torch.zeros(3, dtype=torch.uint8)), "not a random-generator"),
    "rng text": (_set("rng_cpu", "abc"), "not a random-generator"),
}


@pytest.mark.parametrize("case", list(DAMAGED_CHECKPOINTS))
def test_a_damaged_checkpoint_is_named_in_one_line_and_left_alone(tmp_path, finished, case):
    mutate, message = DAMAGED_CHECKPOINTS[case]
    run_dir = copy_of(finished, tmp_path)
    path = run_dir / "checkpoint.pt"
    torch.save(mutate(torch.load(path, weights_only=True)), path)
    before = snapshot(run_dir)
    with pytest.raises(NCInputError, match=message) as info:
        Trainer(TINY, run_dir, progress=False).fit(resume=True)
    assert one_line(info).startswith(str(path))
    assert snapshot(run_dir) == before


@pytest.mark.parametrize(("text", "message"), [
    (b"[]", "expected a JSON object of settings, found a list"),
    (b"3", "expected a JSON object of settings, found a number"),
    (b'"abc"', "found a string"),
    (b'{"epochs": ', r"is not valid JSON \(Expecting value\)"),
    (b"\xff\xfe{}", "is not valid JSON"),
])
def test_a_damaged_config_json_is_named_in_one_line(tmp_path, finished, text, message):
    run_dir = copy_of(finished, tmp_path)
    (run_dir / "config.json").write_bytes(text)
    before = snapshot(run_dir)
    for resume in (False, True):
        with pytest.raises(NCInputError, match=message) as info:
            Trainer(TINY, run_dir, progress=False).fit(resume=resume)
        assert str(run_dir / "config.json") in one_line(info)
    assert snapshot(run_dir) == before


def test_a_config_json_with_a_wrong_value_is_refused(tmp_path, finished):
    run_dir = copy_of(finished, tmp_path)
    stored = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**stored, "epochs": "abc"}))
    before = snapshot(run_dir)
    with pytest.raises(NCInputError, match='different config \\(epochs: "abc" -> 12\\)'):
        Trainer(TINY, run_dir, progress=False).fit(resume=True)
    assert snapshot(run_dir) == before


# --- file-system faults (item 13) --------------------------------------------------------


def test_a_file_in_the_way_of_the_run_directory(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("mine")
    for run_dir, message in ((blocker, f"{blocker} is a file, not a folder$"),
                             (blocker / "run", f"{blocker} is a file, not a folder "
                                               r"\(cannot create .*run\)")):
        with pytest.raises(NCInputError, match=message) as info:
            Trainer(TINY, run_dir, progress=False).fit()
        one_line(info)
    assert blocker.read_text() == "mine"


def _refuse_writes_under(monkeypatch, root: Path, code: int) -> None:
    """Make the file system under ``root`` refuse to create anything (EROFS, EACCES)."""
    real_open, real_mkdir = os.open, os.mkdir

    def fake_open(path, flags, *args, **kwargs):
        if str(path).startswith(str(root)) and flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if str(path).startswith(str(root)):
            raise OSError(code, os.strerror(code), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_a_read_only_or_forbidden_file_system(tmp_path, finished, monkeypatch, code):
    run_dir = copy_of(finished, tmp_path)
    before = snapshot(run_dir)
    _refuse_writes_under(monkeypatch, tmp_path, code)
    cause = os.strerror(code)
    with pytest.raises(NCInputError, match=rf"\.lock: cannot lock the run directory "
                                           rf"\({cause}\)") as info:
        Trainer(TINY, run_dir, progress=False).fit(resume=True)
    one_line(info)
    with pytest.raises(NCInputError, match=rf"new: cannot create the folder \({cause}\)"):
        Trainer(TINY, tmp_path / "new", progress=False).fit()
    if code == errno.EROFS:  # (drawing the figures takes a few seconds)
        with pytest.raises(NCInputError, match=rf"collapse.png: cannot write \({cause}\)"):
            write_report(run_dir)
    monkeypatch.undo()
    assert snapshot(run_dir) == before and not (tmp_path / "new").exists()


def test_permission_denied_on_reading_the_config(tmp_path, finished, monkeypatch):
    run_dir = copy_of(finished, tmp_path)
    real = Path.read_bytes

    def refuse(path):
        if path.name == "config.json":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(NCInputError, match=r"config.json: cannot read \(Permission denied\)"):
        Trainer(TINY, run_dir, progress=False).fit(resume=True)


class DiskFullAfter(ClassificationTask):
    """From optimizer step ``step`` on, the disk is full: ``fail(path)`` says what fails."""

    def __init__(self, config, step):
        super().__init__(config)
        self.steps, self.at = 0, step

    @property
    def full(self):
        return self.steps >= self.at

    def after_step(self, model):
        self.steps += 1


def _no_space():
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_at_a_checkpoint_loses_nothing(tmp_path, finished, monkeypatch):
    run_dir = tmp_path / "run"
    task = DiskFullAfter(TINY, 3 * STEPS_PER_EPOCH)  # full during epoch 3
    real_fsync = os.fsync

    def fsync(fd):
        if task.full:
            raise _no_space()
        return real_fsync(fd)

    monkeypatch.setattr(nclab.core.io.os, "fsync", fsync)
    with pytest.raises(NCInputError, match=r"checkpoint.pt: cannot write \(No space left on "
                                           r"device\)") as info:
        Trainer(TINY, run_dir, progress=False, task=task, checkpoint_every=1).fit()
    one_line(info)
    monkeypatch.undo()
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"] == 2
    assert not list(run_dir.glob(".*.tmp"))
    Trainer(TINY, run_dir, progress=False).fit(resume=True)
    assert rows(run_dir) == rows(finished)


def test_disk_full_on_a_log_append_loses_nothing(tmp_path, finished, monkeypatch):
    run_dir = tmp_path / "run"
    task = DiskFullAfter(TINY, 2 * STEPS_PER_EPOCH)

    def open_(path, mode="r", *args, **kwargs):
        if task.full and "a" in mode:
            raise _no_space()
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(nclab.runs, "open", open_, raising=False)
    with pytest.raises(NCInputError, match=r"metrics.jsonl: cannot write \(No space left on "
                                           r"device\)"):
        Trainer(TINY, run_dir, progress=False, task=task, checkpoint_every=1).fit()
    monkeypatch.undo()
    Trainer(TINY, run_dir, progress=False).fit(resume=True)
    assert rows(run_dir) == rows(finished)


def test_report_output_path_that_is_a_file(tmp_path, finished):
    blocker = tmp_path / "out"
    blocker.write_text("mine")
    for call in (lambda: write_report(finished, blocker),
                 lambda: write_comparison([finished, finished], blocker)):
        with pytest.raises(NCInputError, match=f"{blocker} is a file, not a folder") as info:
            call()
        one_line(info)
    assert blocker.read_text() == "mine"


# --- a full disk at the start: one line, nothing left ------------------------------------


def _fail_nth(monkeypatch, name, n, root):
    """Make the ``n``-th call (from 1) of ``os.name`` on a descriptor or a path under
    ``root`` fail with ENOSPC (calls on other paths, torch's caches, are not counted)."""
    real, calls = getattr(os, name), []

    def failing(first, *args, **kwargs):
        if isinstance(first, int) or str(first).startswith(str(root)):
            calls.append(first)
            if len(calls) == n:
                raise _no_space()
        return real(first, *args, **kwargs)

    monkeypatch.setattr(os, name, failing)


FULL_AT_START = {  # what fails: (function, its call that fails, the file named)
    "the folder": ("mkdir", 2, "run: cannot create the folder"),
    "the lock's process id": ("ftruncate", 1, r"\.lock: cannot lock the run directory"),
    "config.json": ("fsync", 1, "config.json: cannot write"),
    "metrics.jsonl after config.json": ("fsync", 2, "metrics.jsonl: cannot write"),
    "metrics.csv after both": ("fsync", 3, "metrics.csv: cannot write"),
}


@pytest.mark.parametrize(("case", "state"), [
    (case, state) for case in FULL_AT_START for state in ("absent", "other files")
    if not (state == "other files" and FULL_AT_START[case][0] == "mkdir")])  # nothing to make
def test_a_full_disk_at_the_start_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, case,
                                                                   state):
    name, call, message = FULL_AT_START[case]
    run_dir = tmp_path / "deep" / "run"
    if state == "other files":
        run_dir.mkdir(parents=True)
        (run_dir / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    _fail_nth(monkeypatch, name, call, tmp_path)
    with pytest.raises(NCInputError, match=rf"{message} \(No space left on device\)") as info:
        Trainer(TINY, run_dir, progress=False).fit()
    one_line(info)
    monkeypatch.undo()
    assert snapshot(tmp_path) == before
    Trainer(TINY.updated(epochs=2), run_dir, progress=False).fit()  # the same command again


def test_a_full_disk_at_the_lock_on_the_command_line(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    _fail_nth(monkeypatch, "ftruncate", 1, tmp_path)
    code, _, err = run_cli(["train", *TINY_ARGS, "--epochs", "2", "--no-report", "--out",
                            run_dir], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert ".lock: cannot lock the run directory (No space left on device)" in err
    assert not run_dir.exists()


# --- a failed start leaves the folder as it was (item 18; issue 14) ---------------------

FAILED_STARTS = {
    "class out of range": ({"classes": (0, 1, 99)}, {}, r"classes \[99\] out of range"),
    "no root": ({"dataset": "mnist", "dataset_options": {}}, {}, "is read from files"),
    "unknown data option": ({"dataset_options": {**TINY.dataset_options, "bogus": 1}}, {},
                            "has no option bogus"),
    "unknown model option": ({"model_options": {"depth": 3}}, {}, "has no option depth"),
    "unknown device": ({}, {"device": "tpu9"},
                       "device 'tpu9' is not a torch device; use auto, cpu, cuda"),
    "cuda index": ({}, {"device": "cuda:99"}, "device 'cuda:99'"),
    "one class declared": ({"dataset_options": {**TINY.dataset_options, "num_classes": 1}}, {},
                           "the train split of dataset 'gaussian' holds samples of only 1"),
    "one class kept": ({"classes": (3,)}, {}, "holds samples of only 1 class"),
    "root of a generated set": ({"root": "data"}, {}, "is generated, not read from files"),
}


@pytest.mark.parametrize("state", ["absent", "empty", "other files"])
@pytest.mark.parametrize("case", list(FAILED_STARTS))
def test_a_failed_start_leaves_the_folder_as_it_was(tmp_path, case, state):
    changes, options, message = FAILED_STARTS[case]
    run_dir = tmp_path / "deep" / "run"
    if state != "absent":
        run_dir.mkdir(parents=True)
    if state == "other files":
        (run_dir / "notes.txt").write_text("mine")
        (run_dir / ".lock").write_text("")  # left by a process killed earlier
    before, parent = snapshot(run_dir), snapshot(tmp_path)
    with pytest.raises(NCInputError, match=message) as info:
        Trainer(TINY.updated(**changes), run_dir, progress=False, **options).fit()
    one_line(info)
    assert snapshot(run_dir) == before and snapshot(tmp_path) == parent
    Trainer(TINY.updated(epochs=2), run_dir, progress=False).fit()  # the corrected start


def test_cuda_without_a_gpu_is_refused_before_anything_is_written(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(NCInputError, match="device 'cuda': this torch has no CUDA device"):
        Trainer(TINY, tmp_path / "run", device="cuda", progress=False).fit()
    assert not (tmp_path / "run").exists()


def test_a_failed_resume_leaves_the_run_as_it_was(tmp_path, finished):
    run_dir = copy_of(finished, tmp_path)
    before = snapshot(run_dir)
    for changes in ({"classes": (0, 1, 99)}, {"lr": 0.1}):
        with pytest.raises(NCInputError):
            Trainer(TINY.updated(**changes), run_dir, progress=False).fit(resume=True)
        assert snapshot(run_dir) == before


# --- logs with bad lines, and logs written by hand (item 6; issue 11) -------------------


def test_a_corrupt_line_in_the_middle_of_the_log_is_skipped_not_the_rest(tmp_path, finished):
    run_dir = copy_of(finished, tmp_path)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    damaged = [*lines[:2], '{"epoch": 3, "tr', "[1, 2]", '{"lr": 1}', *lines[2:]]
    (run_dir / "metrics.jsonl").write_text("\n".join(damaged) + "\n")
    with pytest.warns(RunLogWarning) as caught:
        run = load_run(run_dir)
    assert [r["epoch"] for r in run.rows] == [r["epoch"] for r in rows(finished)]
    notes = [f"{run_dir / 'metrics.jsonl'} line 3 is not valid JSON: skipped",
             f"{run_dir / 'metrics.jsonl'} line 4 is a list, not an object: skipped",
             f"{run_dir / 'metrics.jsonl'} line 5 has no numeric 'epoch': skipped"]
    assert run.notes == notes
    assert [str(w.message) for w in caught] == ["; ".join(notes)]  # one line says it all
    # a half-written last line (a crash) is dropped without a warning
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + '\n{"epoch": 99, "tr')
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunLogWarning)
        assert len(load_run(run_dir).rows) == len(lines)


def test_report_of_a_hand_written_log_shows_what_it_has_and_says_what_it_lacks(tmp_path):
    log = tmp_path / "mine"
    log.mkdir()
    entries = [{"epoch": 1, "train_nc1": 2.0, "test_nc1": 2.5, "my_score": 0.1},
               {"epoch": 10, "train_nc1": 0.5, "test_nc1": 1.5, "my_score": 0.7},
               {"epoch": 30, "train_nc1": 0.05, "test_nc1": 1.2, "my_score": 0.9}]
    (log / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    page = write_report(log).read_text()
    for absent in ("?", "None", "of None", "nan"):
        assert absent not in page.replace("<!doctype", ""), absent
    assert "<title>nclab report: mine</title>" in page
    assert "last logged epoch 30 (no config.json or summary.json" in page
    assert "Not in this log: tpt_onset, train_error, test_error." in page
    assert "No config.json: the settings of this run are unknown." in page
    assert "<td>train NC1 at epoch 30</td><td>0.05</td>" in page
    assert "<td>nc1</td><td>0.05</td><td>1.2</td>" in page  # the metrics table
    assert "<td>my_score</td><td>0.9</td>" in page  # columns nclab does not know
    # the same log as a CSV table
    (log / "metrics.jsonl").unlink()
    (log / "metrics.csv").write_text("epoch,train_nc1,my_score\n1,2.0,0.1\n30,0.05,\n")
    run = load_run(log)
    assert run.rows == [{"epoch": 1, "train_nc1": 2.0, "my_score": 0.1},
                        {"epoch": 30, "train_nc1": 0.05, "my_score": None}]


def test_regression_report_of_a_hand_written_log_says_what_it_lacks(tmp_path):
    log = tmp_path / "mine"
    log.mkdir()
    (log / "config.json").write_text(json.dumps({"task": "regression", "loss": "mse"}))
    entries = [{"epoch": 1, "train_nrc1": 0.4, "train_mse": 2.0},
               {"epoch": 20, "train_nrc1": 0.01, "train_mse": 0.1}]
    (log / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    page = write_report(log).read_text()
    for absent in ("?", "None", "nan", "weight decay"):
        assert absent not in page.replace("<!doctype", ""), absent
    assert "<title>nclab regression report: mine</title>" in page
    assert ("Not in this log: train_nrc2, head_gram, target_cov, test_mse." in page)
    assert "Not in config.json: model, dataset, weight_decay." in page
    assert "<td>train_nrc1</td><td>0.4</td><td>0.01</td>" in page
    assert "<td>test_nrc1</td>" not in page  # rows of values the log does not hold
    # what the config does hold is named (by the helpers the page uses)
    (log / "config.json").write_text(json.dumps({"task": "regression", "model": "mlp",
                                                 "weight_decay": 0.01}))
    run = load_run(log)
    assert run_title(run, TITLE_SETTINGS) == "mine: mlp, weight decay 0.01"
    assert lacks_note(run, ("train_nrc1",), TITLE_SETTINGS) == "<p>Not in config.json: dataset.</p>"


# --- the same on the command line --------------------------------------------------------


@pytest.mark.parametrize("bad", [
    ["--classes", "0,1,99"], ["--data-opt", "bogus=1"], ["--dataset", "mnist"],
    ["--device", "tpu9"], ["--device", "cuda:99"], ["--model-opt", "depth=3"],
    ["--device", "cuda"], ["--data-opt", "num_classes=1"], ["--classes", "2"],
    ["--epochs", str(2**63)], ["--seed", str(2**63)], ["--batch-size", str(2**64)],
    ["--root", "data"],
])
def test_a_failed_command_leaves_the_folder_as_it_was_and_the_fixed_one_runs(tmp_path,
                                                                              capsys, bad):
    if bad == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    run_dir = tmp_path / "run"
    args = ["train", *TINY_ARGS, "--epochs", "2", "--no-report", "--out", run_dir]
    code, _, err = run_cli([*args, *bad], capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert not run_dir.exists() and snapshot(tmp_path) == {}
    code, out, err = run_cli(args, capsys)
    assert code in (0, None) and "trained 2 epochs" in out, err


def test_resume_of_a_damaged_run_on_the_command_line(tmp_path, finished, capsys):
    run_dir = copy_of(finished, tmp_path)
    resume = ["train", "--out", run_dir, "--resume", "--no-progress", "--no-report"]
    for text in ("[]", json.dumps({**TINY.to_dict(), "epochs": "abc"})):
        (run_dir / "config.json").write_text(text)
        before = snapshot(run_dir)
        code, _, err = run_cli(resume, capsys)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
        assert snapshot(run_dir) == before
    (run_dir / "config.json").write_text(json.dumps(TINY.to_dict()))
    torch.save(torch.zeros(3), run_dir / "checkpoint.pt")
    code, _, err = run_cli(resume, capsys)
    assert code == 2 and "checkpoint.pt holds a tensor of shape (3,)" in err, err


def test_report_command_warns_once_per_skipped_line(tmp_path, finished, capsys):
    run_dir = copy_of(finished, tmp_path)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    (run_dir / "metrics.jsonl").write_text("\n".join([lines[0], "{oops", *lines[1:]]) + "\n")
    code, out, err = run_cli(["report", run_dir], capsys)
    assert code in (0, None), err
    assert err.strip().splitlines() == [
        f"warning: {run_dir / 'metrics.jsonl'} line 2 is not valid JSON: skipped"], err
    assert f"epoch {rows(finished)[-1]['epoch']}" in (run_dir / "report.html").read_text()
