"""`nclab report` and `nclab compare` write readable files for finished and partial runs."""

import csv
import json
import os
from pathlib import Path

import pytest
from cli_helpers import run_cli
from torch_threads import one_thread  # noqa: F401
from train_helpers import TINY, TINY_ARGS

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


# ---------------------------------------------------------------- damaged and hand-written logs


def _write_log(folder, rows, config=None, summary=None):
    """A run folder written by hand: metrics.jsonl of ``rows`` (text lines or dicts)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    (folder / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    for name, document in (("config.json", config), ("summary.json", summary)):
        if document is not None:
            (folder / name).write_text(document if isinstance(document, str)
                                       else json.dumps(document))
    return folder


ROWS = [{"epoch": e, "train_error": 0.5 / e, "train_nc1": 2.0 / e, "train_loss": 1.0 / e}
        for e in (1, 2, 4)]


def _warnings(err):
    """The warning lines of stderr (and no other line: no traceback)."""
    lines = err.strip().splitlines()
    assert all(line.startswith("warning: ") for line in lines), err
    return lines


def _axes(run, title):
    return next(ax for ax in _figure_of([run]).axes if ax.get_title().startswith(title))


def test_log_panels_with_nothing_positive_are_drawn_empty_and_told_in_one_line(tmp_path,
                                                                                capsys):
    folder = _write_log(tmp_path / "zeros", [{**row, "train_nc1": -row["epoch"] + 1}
                                             for row in ROWS])
    code, out, err = run_cli(["report", folder], capsys)
    assert code in (0, None), err
    why = "3 of 3 values not drawn (on log axes only values in [1e-100, 1e100] can be drawn)"
    assert _warnings(err) == [f"warning: collapse.png: NC1: {why}; nc1.png: NC1 (train): {why}"]
    for name in ("collapse.png", "nc1.png"):
        assert (folder / name).read_bytes().startswith(PNG)
    nc1 = _axes(load_run(folder), "NC1")
    assert nc1.get_yscale() == "linear" and not nc1.get_lines()
    assert "no value to draw on a log scale" in [t.get_text() for t in nc1.texts]
    loss = _axes(load_run(folder), "loss")  # the other panels draw what the log has
    assert loss.get_yscale() == "log"
    assert [list(line.get_ydata()) for line in loss.get_lines()
            if len(line.get_xdata()) > 1] == [[1.0, 0.5, 0.25]]


def test_train_without_evaluators_ends_with_its_report(tmp_path, capsys):
    run_dir = tmp_path / "bare"
    code, out, err = run_cli(["train", *TINY_ARGS, "--epochs", "2", "--evaluators", "",
                              "--out", run_dir], capsys)
    assert code in (0, None), err
    assert out.strip().splitlines()[-1] == f"report: {run_dir / 'report.html'}"
    html = (run_dir / "report.html").read_text()
    assert "Not in this log: train_nc1." in html
    nc1 = _axes(load_run(run_dir), "NC1")
    assert "not in the log" in [t.get_text() for t in nc1.texts]


def test_numbers_beyond_the_float_range_are_read_as_missing(tmp_path, capsys):
    huge = 10**400
    rows = [*ROWS[:2], "{" + f'"epoch": 3, "train_nc1": {huge}, "train_loss": 1e999' + "}",
            "{" + f'"epoch": {huge}, "train_nc1": 1' + "}", {"epoch": 5, "train_nc1": NAN}]
    folder = _write_log(tmp_path / "huge", rows, summary={"status": "complete",
                                                          "epochs_done": huge})
    (folder / "summary.json").write_text(f'{{"status": "complete", "epochs_done": {huge}}}')
    code, _, err = run_cli(["report", folder], capsys)
    assert code in (0, None), err
    (line,) = _warnings(err)
    assert "line 4 has no numeric 'epoch': skipped" in line
    assert "metrics.jsonl: 3 values that are NaN, Infinity or beyond the float range" in line
    assert "summary.json: 1 value that is NaN" in line
    assert "complete: 5 epochs" in (folder / "report.html").read_text()
    run = load_run(folder, warn=False)
    assert [row["epoch"] for row in run.rows] == [1, 2, 3, 5]
    assert run.rows[2] == {"epoch": 3, "train_nc1": None, "train_loss": None}
    assert run.summary == {"status": "complete", "epochs_done": None}
    epochs, values = run.series("train_nc1")
    assert epochs.tolist() == [1, 2] and values.tolist() == [2.0, 1.0]


NAN = float("nan")


def test_configs_of_the_wrong_kinds_and_deep_nesting_are_left_out(tmp_path, capsys):
    config = {"epochs": "ten", "lr_milestones": [[0.5], "a"], "lr_gamma": [1], "loss": 5,
              "model": "mlp", "dataset": {"deep": [[[1]]]}}
    folder = _write_log(tmp_path / "types", ROWS, config=config)
    code, _, err = run_cli(["report", folder], capsys)
    assert code in (0, None) and len(_warnings(err)) == 1, err
    assert "<td>epochs</td><td>ten</td>" not in (folder / "report.html").read_text()
    run = load_run(folder, warn=False)
    assert run.config == {"model": "mlp", "dataset": {"deep": [[[1]]]}}
    assert len(run.notes) == 4 and "'epochs' is 'ten', not a whole number: ignored" in run.notes[0]
    for deep in ("[" * 100_000 + "]" * 100_000, '{"a": ' + "[" * 500 + "]" * 500 + "}"):
        (folder / "config.json").write_text(deep)
        code, _, err = run_cli(["report", folder], capsys)
        assert code in (0, None), err
        assert _warnings(err) == [f"warning: {folder / 'config.json'} is nested deeper than "
                                  "32 levels: ignored"]


def _figure_texts(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    FigureCanvasAgg(fig).draw()
    return [text.get_text() for text in fig.findobj(Text) if text.get_text()]


def test_dollars_in_folder_names_and_labels_are_never_mathtext(two_runs, tmp_path, capsys):
    from matplotlib.cbook import is_math_text

    folder = _write_log(tmp_path / r"run$\frac{$", ROWS, config={"loss": "$x$"})
    code, _, err = run_cli(["report", folder], capsys)
    assert code in (0, None), err
    code, _, err = run_cli(["compare", folder, two_runs[0], "--out", tmp_path / "c",
                            "--label", "a$x^2$", "--label", "$b$"], capsys)
    assert code in (0, None), err
    runs = [load_run(folder, "a$x^2$"), load_run(two_runs[0], "$b$")]
    texts = _figure_texts(_figure_of(runs))
    assert r"a\$x^2\$" in texts and r"\$b\$" in texts and r"loss: \$x\$" in texts
    assert not [text for text in texts if is_math_text(text)]
    assert "<td>a$x^2$</td>" in (tmp_path / "c" / "compare.html").read_text()


def test_folder_names_that_are_not_utf8_are_shown_escaped(tmp_path, capsys):
    folder = Path(os.fsdecode(os.fsencode(tmp_path) + b"/run\xff\n"))
    _write_log(folder, ROWS)
    code, out, err = run_cli(["report", folder], capsys)
    assert code in (0, None), err
    shown = f"{tmp_path}/run\\xff\\n"
    assert out.strip().splitlines() == [f"report: {shown}/report.html"]
    assert f"<code>{shown}</code>" in (folder / "report.html").read_text()
    assert load_run(folder).label == "run\\xff\\n"
    (folder / "metrics.jsonl").write_text("")
    code, _, err = run_cli(["report", folder], capsys)
    assert code == 2 and err.startswith(f"error: {shown} has no logged epochs") \
        and err.count("\n") == 1, err


def test_a_csv_field_over_the_csv_limit_skips_its_row(tmp_path, capsys):
    folder = tmp_path / "wide"
    folder.mkdir()
    big = "x" * (csv.field_size_limit() + 1)
    (folder / "metrics.csv").write_text(f"epoch,train_nc1,note\n1,2.0,a\n2,1.0,{big}\n4,0.5,b\n")
    code, _, err = run_cli(["report", folder], capsys)
    assert code in (0, None), err
    assert _warnings(err) == [f"warning: {folder / 'metrics.csv'} line 3 is not a CSV row "
                              "(field larger than field limit (131072)): skipped"]
    assert load_run(folder).series("train_nc1")[1].tolist() == [2.0, 0.5]
