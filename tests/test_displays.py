"""Results that show themselves (``plot``, ``_repr_html_``, ``to_pandas``) and the metric
metadata declared once (``nclab.core.metric_info``), with the docs and tutorials it drives."""

import json
import math
import re
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # tests only: a notebook keeps its own backend

import matplotlib as mpl  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from train_helpers import SRC  # noqa: E402

import nclab  # noqa: E402
from nclab import NCInputError  # noqa: E402
from nclab.capture import LayerProfile  # noqa: E402
from nclab.core import metric_info  # noqa: E402
from nclab.core.metric_info import METRICS, info_for_column, markdown_table  # noqa: E402
from nclab.core.metrics import (  # noqa: E402
    MARGIN_NAMES,
    METRIC_NAMES,
    SPECTRAL_NAMES,
    CollapseMetrics,
)
from nclab.core.stats import CollapseStats  # noqa: E402
from nclab.report import write_report  # noqa: E402
from nclab.report.displays import CollapseDisplay, HistoryDisplay, panel_key  # noqa: E402
from nclab.report.figures import run_panels, training_panels  # noqa: E402
from nclab.report.style import figure_style  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "docs" / "tutorials"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def collapsed(seed=0, spread=0.3, classes=4, dim=6, per_class=30):
    """Features near a simplex ETF, a classifier near the means, and their metrics."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, classes)))[0]
    etf = (np.eye(classes) - 1 / classes) @ basis.T
    labels = np.repeat(np.arange(classes), per_class)
    features = 3 * etf[labels] + spread * rng.normal(size=(len(labels), dim))
    weight = etf + 0.1 * rng.normal(size=(classes, dim))
    return features, labels, weight


@pytest.fixture(scope="module")
def metrics():
    features, labels, weight = collapsed()
    return nclab.measure(features, labels, weight, np.zeros(len(weight)), spectral=True)


# ----------------------------------------------------------------------------- metadata
def test_metric_names_are_the_declaration_in_order():
    assert METRIC_NAMES + SPECTRAL_NAMES + MARGIN_NAMES == tuple(METRICS)
    assert SPECTRAL_NAMES == ("rankme", "rankme_centred", "alpha_req", "lidar",
                              "class_rankme_mean")
    numeric = {f.name for f in fields(CollapseMetrics) if f.type == "float | None"}
    bookkeeping = {"cdnv_exponent", "softmax_code_lower", "softmax_code_upper"}
    assert numeric - bookkeeping == set(METRICS)  # every metric field is declared
    assert all(info.name == name for name, info in METRICS.items())
    for info in METRICS.values():
        assert info.direction in ("lower", "higher") or isinstance(info.direction, float)
        assert info.section in ("§1", "§7", "§8", "§10")


def test_declared_needs_are_the_none_rules_of_compute_metrics():
    features, labels, weight = collapsed()
    bare = nclab.measure(features, labels)
    full = nclab.measure(features, labels, weight, np.zeros(4))
    stats = CollapseStats(4, 6).update(features, labels)
    no_second_pass = nclab.compute_metrics(stats, weight)  # no decisions, no bias

    def missing(result):
        return {name for name in METRICS if getattr(result, name) is None}

    spectral = {name for name, info in METRICS.items() if info.option}  # asked for
    ood = {"nc5_ood_orthogonality"}
    assert missing(bare) == {name for name, info in METRICS.items()
                             if info.needs_classifier or info.needs} | spectral
    assert missing(full) == ood | spectral
    assert missing(no_second_pass) == ({name for name, i in METRICS.items()
                                        if i.needs_second_pass} | {"bias_relation"} | ood
                                       | spectral)
    assert {n for n, i in METRICS.items() if i.needs == "the bias"} == {"bias_relation"}


def test_weight_only_metrics_are_the_same_on_any_samples():
    features, labels, weight = collapsed()
    one = nclab.measure(features, labels, weight, margins=True)
    other = nclab.measure(collapsed(seed=1, spread=0.6)[0], labels, weight, margins=True)
    for name, info in METRICS.items():
        if info.weights_only:
            assert getattr(one, name) == pytest.approx(getattr(other, name), rel=1e-12), name
        elif info.section == "§1" and name not in ("accuracy", "ncc_mismatch"):
            assert getattr(one, name) != pytest.approx(getattr(other, name)), name


def test_columns_name_their_metric():
    assert info_for_column("train_nc1").name == "nc1"
    assert info_for_column("test_nc1_trace").name == "nc1_trace"  # the longer name wins
    assert info_for_column("nc/rankme_centred").name == "rankme_centred"
    assert info_for_column("recovery_test_accuracy").higher_is_better is True
    assert info_for_column("train_unc3_duality_cv").higher_is_better is None
    for column in ("train_loss", "epoch", "test_error", "lr", "nc1x"):
        assert info_for_column(column) is None, column


def test_docs_table_is_the_declaration():
    page = (ROOT / "docs" / "metrics.md").read_text()
    found = re.search(r"<!-- metric table: generated from nclab.core.metric_info."
                      r"markdown_table\(\) -->\n(.*?)<!-- end of the metric table -->",
                      page, re.S)
    assert found, "docs/metrics.md lost the markers of its metric table"
    assert found.group(1) == markdown_table(), (
        "docs/metrics.md is out of date: paste nclab.core.metric_info.markdown_table()")
    rows = [line for line in found.group(1).splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(METRICS)


def test_the_table_follows_a_changed_declaration(monkeypatch):
    changed = dict(METRICS, nc1=replace(METRICS["nc1"], direction=0.5, needs="a tea"))
    monkeypatch.setattr(metric_info, "METRICS", changed)
    assert "| `nc1` | §1 | closer to 0.5 |  |  | a tea |" in markdown_table()


# ----------------------------------------------------------------------------- metrics
def test_metrics_plot_draws_every_gap_with_its_value(metrics):
    fig, ax = metrics.plot()
    gaps = [name for name, info in METRICS.items()
            if info.is_gap and getattr(metrics, name) is not None]
    assert [t.get_text() for t in ax.get_yticklabels()] == gaps
    positive = [getattr(metrics, name) for name in gaps if getattr(metrics, name) > 0]
    assert len(positive) >= len(gaps) - 1  # ncc_mismatch may be 0: on the left edge
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), positive)
    # one stem per value, top to bottom in the order of the names
    (stems,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert [seg[1, 0] for seg in stems.get_segments()] == positive
    assert ax.get_xscale() == "log" and ax.figure is fig
    assert f"accuracy {metrics.accuracy:.3g}" in ax.get_title()
    assert f"rankme {metrics.rankme:.3g}" in ax.get_title()  # the others, under the title
    assert sorted(t.get_text() for t in ax.texts) == sorted(
        f"{getattr(metrics, n):.3g}" for n in gaps)


def test_metrics_plot_into_given_axes_with_chosen_names(metrics):
    fig, (left, right) = plt.subplots(1, 2)
    got_fig, got_ax = metrics.plot(ax=right, names=["accuracy", "nc1", "unc3_duality_cv"])
    assert got_fig is fig and got_ax is right and not left.lines
    assert right.get_xscale() == "linear"  # not every value is a gap
    np.testing.assert_array_equal(right.lines[0].get_xdata(),
                                  [metrics.accuracy, metrics.nc1, metrics.unc3_duality_cv])


def test_an_exact_zero_sits_on_the_left_edge_of_the_log_axis(metrics):
    zero = replace(metrics, ncc_mismatch=0.0)
    fig, ax = zero.plot(names=["nc1", "ncc_mismatch", "cdnv"])
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [zero.nc1, zero.cdnv])
    edge = ax.lines[1]
    at = edge.get_transform().transform([(edge.get_xdata()[0], edge.get_ydata()[0])])[0]
    assert at[0] == pytest.approx(ax.transAxes.transform([(0.0, 0.0)])[0][0])
    assert at[1] == pytest.approx(ax.transData.transform([(1.0, 1.0)])[0][1])  # 2nd row
    assert edge.get_markerfacecolor() == "white"
    assert "0" in [t.get_text() for t in ax.texts]


@pytest.mark.parametrize("names, message", [
    (["nc_one"], "unknown metric 'nc_one'"),
    (["nc5_ood_orthogonality"], "nc5_ood_orthogonality has no finite value"),
    ([], "no metric has a finite value"),
])
def test_bad_metric_choices_are_one_line(metrics, names, message):
    with pytest.raises(NCInputError, match=message):
        metrics.plot(names=names)


def test_wrong_axes_are_refused(metrics):
    fig, axes = plt.subplots(1, 2)
    with pytest.raises(NCInputError, match="ax must be 1 matplotlib Axes"):
        metrics.plot(ax=axes)
    with pytest.raises(NCInputError, match="got 1 object"):
        metrics.plot(ax="left")


def test_display_object_keeps_its_figure(metrics):
    display = CollapseDisplay.from_metrics(metrics, names=["nc1", "cdnv"])
    assert display.values == (metrics.nc1, metrics.cdnv)
    fig, ax = display.plot()
    assert display.figure_ is fig and display.ax_ is ax


def test_repr_html_lists_each_metric_with_its_value_and_why_others_are_missing():
    features, labels, _ = collapsed()
    result = nclab.measure(features, labels)
    page = result._repr_html_()
    for name, info in METRICS.items():
        value = getattr(result, name)
        if value is not None:
            assert f"<tr><td>{name}</td><td>{value:.4g}</td><td>{info.better()}</td>" in page
        else:
            assert f"<td>{name}</td>" not in page and name in page
    assert "no classifier given: equinorm_weights" in page
    assert "N = 120 samples, C = 4 classes, d = 6" in page


def test_html_and_frames_do_not_import_matplotlib(tmp_path):
    run_dir = write_run(tmp_path)
    code = ("import sys, numpy as np, nclab\n"
            "m = nclab.measure(np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2)\n"
            f"m._repr_html_(); nclab.load_run({str(run_dir)!r})._repr_html_()\n"
            "print('matplotlib' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}, check=True)
    assert out.stdout.strip() == "False"


def test_figure_style_keeps_settings_it_did_not_make():
    # a backend loaded inside the block (the first pyplot figure of a notebook) turns on
    # interactive mode; restoring every rc setting on leaving turned it off again, and no
    # later figure of the notebook was shown
    before = mpl.rcParams["interactive"]
    try:
        with figure_style():
            assert mpl.rcParams["axes.spines.top"] is False
            mpl.rcParams["interactive"] = not before
        assert mpl.rcParams["interactive"] is (not before)
        assert mpl.rcParams["axes.spines.top"] is True
    finally:
        mpl.rcParams["interactive"] = before


# ----------------------------------------------------------------------------- runs
ROWS = [
    {"epoch": 1, "lr": 0.1, "train_loss": 1.2, "test_loss": 1.3, "train_error": 0.4,
     "test_error": 0.5, "tpt_onset": None, "train_nc1": 2.0, "test_nc1": 2.5,
     "train_equinorm_means": 0.3, "train_equinorm_weights": 0.2,
     "train_equiangularity_means": 0.4, "train_equiangularity_weights": 0.3,
     "train_maxangle_means": 0.2, "train_maxangle_weights": 0.25,
     "train_self_duality": 0.9, "train_ncc_mismatch": 0.3, "test_ncc_mismatch": 0.35},
    {"epoch": 3, "lr": 0.1, "train_loss": 0.2, "test_loss": 0.5, "train_error": 0.0,
     "test_error": 0.1, "tpt_onset": 3, "train_nc1": 0.5, "test_nc1": 0.9,
     "train_equinorm_means": 0.1, "train_equinorm_weights": 0.05,
     "train_equiangularity_means": 0.1, "train_equiangularity_weights": 0.08,
     "train_maxangle_means": 0.05, "train_maxangle_weights": 0.06,
     "train_self_duality": 0.3, "train_ncc_mismatch": 0.0, "test_ncc_mismatch": 0.05},
    {"epoch": 9, "lr": 0.01, "train_loss": 0.01, "test_loss": 0.4, "train_error": 0.0,
     "test_error": 0.08, "tpt_onset": 3, "train_nc1": 0.05, "test_nc1": None,
     "train_equinorm_means": 0.02, "train_equinorm_weights": 0.01,
     "train_equiangularity_means": 0.02, "train_equiangularity_weights": 0.01,
     "train_maxangle_means": 0.01, "train_maxangle_weights": 0.02,
     "train_self_duality": 0.05, "train_ncc_mismatch": 0.0, "test_ncc_mismatch": 0.02,
     "extra": "note"},
]


def write_run(folder, rows=ROWS):
    run_dir = folder / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "config.json").write_text(json.dumps(
        {"loss": "ce", "epochs": 9, "lr_milestones": [0.5], "lr_gamma": 0.1}))
    return run_dir


def test_run_history_to_pandas_equals_the_logged_rows(tmp_path):
    run = nclab.load_run(write_run(tmp_path))
    frame = run.to_pandas()
    assert list(frame.columns) == run.columns and len(frame) == len(ROWS)
    for got, want in zip(frame.to_dict("records"), ROWS, strict=True):
        for key in run.columns:
            value = want.get(key)
            if value is None:
                assert got[key] is None or (isinstance(got[key], float) and math.isnan(got[key]))
            else:
                assert got[key] == value, key


def test_to_pandas_without_pandas_says_how_to_install_it(tmp_path, monkeypatch):
    run = nclab.load_run(write_run(tmp_path))
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r'pip install "nclab\[pandas\]"'):
        run.to_pandas()


def test_run_plot_draws_the_papers_panels_with_the_logged_values(tmp_path):
    run = nclab.load_run(write_run(tmp_path))
    fig, axes = run.plot()
    assert axes.shape == (8,) and all(ax.figure is fig for ax in axes)
    assert [panel_key(p) for p in training_panels([run])] == [
        "error", "nc1", "equinorm", "equiangularity", "maxangle", "self_duality",
        "ncc_mismatch", "loss"]
    nc1 = axes[1]
    train, test = (line for line in nc1.lines if line.get_label() in ("train", "test"))
    np.testing.assert_array_equal(train.get_xdata(), [1, 3, 9])
    np.testing.assert_array_equal(train.get_ydata(), [2.0, 0.5, 0.05])
    np.testing.assert_array_equal(test.get_ydata(), [2.5, 0.9])  # the null is left out
    assert nc1.get_yscale() == "log" and nc1.get_xscale() == "log"
    onset = [line for line in nc1.lines if line.get_linestyle() == ":"]
    assert [line.get_xdata()[0] for line in onset] == [3]


def test_run_plot_chooses_panels_and_takes_axes(tmp_path):
    run = nclab.load_run(write_run(tmp_path))
    fig, ax = run.plot(panels="self_duality")
    assert ax.get_title().startswith("self-duality")
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [0.9, 0.3, 0.05])
    own, pair = plt.subplots(1, 2)
    got, axes = run.plot(ax=pair, panels=["nc1", "equinorm"])
    assert got is own and list(axes) == list(pair)
    np.testing.assert_array_equal(pair[1].lines[0].get_ydata(), [0.3, 0.1, 0.02])
    with pytest.raises(NCInputError, match="no panel 'nc_1'; the panels: error, nc1"):
        run.plot(panels=["nc_1"])
    with pytest.raises(NCInputError, match="ax must be 3 matplotlib Axes"):
        run.plot(ax=pair, panels=["nc1", "equinorm", "loss"])
    with pytest.raises(NCInputError, match="no panel chosen; the panels: error"):
        run.plot(panels=[])
    with pytest.raises(NCInputError, match="expected one or more RunRecord"):
        HistoryDisplay.from_runs([run.rows])
    with pytest.raises(NCInputError, match="expected a CollapseMetrics; got dict"):
        CollapseDisplay.from_metrics({"nc1": 0.1})


def test_the_report_figure_and_the_display_draw_the_same(tmp_path):
    run = nclab.load_run(write_run(tmp_path))
    written = run_panels(training_panels([run]), [run])  # what collapse.png shows
    _, shown = HistoryDisplay.from_runs([run]).plot()
    for file_ax, display_ax in zip(written.axes, shown, strict=True):
        assert file_ax.get_title() == display_ax.get_title()
        assert [(tuple(a.get_xdata()), tuple(a.get_ydata())) for a in file_ax.lines] == \
            [(tuple(b.get_xdata()), tuple(b.get_ydata())) for b in display_ax.lines]


def test_run_repr_html_and_the_report_columns_follow_the_declaration(tmp_path):
    run_dir = write_run(tmp_path)
    run = nclab.load_run(run_dir)
    page = run._repr_html_()
    assert "run run: in progress or interrupted: last logged epoch 9 of 9" in page
    assert "<tr><td>nc1</td><td>0.05</td><td>n/a</td><td>lower</td><td>§1</td></tr>" in page
    assert "TPT onset (first epoch with zero training error): epoch 3" in page
    html = write_report(run_dir).read_text()
    table = html.split("<h2>Metrics at epoch 9</h2>")[1].split("</table>")[0]
    shown = re.findall(r"<tr><td>(\w+)</td>", table)
    assert shown == [name for name in METRICS if f"train_{name}" in ROWS[-1]
                     and not METRICS[name].weights_only]
    for name in shown:
        assert re.search(rf"<td>{name}</td>(<td>[^<]*</td>){{2}}<td>"
                         rf"{METRICS[name].better()}</td>", table), name
    weights = html.split("Geometry of the classifier's weights")[1].split("</table>")[0]
    assert re.findall(r"<tr><td>(\w+)</td>", weights) == [
        n for n, i in METRICS.items() if i.weights_only and f"train_{n}" in ROWS[-1]]


# ------------------------------------------------------------------ profiles, fine labels
def test_layer_profile_plot_and_frame():
    layers = (CollapseMetrics(nc1=3.0, nc1_trace=1.5, cdnv=2.0, dim=8, num_samples=40),
              CollapseMetrics(nc1=0.4, nc1_trace=0.2, cdnv=0.3, dim=4, num_samples=40))
    result = LayerProfile(("body", "head"), ("output", "input"), layers)
    fig, ax = result.plot(title="two layers")
    nc1, trace = ax.lines
    np.testing.assert_array_equal(nc1.get_ydata(), [3.0, 0.4])
    np.testing.assert_array_equal(trace.get_ydata(), [1.5, 0.2])
    assert ax.get_title() == "two layers"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["body\noutput",
                                                            "head\nclassifier input"]
    frame = result.to_pandas()
    assert frame.to_dict("records") == result.to_dict()["layers"]


def test_fine_recovery_plot_shows_each_superclass_against_chance():
    from nclab.finegrained import CoarseLabeling, recover_fine_labels

    rng = np.random.default_rng(0)
    labeling = CoarseLabeling.from_map([0, 0, 1, 1, 1])
    centres = 4 * rng.normal(size=(5, 3))
    y_train, y_test = np.repeat(np.arange(5), 20), np.repeat(np.arange(5), 6)
    x_train = centres[y_train] + 0.3 * rng.normal(size=(100, 3))
    x_test = centres[y_test] + 0.3 * rng.normal(size=(30, 3))
    result = recover_fine_labels(x_train, y_train, labeling.coarse(y_train), x_test,
                                 labeling.coarse(y_test), y_test, labeling=labeling,
                                 n_init=2, threads=1)
    fig, ax = result.plot()
    train, test = ax.containers
    assert [bar.get_height() for bar in train] == [s.train_accuracy for s in result.superclasses]
    assert [bar.get_height() for bar in test] == [s.test_accuracy for s in result.superclasses]
    (chance,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert [seg[0, 1] for seg in chance.get_segments()] == [1 / 2, 1 / 3]


# ----------------------------------------------------------------------------- integrations
def test_torchmetrics_directions_come_from_the_declaration():
    from nclab.integrations.torchmetrics import NeuralCollapse

    assert NeuralCollapse.higher_is_better is None
    assert NeuralCollapse.directions == {n: METRICS[n].direction for n in METRIC_NAMES}
    assert NeuralCollapse.directions["nc1"] == "lower"
    assert NeuralCollapse.directions["unc3_duality_cv"] == 0.0


def test_wandb_summary_keeps_the_best_value_by_direction():
    from nclab.integrations.loggers import WandbLogger

    class Run:
        def __init__(self):
            self.defined, self.logged = [], []

        def define_metric(self, name, summary):
            self.defined.append((name, summary))

        def log(self, scalars, step):
            self.logged.append((step, scalars))

    logger = WandbLogger.__new__(WandbLogger)
    logger.run, logger.summarized = Run(), set()
    row = {"epoch": 1, "train_nc1": 0.5, "test_accuracy": 0.9, "train_loss": 0.1,
           "train_unc3_duality_cv": 0.2}
    logger.log(row, step=1)
    logger.log(dict(row, epoch=2), step=2)  # each metric is defined once
    assert logger.run.defined == [("train_nc1", "min,last"), ("test_accuracy", "max,last")]
    assert [step for step, _ in logger.run.logged] == [1, 2]


# ----------------------------------------------------------------------------- tutorials
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))


def test_there_are_five_tutorials_in_the_docs_nav():
    assert len(NOTEBOOKS) == 5
    nav = (ROOT / "mkdocs.yml").read_text()
    for path in NOTEBOOKS:
        assert f"tutorials/{path.name}" in nav, path.name
        assert f"({path.name})" in (TUTORIALS / "index.md").read_text(), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_tutorials_are_stored_executed_with_small_figures(path):
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    counts = [cell["execution_count"] for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), "run it top to bottom: make tutorials"
    images = 0
    for cell in cells:
        outputs = cell["outputs"]
        assert not [o for o in outputs if o["output_type"] == "error"]
        assert not [o for o in outputs if o.get("name") == "stderr"], "".join(cell["source"])
        pngs = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
        source = "".join(cell["source"])
        if ".plot(" in source or "plt.subplots" in source:
            assert pngs, f"a figure of this cell is not shown:\n{source}"
        assert all(len(png) < 120_000 for png in pngs)  # base64 of a PNG at dpi 70
        images += len(pngs)
    assert 1 <= images <= 4
    assert path.stat().st_size < 200_000
    # a relative link to a page works in Jupyter and breaks on the site (or the reverse)
    notes = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                    if c["cell_type"] == "markdown")
    assert not re.findall(r"\]\([^)]*\.md\)", notes)
