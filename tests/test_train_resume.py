"""kill -9 and SIGTERM in the middle of `nclab train`, then --resume: the same run as
without them (a second writer is refused: tests/test_run_faults.py)."""

import signal
import time

import pytest
import torch
from train_helpers import TINY_ARGS, nclab_command, rows

EPOCHS = 16
ARGS = [*TINY_ARGS, "--epochs", EPOCHS, "--log-points", EPOCHS, "--checkpoint-every", "1",
        "--no-report"]


def finish(process):
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return out


def wait_for_rows(process, run_dir, count):
    """Wait until ``count`` epochs are logged (one row per epoch) while ``process`` runs."""
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.is_file() and metrics.read_text().count("\n") >= count:
            break
        time.sleep(0.005)
    assert process.poll() is None, "the run ended before it could be stopped"


@pytest.mark.slow
def test_resume_after_sigkill_and_sigterm_ends_like_an_uninterrupted_run(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    uninterrupted = nclab_command("train", *ARGS, "--out", whole)
    process = nclab_command("train", *ARGS, "--out", killed)
    wait_for_rows(process, killed, 3)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    finish(uninterrupted)
    expected = rows(whole)
    assert len(expected) == EPOCHS

    assert not (killed / "summary.json").exists()
    done = torch.load(killed / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= done < EPOCHS
    assert rows(killed)[:done] == expected[:done]

    # kill -9 left no stale lock: the resume runs; SIGTERM stops it with a checkpoint
    process = nclab_command("train", *ARGS, "--out", killed, "--resume")
    wait_for_rows(process, killed, done + 3)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1].endswith(
        f"checkpoint saved in {killed / 'checkpoint.pt'}; continue with: nclab train --out "
        f"{killed} --resume"), err
    assert torch.load(killed / "checkpoint.pt", weights_only=True)["epoch"] >= done + 3

    out = finish(nclab_command("train", *ARGS, "--out", killed, "--resume"))
    assert f"trained {EPOCHS} epochs" in out
    assert rows(killed) == expected  # rows logged past the checkpoint were redone
    assert (killed / "metrics.csv").read_text().count("\n") == EPOCHS + 1
