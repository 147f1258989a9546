"""`nclab report` and `nclab compare` write readable files for finished and partial runs."""

import pytest
from cli_helpers import run_cli
from torch_threads import one_thread  # noqa: F401
from train_helpers import TINY

from nclab.report import load_run
from nclab.train import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    Trainer(TINY, base / "ce", progress=False).fit()
    Trainer(TINY.updated(loss="mse", epochs=6), base / "mse", progress=False).fit()
    return base / "ce", base / "mse"


def test_report_writes_html_and_figures(two_runs, capsys):
    run_dir = two_runs[0]
    code, out, _ = run_cli(["report", run_dir], capsys)
    assert code in (0, None)
    assert f"report: {run_dir / 'report.html'}" in out.splitlines()
    html = (run_dir / "report.html").read_text()
    for name in ("collapse.png", "nc1.png"):
        data = (run_dir / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 20_000, name
        assert f"src='{name}'" in html
    run = load_run(run_dir)
    assert f"<td>{run.tpt_onset}</td>" in html  # the TPT onset is in the headline table
    assert "self_duality" in html and "ncc_mismatch" in html


def test_compare_overlays_runs(two_runs, tmp_path, capsys):
    code, out, _ = run_cli(["compare", *two_runs, "--out", tmp_path, "--label", "CE",
                            "--label", "MSE"], capsys)
    assert code in (0, None)
    assert (tmp_path / "compare.png").read_bytes().startswith(PNG)
    html = (tmp_path / "compare.html").read_text()
    assert "<td>CE</td>" in html and "<td>MSE</td>" in html
    assert "<td>loss</td>" in html  # the settings that differ are listed
    assert "<td>epochs</td>" in html


def test_partial_runs_and_bad_folders(two_runs, tmp_path, capsys):
    partial = tmp_path / "partial"
    partial.mkdir()
    lines = (two_runs[0] / "metrics.jsonl").read_text().splitlines()
    (partial / "metrics.jsonl").write_text("\n".join(lines[:2]) + "\n{\"epoch\": 3, \"tr")
    (partial / "config.json").write_bytes((two_runs[0] / "config.json").read_bytes())
    code, _, _ = run_cli(["report", partial], capsys)
    assert code in (0, None)
    assert "in progress or interrupted: last logged epoch" in (partial / "report.html").read_text()
    code, _, err = run_cli(["report", tmp_path / "nowhere"], capsys)
    assert code == 2 and "no such run directory" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(["report", empty], capsys)
    assert code == 2 and "has no logged epochs yet" in err
    code, _, err = run_cli(["compare", *two_runs, "--label", "only-one"], capsys)
    assert code == 2 and "1 labels for 2 runs" in err
