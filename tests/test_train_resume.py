"""kill -9 in the middle of `nclab train`, then --resume: the same run as without the kill."""

import signal
import time

import pytest
import torch
from train_helpers import TINY_ARGS, nclab_command, rows

ARGS = [*TINY_ARGS, "--epochs", "40", "--log-points", "40", "--checkpoint-every", "1",
        "--no-report"]


def run_to_end(run_dir, *extra):
    process = nclab_command("train", *ARGS, "--run-dir", run_dir, *extra)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return out


def kill_after_rows(run_dir, count):
    """Start a run and SIGKILL it once ``count`` epochs are logged (one row per epoch)."""
    process = nclab_command("train", *ARGS, "--run-dir", run_dir)
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
    run_to_end(tmp_path / "whole")
    expected = rows(tmp_path / "whole")
    assert len(expected) == 40

    killed = tmp_path / "killed"
    kill_after_rows(killed, 5)
    assert not (killed / "summary.json").exists()
    done = torch.load(killed / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= done < 40
    assert rows(killed)[:done] == expected[:done]  # rows past the checkpoint are redone

    out = run_to_end(killed, "--resume")
    assert "trained 40 epochs" in out
    assert rows(killed) == expected
    assert (killed / "metrics.csv").read_text().count("\n") == 41
