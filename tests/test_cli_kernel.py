"""``nclab kernel``: a tiny sweep end to end, resume, bad input, and the resources it
checks before it starts (memory) and gives back when killed (worker processes)."""

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from train_helpers import SRC

from nclab.cli import main
from nclab.core.errors import NCInputError
from nclab.studies import kernel_sweep as sweep_module
from nclab.studies.kernel_sweep import SweepConfig, check_claim, run_sweep, run_task

TINY = ["--sizes", "16,24", "--dims", "1,3", "--draws", "2", "--steps", "15",
        "--network-width", "32", "--workers", "1"]


def cli_ok(args, capsys):
    try:
        main([str(a) for a in args])
    except SystemExit as exc:  # typer exits 0 after a command
        assert exc.code in (0, None), capsys.readouterr().err
    return capsys.readouterr()


def test_tiny_sweep_writes_every_value_and_figures(tmp_path, capsys):
    out = cli_ok(["kernel", "--out", tmp_path, *TINY], capsys).out
    document = json.loads((tmp_path / "kernel_sweep.json").read_text())
    assert len(document["records"]) == 2 * 2 * 2
    assert (tmp_path / "kernel_nc1.png").stat().st_size > 10_000
    assert (tmp_path / "kernel_nc1_relative.png").stat().st_size > 10_000
    assert "mean log10 NC1" in out and "adaptive-erf" in document["summary"]
    report = (tmp_path / "kernel_summary.md").read_text()
    assert "## N = 24" in report and "| NTK NC1 >= NNGP NC1 (erf) |" in report
    adaptive = document["records"][0]["series"]["adaptive-erf"]
    assert adaptive["path"][-1]["width"] == 500.0 and adaptive["seconds"] >= 0
    # every value in the JSON is what one task computes on its own
    config = SweepConfig(sizes=(16, 24), dims=(1, 3), draws=2, steps=15, network_width=32)
    record = document["records"][0]
    again = run_task(config, record["n"], record["d0"], record["draw"])
    for name, entry in again["series"].items():
        if entry["status"] == "ok":
            assert record["series"][name]["nc1"] == pytest.approx(entry["nc1"], rel=1e-6)
    # the summary is the mean and std of log10 NC1 over the draws
    row = document["summary"]["ntk-relu"][0]
    values = [np.log10(r["series"]["ntk-relu"]["nc1"]) for r in document["records"]
              if r["n"] == row["n"] and r["d0"] == row["d0"]]
    assert row["count"] == 2 and row["log10_nc1_mean"] == pytest.approx(np.mean(values))
    assert row["log10_nc1_std"] == pytest.approx(np.std(values))


def test_resume_runs_only_missing_tasks(tmp_path, monkeypatch):
    config = SweepConfig(sizes=(12,), dims=(1, 2), draws=2, series=("nngp-erf", "ntk-relu"))
    path = tmp_path / "sweep.json"
    calls = []
    real = sweep_module.run_task

    def counting(*args):
        calls.append(args[1:])
        if len(calls) == 3:
            raise KeyboardInterrupt  # the run is stopped after two finished tasks
        return real(*args)

    monkeypatch.setattr(sweep_module, "run_task", counting)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(config, checkpoint=path)
    assert len(json.loads(path.read_text())["records"]) == 2
    calls.clear()
    monkeypatch.setattr(sweep_module, "run_task", lambda *a: calls.append(a[1:]) or real(*a))
    document = run_sweep(config, checkpoint=path, resume=True)
    assert len(calls) == 2 and len(document["records"]) == 4
    with pytest.raises(NCInputError, match="other settings"):
        run_sweep(SweepConfig(sizes=(12,), dims=(1,), draws=1), checkpoint=path, resume=True)


def test_worker_processes_give_the_same_numbers(tmp_path):
    config = SweepConfig(sizes=(10,), dims=(1, 2), draws=2, series=("nngp-erf", "ntk-erf"))
    inline = run_sweep(config)
    pooled = run_sweep(config, workers=2)

    def values(document):  # everything but the wall times
        return [{**r, "series": {k: {f: v for f, v in e.items() if f != "seconds"}
                                 for k, e in r["series"].items()}} for r in document["records"]]

    assert values(pooled) == values(inline) and len(values(inline)) == 4


def test_divergence_is_counted_not_dropped():
    # overlapping classes (means +-0.2): the equations of state have no solution
    config = SweepConfig(sizes=(24,), dims=(2,), draws=1, series=("adaptive-erf",), mean=0.2)
    document = run_sweep(config)
    entry = document["records"][0]["series"]["adaptive-erf"]
    row = document["summary"]["adaptive-erf"][0]
    assert entry["status"] in ("diverged", "not_converged") and "nc1" not in entry
    assert row["count"] == 0 and row["failed"] == {entry["status"]: 1}
    assert row["log10_nc1_mean"] is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sizes", "a,b"], "--sizes expects a comma-separated list of int; got 'a,b'"),
        (["--sizes", ""], "--sizes is empty"),
        (["--dims", ","], "--dims is empty"),
        (["--sizes", "3"], "--sizes takes integers >= 4; got '3'"),
        (["--sizes", str(2**63)], "--sizes takes integers in [4, 9223372036854775807]"),
        (["--seed", str(2**64)], "--seed must lie in [0, 9223372036854775807]"),
        (["--series", "nngp-tanh"], "unknown series 'nngp-tanh'"),
        (["--dims", "0"], "--dims takes integers >= 1; got '0'"),
        (["--imbalance", "-1"], "imbalance"),
        (["--sizes", "5", "--imbalance", "9"], "fewer than 2 samples"),
        (["--workers", "0"], "--workers"),
        (["--noise", "0"], "noise must be"),
        (["--steps", "0"], "steps must be"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    code, _, err = run_cli(["kernel", "--out", tmp_path, *args], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_larger_than_memory_is_refused_before_it_starts(tmp_path, capsys,
                                                                 monkeypatch):
    from nclab.core import validation

    code, out, err = run_cli(["kernel", "--out", tmp_path / "sweep", "--sizes", str(10**12),
                              "--workers", "1"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: the kernel sweep (its largest task N=1000000000000, d0=128")
    assert "GiB; cpu has" in err and "GiB free: use smaller sizes" in err
    assert "kernel sweep" not in out and not (tmp_path / "sweep").exists()  # no progress bar
    # the estimate: at least the N x N Gram matrices in float64, for each task at once
    config = SweepConfig(sizes=(4, 4096), dims=(8,), draws=1, series=("nngp-erf",))
    one = sweep_module.task_bytes(config, 4096, 8)
    assert one >= 3 * 8 * 4096**2
    monkeypatch.setattr(validation, "available_memory", lambda device: 2 * one)
    sweep_module.check_sweep_memory(config, workers=1)
    with pytest.raises(NCInputError, match="2 at a time"):  # two tasks plus two workers
        sweep_module.check_sweep_memory(config, workers=2)


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_their_parent_killed_by_sigkill(tmp_path):
    # each task trains a network for a million steps: minutes, long after the kill
    args = [sys.executable, "-m", "nclab", "kernel", "--out", str(tmp_path), "--sizes", "16",
            "--dims", "1", "--draws", "2", "--series", "network-erf", "--steps", "1000000",
            "--network-width", "8", "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # both workers past their imports, computing
            busy = [pid for pid in _children(parent.pid) if _cpu_seconds(pid) > 3.5]
            if len(busy) >= 2:
                break
            assert parent.poll() is None, "the sweep ended before its workers started"
            time.sleep(0.2)
        children = _children(parent.pid)
        assert len(busy) >= 2, children
        parent.kill()  # SIGKILL: the parent runs no clean-up at all
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(map(_alive, children)):
            time.sleep(0.1)
        assert not [pid for pid in children if _alive(pid)]
    finally:  # whatever survived, of the processes this test started (its own session)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


def test_existing_output_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "kernel_sweep.json").write_text("{}")
    code, _, err = run_cli(["kernel", "--out", tmp_path, *TINY], capsys)
    assert code == 2 and "--resume" in err
    code, _, err = run_cli(["kernel", "--out", tmp_path, "--resume", *TINY], capsys)
    assert code == 2 and "not a sweep checkpoint" in err


def test_claims_are_counted_draw_by_draw():
    records = [{"series": {"a": {"status": "ok", "nc1": 0.1}, "b": {"status": "ok", "nc1": 0.2}}},
               {"series": {"a": {"status": "ok", "nc1": 0.3}, "b": {"status": "ok", "nc1": 0.2}}},
               {"series": {"a": {"status": "diverged"}, "b": {"status": "ok", "nc1": 0.2}}}]
    assert check_claim(records, "a", "b") == (1, 2)
    assert check_claim(records, "b", "a") == (1, 2)
    assert check_claim(records, "a", "missing") == (0, 0)
