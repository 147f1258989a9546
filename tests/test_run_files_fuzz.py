"""Fuzz of the files a report reads: config.json, metrics.jsonl, metrics.csv and
summary.json of a real run, damaged by hypothesis (wrong types, huge numbers, deep
nesting, invalid encodings, truncation at any byte, NaN and Infinity literals, duplicate
keys, empty files). Each case ends either in a report (the page and the figures written,
the values that survived drawn, at most one warning line) or in one NCInputError line.

Drawing a report's figures takes seconds on a shared CI core (matplotlib's layout and
rendering); the examples check what matplotlib computes when it draws (axis limits, tick
locations and labels, the text of every label) and every ``REAL_EVERY``-th one renders
the PNG as well.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matplotlib.cbook import is_math_text
from matplotlib.text import Text
from torch_threads import one_thread  # noqa: F401
from train_helpers import TINY

import nclab.report.figures
import nclab.report.profile
from nclab import NCInputError
from nclab.report import write_report
from nclab.report.figures import PANELS
from nclab.report.profile import profile_figure
from nclab.report.style import save_png
from nclab.runs import RunLogWarning
from nclab.train import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")
FUZZ = settings(max_examples=50, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: config.json and summary.json change no drawn value: fewer examples cover their damages.
OPTIONAL_FILES = settings(FUZZ, max_examples=30)
REAL_EVERY = 41  # odd: the collapse panel and the NC1 plot in turn
#: The drawable range of the figures (nclab.report.style.LIMIT): the spec, restated.
LIMIT = 1e100


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished run of nclab train (6 epochs, 4 logged) and its rows as JSON reads them."""
    run_dir = tmp_path_factory.mktemp("fuzz") / "run"
    Trainer(TINY.updated(epochs=6, log_points=4), run_dir, progress=False).fit()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return run_dir, rows


# ---------------------------------------------------------------- drawing, checked cheaply

_count = {"figures": 0}


def _checked_save(fig, path):
    """What matplotlib computes when it draws, without layout or rendering; a real PNG
    every REAL_EVERY-th figure."""
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        ax.get_xlim(), ax.get_ylim()
        for axis in (ax.xaxis, ax.yaxis):
            for ticker in (axis.major, axis.minor):
                locations = ticker.locator()
                ticker.formatter.set_locs(locations)
                for i, location in enumerate(locations):
                    ticker.formatter(location, i)
    texts = [text.get_text() for text in fig.findobj(Text)]
    assert not [text for text in texts if is_math_text(text)], texts
    _count["figures"] += 1
    if _count["figures"] % REAL_EVERY == 0:
        save_png(fig, path)
        assert Path(path).read_bytes().startswith(b"\x89PNG")
    else:
        Path(path).write_bytes(b"\x89PNG checked")
    _drawn[Path(path).name] = fig


_drawn: dict = {}


@contextmanager
def cheap_figures():
    _drawn.clear()
    with patch.object(nclab.report.figures, "save_png", _checked_save), \
            patch.object(nclab.report.profile, "save_png", _checked_save):
        yield _drawn


def drawn_points(fig):
    """{(panel title, curve label): [(epoch, value), ...]} of a one-run collapse figure."""
    points = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            label = line.get_label()
            if not label.startswith("_") and len(line.get_xdata()):
                points[(ax.get_title().split(":")[0], label)] = list(
                    zip(line.get_xdata().tolist(), line.get_ydata().tolist(), strict=True))
    return points


def expected_points(rows):
    """The same from surviving rows, by the rule of the figures: finite numbers, epochs and
    values within [1e-100, 1e100] on log axes, values within ±1e100 on linear ones."""
    points = {}
    for panel in PANELS:
        for key, label in panel.curves:
            kept = [(float(row["epoch"]), float(row[key])) for row in rows
                    if _number(row.get(key)) and 1 / LIMIT <= row["epoch"] <= LIMIT
                    and (1 / LIMIT <= row[key] <= LIMIT if panel.log else abs(row[key]) <= LIMIT)]
            if kept:
                points[(panel.title.split(":")[0], label)] = kept
    return points


def _number(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(float(value)))


def report_or_one_line(folder, expected_rows):
    """Report ``folder``; compare what is drawn with ``expected_rows`` (None: a one-line
    NCInputError is expected)."""
    with cheap_figures() as figures, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            page = write_report(folder)
        except NCInputError as exc:
            assert "\n" not in str(exc) and str(exc)
            assert expected_rows is None, f"{exc} (expected a report)"
            return
    assert expected_rows is not None, "expected a one-line error"
    assert page.is_file() and page.read_text().startswith("<!doctype html>")
    assert {"collapse.png", "nc1.png"} <= set(figures)
    notes = [str(w.message) for w in caught if issubclass(w.category, RunLogWarning)]
    assert len(notes) <= 1 and all("\n" not in note for note in notes), notes
    assert drawn_points(figures["collapse.png"]) == expected_points(expected_rows)


@contextmanager
def damaged_copy(source_dir, damage):
    """A fresh copy of the run, with ``damage(folder)`` done to it."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "run"
        shutil.copytree(source_dir, folder)
        damage(folder)
        yield folder


# ---------------------------------------------------------------- damaged JSON values

DEEP = object()  # a value nested deeper than the readers accept: its whole line is lost
LOST = DEEP  # a line cut off, or not UTF-8
NOT_NUMBER = object()


def _deep(depth):
    return "[" * depth + "]" * depth, DEEP if depth > 32 else NOT_NUMBER


#: (JSON text, what a reader must make of it)
ODD_VALUES = st.one_of(
    st.sampled_from([
        ('"ten"', NOT_NUMBER), ("true", NOT_NUMBER), ("null", None), ("[1, 2]", NOT_NUMBER),
        ('{"a": [1]}', NOT_NUMBER), (str(10**400), None), ("-" + str(10**400), None),
        ("1e400", None), ("NaN", None), ("Infinity", None), ("-Infinity", None), ("0", 0),
        ("-2.5", -2.5), ("1e308", 1e308), ("5e-324", 5e-324), ("1e150", 1e150),
        ("1e-150", 1e-150), ("0.125", 0.125), ("3", 3), ('"\\udcff"', NOT_NUMBER),
        ('"$\\\\frac{$"', NOT_NUMBER), ("[" * 100_000 + "]" * 100_000, DEEP),
    ]),
    st.integers(1, 40).map(_deep),
)


def json_line(items):
    """An object written from (key, JSON text) pairs, duplicates kept."""
    return "{" + ", ".join(f"{json.dumps(key)}: {text}" for key, text in items) + "}"


def read_back(items):
    """What a reader makes of ``json_line(items)``: a dict, or DEEP (the line is lost)."""
    row = {}
    for key, (_, value) in items:
        if value is DEEP:
            return DEEP
        row[key] = value
    return row


@st.composite
def damaged_rows(draw, rows):
    """(lines of metrics.jsonl, what each must read as): values replaced, keys repeated."""
    lines = [[(key, (json.dumps(value), value)) for key, value in row.items()] for row in rows]
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        key = draw(st.sampled_from(["epoch", "train_nc1", "test_nc1", "train_error",
                                    "train_loss", "train_equinorm_means", "train_ncc_mismatch"]))
        value = draw(ODD_VALUES)
        if draw(st.booleans()):  # a duplicate key: the last one counts
            lines[i] = [*lines[i], (key, value)]
        else:
            lines[i] = [(k, value if k == key else v) for k, v in lines[i]]
    return lines


def surviving(readings):
    """The rows a report keeps: objects with a numeric epoch, each later than the last."""
    rows = []
    for row in readings:
        if row is DEEP or not isinstance(row, dict) or not _number(row.get("epoch")):
            continue
        if rows and row["epoch"] <= rows[-1]["epoch"]:
            continue
        rows.append({key: value for key, value in row.items() if value is not NOT_NUMBER})
    return rows


ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-32", "bad byte")


@settings(FUZZ)
@given(data=st.data())
def test_damaged_metrics_jsonl(source, data):
    source_dir, rows = source
    lines = data.draw(damaged_rows(rows))
    readings = [read_back(items) for items in lines]
    text = "".join(json_line([(k, t) for k, (t, _) in items]) + "\n" for items in lines)
    cut = data.draw(st.none() | st.none() | st.integers(0, len(text)))
    if cut is not None:  # truncated at any byte: only the lines wholly kept are read
        whole = text.split("\n")
        kept = text[:cut].split("\n")
        readings = [reading if i < len(kept) and kept[i] == whole[i] else LOST
                    for i, reading in enumerate(readings)]
        text = text[:cut]
    encoding = data.draw(st.sampled_from(ENCODINGS))
    if encoding == "bad byte":  # a byte that is not UTF-8 at the end of one line
        parts = text.split("\n")
        at = data.draw(st.integers(0, len(parts) - 1))
        parts[at] += "\udcff"
        payload = "\n".join(parts).encode("utf-8", "surrogateescape")
        if at < len(readings):
            readings[at] = LOST
    else:
        payload = text.encode(encoding)
    with damaged_copy(source_dir, lambda f: (f / "metrics.jsonl").write_bytes(payload)) as folder:
        report_or_one_line(folder, surviving(readings) or None)


# ---------------------------------------------------------------- metrics.csv


def _cell_number(text):
    """What a CSV cell reads as: a finite number, None (empty, NaN, too large) or text."""
    try:
        value = float(text)
    except ValueError:
        return None if text == "" else NOT_NUMBER
    return value if math.isfinite(value) else None


ODD_CELLS = st.sampled_from(["abc", "", "nan", "inf", "-Infinity", "1e400", "1" + "0" * 400,
                             "1e308", "-3", "0", " 2 ", '"1,5"', "5e-324", "0.5", "x" * 140_000])


@settings(FUZZ)
@given(data=st.data())
def test_damaged_metrics_csv(source, data):
    source_dir, rows = source
    header = list(rows[0])
    drawn_keys = [key for panel in PANELS for key, _ in panel.curves if key in header]
    table = [[json.dumps(row[key]) if row[key] is not None else "" for key in header]
             for row in rows]
    allowed = [{key: row[key] for key in header} for row in rows]
    for _ in range(data.draw(st.integers(0, 4))):
        i = data.draw(st.integers(0, len(rows) - 1))
        key = data.draw(st.sampled_from(["epoch", *drawn_keys]))
        cell = data.draw(ODD_CELLS)
        table[i][header.index(key)] = cell
        allowed[i][key] = (_cell_number(cell.strip('"')) if len(cell) < 131_072
                           else "row lost")
    if data.draw(st.booleans()):  # a row with more cells than the header
        table[data.draw(st.integers(0, len(rows) - 1))].append("1")
    text = ",".join(header) + "\n" + "".join(",".join(cells) + "\n" for cells in table)
    cut = data.draw(st.none() | st.none() | st.integers(0, len(text)))
    text = text if cut is None else text[:cut]
    encoding = data.draw(st.sampled_from(ENCODINGS[:4]))

    def damage(folder):
        (folder / "metrics.jsonl").unlink()
        (folder / "metrics.csv").write_bytes(text.encode(encoding))

    with damaged_copy(source_dir, damage) as folder, cheap_figures() as figures, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            write_report(folder)
        except NCInputError as exc:
            assert "\n" not in str(exc)
            return
    assert len([w for w in caught if issubclass(w.category, RunLogWarning)]) <= 1
    # every point drawn is the value of its column at its epoch in the log: never another
    keys = {(panel.title.split(":")[0], label): key for panel in PANELS
            for key, label in panel.curves}
    for curve, points in drawn_points(figures["collapse.png"]).items():
        for epoch, value in points:
            assert any(_close(row.get("epoch"), epoch) and _close(row.get(keys[curve]), value)
                       for row in allowed), (curve, epoch, value)


def _close(a, b):
    return _number(a) and math.isclose(float(a), b, rel_tol=1e-12)


# ---------------------------------------------------------------- config.json, summary.json


@st.composite
def damaged_document(draw, document, keys):
    """The bytes of a damaged JSON object (values replaced, keys repeated, deep nesting,
    NaN, truncation, encodings, empty)."""
    items = [(key, json.dumps(value)) for key, value in document.items()]
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(keys))
        text, _ = draw(ODD_VALUES)
        if draw(st.booleans()):  # a repeated (or new) key: the last one counts
            items.append((key, text))
        else:
            items = [(k, text if k == key else v) for k, v in items]
    text = json_line(items)
    if draw(st.booleans()):
        text = text[:draw(st.integers(0, len(text)))]
    encoding = draw(st.sampled_from(ENCODINGS))
    if encoding == "bad byte":
        at = draw(st.integers(0, len(text)))
        return text[:at].encode() + b"\xff" + text[at:].encode()
    return text.encode(encoding)


@settings(OPTIONAL_FILES)
@given(data=st.data())
def test_damaged_config_json(source, data):
    source_dir, rows = source
    config = json.loads((source_dir / "config.json").read_text())
    keys = ["epochs", "lr_milestones", "lr_gamma", "loss", "model", "dataset", "weight_decay",
            "model_options"]
    payload = data.draw(damaged_document(config, keys))
    with damaged_copy(source_dir, lambda f: (f / "config.json").write_bytes(payload)) as folder:
        report_or_one_line(folder, rows)  # the config is optional: always a report


@settings(OPTIONAL_FILES)
@given(data=st.data())
def test_damaged_summary_json(source, data):
    source_dir, rows = source
    summary = json.loads((source_dir / "summary.json").read_text())
    keys = ["status", "epochs_done", "diverged_epoch", "stopped_early", "final", "tpt_onset"]
    payload = data.draw(damaged_document(summary, keys))
    with damaged_copy(source_dir, lambda f: (f / "summary.json").write_bytes(payload)) as folder:
        report_or_one_line(folder, rows)


# ---------------------------------------------------------------- layer profiles

LAYER_VALUES = st.one_of(st.none(), st.booleans(), st.text(max_size=5),
                         st.integers(-10**400, 10**400), st.floats(allow_nan=True),
                         st.sampled_from([10**400, 1e308, 5e-324, -1.0, 0.0, 0.5]))
LAYER = st.one_of(
    st.fixed_dictionaries({"name": st.one_of(st.text(max_size=8), st.just("$\\frac{$"),
                                             st.integers()),
                           "point": st.one_of(st.just("output"), st.text(max_size=4)),
                           "nc1": LAYER_VALUES, "nc1_trace": LAYER_VALUES}),
    st.dictionaries(st.sampled_from(["nc1", "name"]), LAYER_VALUES, max_size=2),
    st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2))
PROFILES = st.one_of(st.fixed_dictionaries({"layers": st.lists(LAYER, max_size=6)}),
                     st.fixed_dictionaries({"layers": st.one_of(st.none(), st.text(max_size=3),
                                                                st.integers())}),
                     st.lists(st.integers(), max_size=2), st.none())


@settings(FUZZ)
@given(document=PROFILES)
def test_damaged_layer_profiles(document):
    with tempfile.TemporaryDirectory() as tmp, cheap_figures() as figures, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            profile_figure(document, Path(tmp) / "profile.png", title="$x$ of $\\frac{$")
        except NCInputError as exc:
            assert "\n" not in str(exc)
            return
        notes = [str(w.message) for w in caught if issubclass(w.category, RunLogWarning)]
        assert len(notes) <= 1 and "profile.png" in figures
        ax = figures["profile.png"].axes[0]
        layers = [row for row in document["layers"] if isinstance(row, dict)]
        for line in ax.get_lines():  # the values drawn are those of their layers
            key = "nc1" if line.get_label().startswith("NC1:") else "nc1_trace"
            for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True):
                assert layers[int(x) - 1][key] == y


@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000, '{"epochs": ' + "[" * 500 + "]" * 500 + "}",
    '{"lr": ' + str(10**400) + "}", '{"lr": NaN}', '{"epochs": "ten"}', '{"epochs": [1]}',
    '{"dataset": "gaussian", "dataset": 5}', "", '{"model": "ml', "\ufeff[]",
])
def test_nclab_profile_of_a_damaged_config_says_one_line(tmp_path, capsys, text):
    from cli_helpers import run_cli

    folder = tmp_path / "run$[red]"
    folder.mkdir()
    (folder / "config.json").write_bytes(text.encode("utf-8" if len(text) > 20 else "utf-16"))
    code, out, err = run_cli(["profile", folder, "--threads", "1"], capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert not out and sorted(p.name for p in folder.iterdir()) == ["config.json"]
