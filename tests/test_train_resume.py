"""kill -9 in the middle of `nclab train`, then --resume: the same run as without the kill."""

import signal
import time

import pytest
import torch
from train_helpers import TINY_ARGS, nclab_command, rows

EPOCHS = 24
ARGS = [*TINY_ARGS, "--epochs", EPOCHS, "--log-points", EPOCHS, "--checkpoint-every", "1",
        "--no-report"]


def finish(process):
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return out


def kill_after_rows(process, run_dir, count):
    """SIGKILL a run once ``count`` epochs are logged (one row per epoch)."""
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.is_file() and metrics.read_text().count("\n") >= count:
            break
        time.sleep(0.005)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_resume_after_sigkill_ends_like_an_uninterrupted_run(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    uninterrupted = nclab_command("train", *ARGS, "--run-dir", whole)
    kill_after_rows(nclab_command("train", *ARGS, "--run-dir", killed), killed, 5)
    finish(uninterrupted)
    expected = rows(whole)
    assert len(expected) == EPOCHS

    assert not (killed / "summary.json").exists()
    done = torch.load(killed / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= done < EPOCHS
    assert rows(killed)[:done] == expected[:done]

    out = finish(nclab_command("train", *ARGS, "--run-dir", killed, "--resume"))
    assert f"trained {EPOCHS} epochs" in out
    assert rows(killed) == expected  # rows logged past the checkpoint were redone
    assert (killed / "metrics.csv").read_text().count("\n") == EPOCHS + 1
