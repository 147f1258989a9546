"""`torchrun --nproc_per_node=2` (gloo, CPU) logs the metrics of the single-process run."""

import json

import pytest
from train_helpers import TINY_ARGS, nclab_command, rows

TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
ARGS = [*TINY_ARGS, "--epochs", "6", "--log-points", "6", "--no-report"]


@pytest.mark.slow
def test_two_process_gloo_run_equals_single_process(tmp_path):
    runs = {
        "single": nclab_command("train", *ARGS, "--run-dir", tmp_path / "single"),
        "ddp": nclab_command("train", *ARGS, "--run-dir", tmp_path / "ddp",
                             launcher=TORCHRUN),
    }
    for name, process in runs.items():
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, f"{name}: {err}"
    assert out.count("trained 6 epochs") == 1  # only rank 0 reports
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2
    single, ddp = rows(tmp_path / "single"), rows(tmp_path / "ddp")
    assert [r["epoch"] for r in ddp] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(single, ddp, strict=True):
        assert a.keys() == b.keys()
        for key, value in a.items():
            if isinstance(value, float):
                # same batches, same init: only the order of floating-point sums differs
                assert b[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (a["epoch"], key)
            else:
                assert b[key] == value, (a["epoch"], key)
