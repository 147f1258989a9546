"""Trainer callbacks: a user's callback adds columns, stops the run, survives resume; the
old keywords loggers= and stop_when= still work; bad callbacks stop before any write."""

import json

import pytest
import torch
from docs_helpers import documented, run_documented
from torch_threads import one_thread  # noqa: F401
from train_helpers import TINY, rows

from nclab import NCInputError
from nclab.train import Callback, LoggerCallback, StopWhen, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

#: Every epoch logged, so that the rows show every epoch a callback saw.
EVERY = TINY.updated(log_points=TINY.epochs)


class Seen(Callback):
    """Records the logged epochs it saw (its state) and writes their count as a column;
    keeps every finished row it is handed."""

    def __init__(self):
        self.epochs, self.handed = [], []

    def on_epoch_end(self, trainer, epoch, row):
        assert trainer.eval_context.epoch == epoch and row["epoch"] == epoch
        self.epochs.append(epoch)
        row["seen"] = len(self.epochs)

    def on_row_logged(self, trainer, row):
        self.handed.append(dict(row))

    def state_dict(self):
        return {"epochs": self.epochs}

    def load_state_dict(self, state):
        self.epochs = list(state["epochs"])


class StopAt(Callback):
    """Stops the run after epoch ``k``."""

    def __init__(self, k):
        self.k = k

    def should_stop(self, trainer, rows):
        return trainer.state.epoch >= self.k


class CrashAt(Callback):
    """Raises in epoch ``k``, after a checkpoint of an earlier epoch (a killed run)."""

    def __init__(self, k):
        self.k = k

    def on_epoch_end(self, trainer, epoch, row):
        if epoch == self.k:
            raise RuntimeError(f"crash in epoch {epoch}")


def logged(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The uninterrupted run with the Seen callback."""
    run_dir = tmp_path_factory.mktemp("whole")
    seen = Seen()
    summary = Trainer(EVERY, run_dir, progress=False, callbacks=[seen]).fit()
    return run_dir, seen, summary


def test_a_callback_column_reaches_metrics_jsonl_before_time_s(whole):
    run_dir, seen, summary = whole
    got = logged(run_dir)
    assert seen.epochs == [row["epoch"] for row in got] == list(range(1, EVERY.epochs + 1))
    assert [row["seen"] for row in got] == list(range(1, EVERY.epochs + 1))
    for row in got:  # after the evaluators' columns, before the time
        keys = list(row)
        assert keys[-2:] == ["seen", "time_s"] and "train_nc1" in keys
    assert seen.handed == got  # the finished rows, as written
    assert "stopped_early" not in summary  # no stop rule
    # the NC1 summary, from CollapseEvaluator.summarize at the end of the run
    onset = next(row for row in got if row["epoch"] == summary["tpt_onset"])
    assert summary["nc1_at_onset"] == onset["train_nc1"]
    assert summary["nc1_drop"] == pytest.approx(onset["train_nc1"] / got[-1]["train_nc1"])


def test_a_callback_stops_the_run_and_its_state_survives_resume(whole, tmp_path):
    expected = rows(whole[0])
    first = Seen()
    summary = Trainer(EVERY, tmp_path, progress=False, callbacks=[first, StopAt(5)]).fit()
    assert summary["epochs_done"] == 5 and summary["stopped_early"] is True
    assert rows(tmp_path) == expected[:5]
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 5
    assert json.loads(checkpoint["callbacks"]) == {"Seen": {"epochs": [1, 2, 3, 4, 5]}}
    # still stopped: a resume under the same rule trains nothing more
    again = Trainer(EVERY, tmp_path, progress=False, callbacks=[Seen(), StopAt(5)])
    assert again.fit(resume=True)["epochs_done"] == 5
    # a fresh Seen continues from the saved epochs: the same column as the whole run
    resumed = Seen()
    rest = Trainer(EVERY, tmp_path, progress=False, callbacks=[resumed]).fit(resume=True)
    assert rest["epochs_done"] == EVERY.epochs and "stopped_early" not in rest
    assert resumed.epochs == list(range(1, EVERY.epochs + 1))
    assert rows(tmp_path) == expected


def test_rows_after_the_checkpoint_are_redone_with_the_state_of_the_checkpoint(whole, tmp_path):
    with pytest.raises(RuntimeError, match="crash in epoch 7"):
        Trainer(EVERY, tmp_path, progress=False, checkpoint_every=4,
                callbacks=[Seen(), CrashAt(7)]).fit()
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 4 and json.loads(saved["callbacks"])["Seen"]["epochs"] == [1, 2, 3, 4]
    Trainer(EVERY, tmp_path, progress=False, callbacks=[Seen()]).fit(resume=True)
    assert rows(tmp_path) == rows(whole[0])


def test_a_checkpoint_without_callback_states_resumes_with_fresh_callbacks(tmp_path):
    config = EVERY.updated(epochs=4)
    Trainer(config, tmp_path, progress=False, callbacks=[Seen(), StopAt(2)]).fit()
    path = tmp_path / "checkpoint.pt"
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["callbacks"]  # as written before callbacks had state
    torch.save(checkpoint, path)
    fresh = Seen()
    Trainer(config, tmp_path, progress=False, callbacks=[fresh]).fit(resume=True)
    assert fresh.epochs == [3, 4]
    assert [row["seen"] for row in logged(tmp_path)] == [1, 2, 1, 2]


@pytest.mark.parametrize("damage", ["{not json", "[1, 2]", '{"Seen": 3}', 7])
def test_damaged_callback_states_are_one_line_naming_the_field(tmp_path, damage):
    config = EVERY.updated(epochs=2)
    Trainer(config, tmp_path, progress=False, callbacks=[Seen()], checkpoint_every=1).fit()
    path = tmp_path / "checkpoint.pt"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["callbacks"] = damage
    torch.save(checkpoint, path)
    before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(NCInputError, match="is damaged: callbacks is not the JSON") as error:
        Trainer(config, tmp_path, progress=False, callbacks=[Seen()]).fit(resume=True)
    assert "\n" not in str(error.value)
    assert (tmp_path / "metrics.jsonl").read_text() == before


class Unsaveable(Seen):
    def state_dict(self):
        return {"model": torch.zeros(2)}


class NotADict(Seen):
    def state_dict(self):
        return [1, 2]


class Named(Seen):
    def __init__(self, key):
        super().__init__()
        self.key = key

    @property
    def state_key(self):
        return self.key


@pytest.mark.parametrize("callbacks, message", [
    ([object()], "callbacks must be nclab.train.Callback objects; got object"),
    ([lambda rows: True], "got function"),
    ([Seen(), Seen()], "two callbacks with state share the state_key Seen"),
    ([Named("a"), Named("a")], "share the state_key a"),
])
def test_bad_callbacks_are_refused_when_the_trainer_is_made(tmp_path, callbacks, message):
    with pytest.raises(NCInputError, match=message):
        Trainer(TINY, tmp_path / "run", progress=False, callbacks=callbacks)


@pytest.mark.parametrize("callback, message", [
    (Unsaveable(), "callback Unsaveable must be a dict of JSON values.*Tensor"),
    (NotADict(), "callback NotADict must be a dict of JSON values.*got list"),
])
def test_a_state_json_cannot_hold_stops_before_anything_is_written(tmp_path, callback,
                                                                    message):
    with pytest.raises(NCInputError, match=message):
        Trainer(TINY, tmp_path / "run", progress=False, callbacks=[callback]).fit()
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_callbacks_with_distinct_state_keys_keep_their_own_states(tmp_path):
    config = EVERY.updated(epochs=3)
    a, b = Named("a"), Named("b")
    a.epochs = [100]  # the two states differ
    Trainer(config, tmp_path, progress=False, callbacks=[a, b, StopAt(2)]).fit()
    saved = json.loads(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["callbacks"])
    assert saved == {"a": {"epochs": [100, 1, 2]}, "b": {"epochs": [1, 2]}}
    a2, b2 = Named("a"), Named("b")
    Trainer(config, tmp_path, progress=False, callbacks=[b2, a2]).fit(resume=True)
    assert a2.epochs == [100, 1, 2, 3] and b2.epochs == [1, 2, 3]


# ------------------------------------------------------------------ the old keywords


class RecordingLogger:
    def __init__(self):
        self.calls = []

    def log(self, row, step):
        self.calls.append((step, dict(row)))


def test_old_loggers_and_stop_when_keywords_warn_and_still_work(tmp_path):
    logger = RecordingLogger()
    with pytest.warns(DeprecationWarning) as warned:
        trainer = Trainer(EVERY, tmp_path, progress=False, loggers=[logger],
                          stop_when=lambda rows: rows[-1]["epoch"] >= 3)
    assert sorted(str(w.message).split("(")[1].split("=")[0] for w in warned) == \
        ["loggers", "stop_when"]
    assert all(w.filename == __file__ for w in warned)  # points at the caller
    assert [type(c) for c in trainer.callbacks][-2:] == [LoggerCallback, StopWhen]
    summary = trainer.fit()
    assert summary["epochs_done"] == 3 and summary["stopped_early"] is True
    assert logger.calls == [(row["epoch"], row) for row in logged(tmp_path)]


def test_the_new_spelling_gives_the_same_run_without_a_warning(tmp_path, recwarn):
    logger = RecordingLogger()
    summary = Trainer(EVERY, tmp_path, progress=False, callbacks=[
        LoggerCallback(logger), StopWhen(lambda rows: rows[-1]["epoch"] >= 3)]).fit()
    assert not [w for w in recwarn if w.category is DeprecationWarning]
    assert summary["epochs_done"] == 3 and summary["stopped_early"] is True
    assert logger.calls == [(row["epoch"], row) for row in logged(tmp_path)]


def test_stop_when_needs_a_function():
    with pytest.raises(NCInputError, match="StopWhen needs a function of the logged rows"):
        StopWhen(0.05)


# ------------------------------------------------------------------ the documented example


def test_the_documented_callback_prints_what_the_docs_say(capsys):
    namespace = run_documented("training.md", "### Your own callback")
    _, shown = documented("training.md", "### Your own callback")
    assert capsys.readouterr().out == shown
    summary = namespace["summary"]
    assert summary["stopped_early"] and summary["epochs_done"] < namespace["config"].epochs
