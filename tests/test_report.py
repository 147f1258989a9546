"""`nclab report` and `nclab compare` write readable files for finished and partial runs."""

import pytest
from cli_helpers import run_cli
from torch_threads import one_thread  # noqa: F401
from train_helpers import TINY

from nclab.report import load_run
from nclab.report.style import LR_DROP_STYLE
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


# ---------------------------------------------------------------- figures a reviewer accepts


def _figure_of(runs):
    from nclab.report.figures import run_panels, training_panels
    from nclab.report.style import figure_style

    with figure_style():
        return run_panels(training_panels(runs), runs)


def _tick_texts(axis):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(axis.get_figure(root=True)).draw()
    low, high = sorted(axis.get_view_interval())
    pairs = [*zip(axis.get_majorticklocs(), axis.get_majorticklabels(), strict=True),
             *zip(axis.get_minorticklocs(), axis.get_minorticklabels(), strict=True)]
    return [text.get_text() for loc, text in pairs if low <= loc <= high and text.get_text()]


def test_every_panel_is_labelled_on_log_epochs_with_lr_drops(two_runs):
    run = load_run(two_runs[0])  # cross-entropy, lr drops after 1/3 and 2/3 of 12 epochs
    fig = _figure_of([run])
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 8
    for ax in axes:
        assert ax.get_ylabel() and ax.get_xlabel() == "epoch"
        assert ax.get_xscale() == "log"
        drops = sorted(line.get_xdata()[0] for line in ax.get_lines()
                       if line.get_color() == LR_DROP_STYLE["color"]
                       and line.get_xdata()[0] == line.get_xdata()[-1])
        assert drops == [4, 8], ax.get_title()
    assert axes[-1].get_title() == "loss: cross-entropy"
    # log axes carry plain numbers only (no 10^k mathtext, no crowded minor labels)
    for ax in axes:
        for axis in (ax.xaxis, ax.yaxis):
            texts = _tick_texts(axis)
            assert texts and all("$" not in t and "\\" not in t for t in texts), texts
            assert len(texts) <= 12, texts


def test_compare_splits_losses_and_keeps_identical_runs_visible(two_runs):
    from nclab.report.figures import identical_to, training_panels

    ce, mse = load_run(two_runs[0], "ce"), load_run(two_runs[1], "mse")
    twin = load_run(two_runs[0], "ce again")
    runs = [ce, mse, twin]
    panels = training_panels(runs)
    losses = [p for p in panels if p.title.startswith("loss")]
    assert [(p.title, p.loss) for p in losses] == [
        ("loss: cross-entropy", "ce"), ("loss: squared error ½‖f(x) − e_y‖²", "mse")]
    assert identical_to(runs, panels) == {2: 0}
    fig = _figure_of(runs)
    loss_axes = [ax for ax in fig.axes if ax.get_title().startswith("loss")]
    # each loss panel draws only the runs trained with that loss (2 curves per run)
    assert [len([line for line in ax.get_lines() if len(line.get_xdata()) > 2])
            for ax in loss_axes] == [4, 2]
    # identical runs: different markers, placed on different logged epochs
    first, again = (next(line for line in fig.axes[1].get_lines()
                         if line.get_color() == colour) for colour in ("#0072B2", "#009E73"))
    assert first.get_marker() != again.get_marker()
    assert first.get_markevery() != again.get_markevery()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[2] == "ce again (curves identical to ce)"


def test_report_tables_print_configs_readably_and_weights_once(two_runs, capsys):
    run_dir = two_runs[0]
    run_cli(["report", run_dir], capsys)
    html = (run_dir / "report.html").read_text()
    config = html.split("<h2>Configuration</h2>")[1]
    assert "<td>model_options</td><td>widths 32, 32</td>" in config
    assert "<td>lr_milestones</td><td>0.3333, 0.6667</td>" in config
    assert "[" not in config and "{" not in config and "&#x27;" not in config
    metrics = html.split("<h2>Metrics at epoch")[1].split("</table>")[0]
    assert "<td>nc1</td>" in metrics
    assert "_weights" not in metrics  # W-only metrics are not repeated per split
    weights = html.split("<h2>Geometry of the classifier's weights</h2>")[1].split("</table>")[0]
    for name in ("equinorm_weights", "equiangularity_weights", "maxangle_weights",
                 "etf_error_weights"):
        assert weights.count(f"<td>{name}</td>") == 1
