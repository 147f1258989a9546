"""`torchrun --nproc_per_node=2` (gloo, CPU) logs the metrics of the single-process run,
and an error on one rank stops every rank with the same line."""

import dataclasses
import json
import shutil
from functools import partial
from pathlib import Path

import pytest
from ddp_faults import injected
from distributed_helpers import run_ranks
from torch_threads import one_thread  # noqa: F401
from train_helpers import TINY, TINY_ARGS, nclab_command, rows

from nclab.core.errors import NCInputError
from nclab.train import Trainer

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


# ---------------------------------------------------------------- one rank fails
SHORT = dataclasses.replace(TINY, epochs=4, log_points=4)


def _fit(rank: int, world: int, run_dir: Path, fault: str, config=SHORT) -> dict:
    """A run of this rank with ``fault``: its status, or its error line."""
    with injected(fault):
        try:
            return {"status": Trainer(config, run_dir, progress=False).fit()["status"]}
        except NCInputError as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}


@pytest.mark.parametrize(("fault", "error", "epochs"), [
    ("evaluate", "rank 1 of 2: RuntimeError: the evaluator crashed", [1, 2]),
    ("write", "rank 0 of 2: {run}: no space left on device", [1]),
])
def test_an_error_on_one_rank_stops_every_rank_alike(tmp_path, fault, error, epochs):
    run_dir = tmp_path / "run"
    ranks = run_ranks(partial(_fit, run_dir=run_dir, fault=fault), tmp_path)
    assert ranks == [{"error": "RankFailed: " + error.format(run=run_dir)}] * 2
    # as a run that stopped in one process: config and the rows logged, no lock left
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "metrics.csv",
                                                         "metrics.jsonl"]
    assert [row["epoch"] for row in rows(run_dir)] == epochs


def test_a_failed_start_on_one_rank_leaves_no_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    ranks = run_ranks(partial(_fit, run_dir=run_dir, fault="setup"), tmp_path)
    assert ranks == [{"error": "RankFailed: rank 1 of 2: cannot read the data files on "
                               "this node"}] * 2
    assert not run_dir.exists()


@pytest.mark.usefixtures("one_thread")
def test_empty_evaluation_shards_log_the_single_process_values(tmp_path):
    # two log points in 4 epochs: the epochs between are measured by the loss pass alone
    config = dataclasses.replace(SHORT, log_points=2)
    ranks = run_ranks(partial(_fit, run_dir=tmp_path / "ddp", fault="empty-shards",
                              config=config), tmp_path)
    assert ranks == [{"status": "complete"}] * 2
    Trainer(config, tmp_path / "single", progress=False).fit()
    single, ddp = rows(tmp_path / "single"), rows(tmp_path / "ddp")
    assert ddp[-1]["epoch"] == 4
    for a, b in zip(single, ddp, strict=True):
        assert a.keys() == b.keys()
        for key, value in a.items():
            if isinstance(value, float):
                assert b[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (a["epoch"], key)
            else:
                assert b[key] == value, (a["epoch"], key)


#: torchrun, giving every rank time to print its error before it stops the others
FAULT_LAUNCHER = (*TORCHRUN, "--monitor-interval", "5")


@pytest.mark.slow
def test_torchrun_with_a_failed_start_on_one_rank_prints_one_line_per_rank(tmp_path):
    faults = (str(Path(__file__).with_name("ddp_faults.py")), "setup")
    process = nclab_command("train", *ARGS, "--out", tmp_path / "run",
                            launcher=FAULT_LAUNCHER, entry=faults)
    _, err = process.communicate(timeout=600)
    assert process.returncode != 0
    line = "error: rank 1 of 2: cannot read the data files on this node\n"
    assert err.count(line) == 2, err  # one per rank, and no traceback of nclab or gloo
    assert "nclab/" not in err and "Gloo" not in err and "gloo" not in err
    assert not (tmp_path / "run").exists()
