"""Fine-label recovery in the terminal phase: the terminal-phase check, the trainer's
``StopWhen`` callback, ``nclab finegrained --until-collapse`` and the fine share of the
within-superclass scatter."""

import json

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from test_finegrained_train import CLI_ARGS
from torch_threads import one_thread  # noqa: F401
from train_helpers import TINY

from nclab.core.errors import NCInputError
from nclab.finegrained import fine_scatter_shares, linear_probe_accuracy
from nclab.train import StopWhen, Trainer
from nclab.train.finegrained import TERMINAL_DROP, TERMINAL_NC1, TerminalPhase

pytestmark = pytest.mark.usefixtures("one_thread")


def brute_in_terminal_phase(rows, threshold, drop):
    """The definition written out again: the last row has zero training error and an nc1
    <= threshold and <= (nc1 at the first zero-error epoch) / drop."""
    onset = next((r["epoch"] for r in rows if r["train_error"] == 0), None)
    if onset is None:
        return False
    at_onset = next(r["coarse_nc1"] for r in rows if r["epoch"] == onset)
    last = rows[-1]
    return (last["train_error"] == 0 and last["coarse_nc1"] <= threshold
            and drop * last["coarse_nc1"] <= at_onset)


def logged_rows(errors, nc1s):
    """Rows as the trainer logs them: tpt_onset is the first zero-error epoch, kept."""
    rows, onset = [], None
    for epoch, (error, nc1) in enumerate(zip(errors, nc1s, strict=True), start=1):
        if onset is None and error == 0:
            onset = epoch
        rows.append({"epoch": epoch, "train_error": error, "coarse_nc1": nc1,
                     "tpt_onset": onset})
    return rows


def test_terminal_phase_needs_zero_error_small_nc1_and_the_drop():
    check = TerminalPhase()
    assert (check.threshold, check.drop) == (TERMINAL_NC1, TERMINAL_DROP) == (0.05, 10.0)
    # onset at epoch 2 with nc1 0.4: 0.04 is small enough but only 10x below at 0.04
    rows = logged_rows([0.1, 0, 0, 0], [0.9, 0.4, 0.045, 0.04])
    assert not check(rows[:3])          # 0.045: below 0.05, but 8.9x below the onset
    assert check(rows)                  # 0.04: 10x
    rows[-1]["train_error"] = 0.01      # an error again after the onset
    assert not check(rows)
    never = logged_rows([0.1, 0.01, 0.002], [0.5, 0.01, 0.001])
    assert not check(never)             # tiny nc1 but the training error never reached 0
    late = logged_rows([0.1, 0.01, 0], [0.5, 0.03, 0.01])
    assert not check(late)              # onset nc1 0.01 already: no 10x drop since
    assert TerminalPhase(0.05, drop=1)(late)
    assert not check([])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.0, 0.01, 0.2]),
                          st.floats(1e-4, 2.0)), min_size=1, max_size=12),
       st.floats(1e-3, 1.0), st.floats(1.0, 50.0))
def test_terminal_phase_agrees_with_the_definition(pairs, threshold, drop):
    rows = logged_rows(*zip(*pairs, strict=True))
    check = TerminalPhase(threshold, drop)
    assert check(rows) == brute_in_terminal_phase(rows, threshold, drop)
    report = check.report(rows)
    assert report["reached"] == check(rows)
    inside = [r["epoch"] for i, r in enumerate(rows)
              if brute_in_terminal_phase(rows[:i + 1], threshold, drop)]
    assert report["first_epoch"] == (inside[0] if inside else None)


def test_terminal_phase_report_names_onset_values():
    rows = logged_rows([0.1, 0, 0], [0.9, 0.4, 0.02])
    report = TerminalPhase().report(rows)
    assert report["tpt_onset"] == 2 and report["nc1_at_onset"] == 0.4
    assert report["nc1_final"] == 0.02 and report["nc1_drop"] == pytest.approx(20)
    assert report["first_epoch"] == 3 and report["reached"] and report["final_epoch"] == 3


@pytest.mark.parametrize(("threshold", "drop"), [(0, 10), (-1, 10), (float("nan"), 10),
                                                 (0.05, 0.5), (0.05, float("inf"))])
def test_terminal_phase_refuses_bad_settings(threshold, drop):
    with pytest.raises(NCInputError, match="must be a finite number"):
        TerminalPhase(threshold, drop)


# ---------------------------------------------------------------- StopWhen(rule)


def test_stop_when_stops_at_a_logged_epoch_and_resume_trains_no_further(tmp_path):
    config = TINY.updated(epochs=10, log_points=10)
    seen = []

    def after_epoch_4(rows):
        seen.append(rows[-1]["epoch"])
        return rows[-1]["epoch"] >= 4

    summary = Trainer(config, tmp_path, progress=False,
                      callbacks=[StopWhen(after_epoch_4)]).fit()
    assert summary["epochs_done"] == 4 and summary["stopped_early"]
    assert seen == [1, 2, 3, 4]  # asked after every logged epoch, with the rows so far
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert [row["epoch"] for row in logged] == [1, 2, 3, 4]
    assert json.loads((tmp_path / "summary.json").read_text())["stopped_early"]
    # resumed under the same condition: it already holds, nothing more is trained
    again = Trainer(config, tmp_path, progress=False,
                    callbacks=[StopWhen(after_epoch_4)]).fit(resume=True)
    assert again["epochs_done"] == 4
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 4
    # without it, the run continues from the checkpoint of epoch 4 to the budget
    rest = Trainer(config, tmp_path, progress=False).fit(resume=True)
    assert rest["epochs_done"] == 10 and "stopped_early" not in rest
    assert [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").open()] == \
        list(range(1, 11))


def test_stop_when_never_met_trains_the_budget(tmp_path):
    summary = Trainer(TINY.updated(epochs=3, log_points=3), tmp_path, progress=False,
                      callbacks=[StopWhen(lambda rows: False)]).fit()
    assert summary["epochs_done"] == 3 and summary["stopped_early"] is False


# ------------------------------------------------------- nclab finegrained --until-collapse


def test_until_collapse_stops_the_coarse_run_and_says_so(tmp_path, capsys):
    out = tmp_path / "fg"
    # drop 1: the terminal phase starts at the TPT onset itself (the data are separable)
    args = [*CLI_ARGS, "--epochs", "10", "--log-points", "10", "--until-collapse", "100",
            "--collapse-drop", "1", "--out", out]
    code, stdout, err = run_cli(["finegrained", *args], capsys)
    assert code in (0, None), err
    result = json.loads((out / "finegrained.json").read_text())
    coarse = json.loads((out / "coarse" / "summary.json").read_text())
    fine = json.loads((out / "fine" / "summary.json").read_text())
    onset = result["coarse_tpt_onset"]
    assert onset is not None and onset < 10
    assert result["coarse_epochs_done"] == coarse["epochs_done"] == onset
    assert fine["epochs_done"] == 10  # the baseline trains the whole budget
    until = result["until_collapse"]
    assert until["reached"] and until["stopped_early"] and until["first_epoch"] == onset
    assert until["nc1_threshold"] == 100 and until["drop_required"] == 1
    assert until["nc1_final"] == until["nc1_at_onset"] == result["coarse_nc1"]
    # the fixed definition (0.05, 10x) is reported beside the demanded one
    assert result["terminal_phase"]["nc1_threshold"] == 0.05
    assert result["terminal_phase"]["reached"] is False  # no 10x drop at the onset itself
    assert [row["terminal_phase"] for row in result["history"]] == [False] * len(
        result["history"])
    flat = " ".join(stdout.split())
    assert f"terminal phase reached (zero training error, nc1 <= 100, >= 1x below the " \
           f"onset) stopped at epoch {onset} of 10" in flat
    for name in ("recovery.png", "projection.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(result["scatter"]["fine_share"]) == 5


def test_until_collapse_not_reached_within_the_budget(tmp_path, capsys):
    out = tmp_path / "fg"
    code, stdout, err = run_cli(["finegrained", *CLI_ARGS, "--until-collapse", "1e-12",
                                 "--out", out], capsys)
    assert code in (0, None), err
    result = json.loads((out / "finegrained.json").read_text())
    assert result["coarse_epochs_done"] == 4
    assert result["until_collapse"]["reached"] is False
    assert result["until_collapse"]["stopped_early"] is False
    flat = " ".join(stdout.split())
    assert "terminal phase NOT reached within the 4-epoch budget" in flat
    assert "not measured in the terminal phase" in flat


@pytest.mark.parametrize(("args", "message"), [
    (["--until-collapse", "0"], "--until-collapse must be > 0"),
    (["--until-collapse", "nan"], "--until-collapse"),
    (["--until-collapse", "0.05", "--collapse-drop", "0.5"], "--collapse-drop must be >= 1"),
])
def test_until_collapse_bad_values_are_one_line_errors(args, message, tmp_path, capsys):
    code, _, err = run_cli(["finegrained", *CLI_ARGS, *args, "--out", tmp_path / "o"], capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- fine share of the scatter


def brute_shares(x, fine, coarse):
    """Float64 loops: between-fine-mean scatter / total scatter, and the top eigenvalue
    of the scatter matrix / its trace, per superclass."""
    shares, tops = [], []
    for s in sorted(set(coarse.tolist())):
        rows = x[coarse == s].astype(np.float64)
        labels = fine[coarse == s]
        mean = rows.mean(axis=0)
        total = sum(float(np.dot(r - mean, r - mean)) for r in rows)
        between = 0.0
        for c in set(labels.tolist()):
            mu = rows[labels == c].mean(axis=0)
            between += (labels == c).sum() * float(np.dot(mu - mean, mu - mean))
        scatter = (rows - mean).T @ (rows - mean)
        shares.append(between / total)
        tops.append(float(np.linalg.eigvalsh(scatter)[-1]) / float(np.trace(scatter)))
    return shares, tops


def test_fine_scatter_shares_match_brute_force_and_properties():
    rng = np.random.default_rng(0)
    fine = np.repeat(np.arange(6), 30)
    coarse = fine % 3
    x = rng.normal(size=(len(fine), 5)) + 2.0 * rng.normal(size=(6, 5))[fine]
    result = fine_scatter_shares(torch.tensor(x, dtype=torch.float32), fine, coarse)
    shares, tops = brute_shares(x.astype(np.float32), fine, coarse)
    np.testing.assert_allclose(result.fine_share, shares, rtol=1e-5)
    np.testing.assert_allclose(result.top_pc_share, tops, rtol=1e-5)
    assert all(0 <= v <= 1 for v in (*result.fine_share, *result.top_pc_share))
    # invariant to a shift and a scale of the features; 1 on the fine means themselves
    moved = fine_scatter_shares(3.0 * x + 7.0, fine, coarse)
    np.testing.assert_allclose(moved.fine_share, fine_scatter_shares(x, fine, coarse).fine_share,
                               rtol=1e-9)
    means = np.stack([x[fine == c].mean(axis=0) for c in range(6)])[fine]
    np.testing.assert_allclose(fine_scatter_shares(means, fine, coarse).fine_share, 1.0)
    # fine means that coincide: no share
    same = x - np.stack([x[fine == c].mean(axis=0) for c in range(6)])[fine]
    assert max(fine_scatter_shares(same, fine, coarse).fine_share) < 1e-12


def test_linear_probe_reads_separable_fine_labels_and_not_identical_ones():
    rng = np.random.default_rng(1)
    fine = np.repeat(np.arange(4), 40)
    coarse = fine % 2
    # fine classes 0 and 2 (superclass 0) differ along one axis; 1 and 3 do not differ
    offset = np.where(fine == 2, 6.0, 0.0)[:, None] * np.eye(3)[0]
    x = rng.normal(size=(len(fine), 3)) + offset
    test_x = rng.normal(size=(len(fine), 3)) + offset
    accuracy = linear_probe_accuracy(x, fine, coarse, test_x, fine, coarse)
    rows = coarse == 0
    separable = linear_probe_accuracy(x[rows], fine[rows], coarse[rows], test_x[rows],
                                      fine[rows], coarse[rows])
    assert separable > 0.97
    # superclass 1: the same distribution for both fine classes, about chance
    assert 0.5 * separable + 0.5 * 0.3 < accuracy < 0.5 * separable + 0.5 * 0.7
    one_class = linear_probe_accuracy(x[fine == 1], fine[fine == 1], coarse[fine == 1],
                                      test_x[fine == 1], fine[fine == 1], coarse[fine == 1])
    assert one_class == 1.0
    with pytest.raises(NCInputError, match="dims"):
        linear_probe_accuracy(x, fine, coarse, test_x[:, :2], fine, coarse)
