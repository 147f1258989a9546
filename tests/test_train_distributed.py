"""`torchrun --nproc_per_node=2` (gloo, CPU) logs the metrics of the single-process run."""

import json
import shutil

import pytest
from train_helpers import TINY_ARGS, nclab_command, rows

TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
ARGS = [*TINY_ARGS, "--epochs", "6", "--log-points", "6", "--no-report"]


#: gloo (torch 2.13, CPU) sometimes aborts a rank at interpreter exit, after the run has
#: ended and written everything; seen about once in ten runs under load, with nclab's
#: code of before this release too. Such a run is retried; any other failure is not.
EXIT_ABORT = "terminate called without an active exception"


def _ddp_run(run_dir, attempts=3):
    for _ in range(attempts):
        process = nclab_command("train", *ARGS, "--out", run_dir, launcher=TORCHRUN)
        out, err = process.communicate(timeout=600)
        summary = run_dir / "summary.json"
        aborted_at_exit = EXIT_ABORT in err and summary.is_file() and \
            json.loads(summary.read_text()).get("status") == "complete"
        if not aborted_at_exit:
            break
        shutil.rmtree(run_dir)
    return process.returncode, out, err


@pytest.mark.slow
def test_two_process_gloo_run_equals_single_process(tmp_path):
    single = nclab_command("train", *ARGS, "--out", tmp_path / "single")
    out, err = single.communicate(timeout=600)
    assert single.returncode == 0, f"single: {err}"
    returncode, out, err = _ddp_run(tmp_path / "ddp")
    assert returncode == 0, f"ddp: {err}"
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
