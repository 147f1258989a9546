"""Each logger writes every finite scalar of a row through the real library; read back
with that library's own reader, the values are exactly nclab.track's."""

from __future__ import annotations

import math

import pytest
from cli_helpers import run_cli
from integration_helpers import clusters, mlp, tracked
from logger_readers import READERS
from torch.utils.data import DataLoader, TensorDataset
from torch_threads import one_thread  # noqa: F401
from train_helpers import TINY, TINY_ARGS

import nclab
from nclab import NCInputError
from nclab.integrations import loggers
from nclab.integrations.loggers import close_loggers, make_loggers, row_scalars
from nclab.runs import RunDir
from nclab.train import LoggerCallback, Trainer

pytestmark = pytest.mark.usefixtures("hermetic")


@pytest.fixture
def hermetic(tmp_path, monkeypatch):
    """Loggers use their defaults (W&B offline, MLflow file store) and write under tmp."""
    for name in ("WANDB_MODE", "WANDB_PROJECT", "MLFLOW_TRACKING_URI",
                 "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))


def _rows() -> tuple[list[dict], dict[tuple[int, str], float]]:
    """Two rows of track's metrics (two models) with entries no logger may receive,
    and the values every logger must hold afterwards."""
    rows, expected = [], {}
    for epoch, seed in ((1, 0), (3, 1)):
        metrics = tracked(mlp(seed), clusters(), "train_")
        rows.append({"epoch": epoch, "lr": 0.05, **metrics, "tpt_onset": None,
                     "converged": True, "not_finite": math.nan, "note": "text",
                     "classes": [0, 1], "time": {"train_s": 1.5}})
        expected.update({(epoch, name): value for name, value in metrics.items()})
        expected.update({(epoch, "lr"): 0.05, (epoch, "time/train_s"): 1.5})
    return rows, expected


@pytest.mark.parametrize("name", list(READERS))
def test_every_logged_value_is_tracks(tmp_path, name):
    pytest.importorskip({"tensorboard": "tensorboard", "csv": "csv"}.get(name, name))
    rows, expected = _rows()
    run_dir = tmp_path / "run"
    (logger,) = make_loggers([name, name], run_dir, config={"lr": 0.05, "model": "mlp"})
    for row in rows:
        logger.log(row, step=row["epoch"])
    logger.close()
    got = READERS[name](run_dir)
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=0), key


def test_row_scalars_keeps_finite_numbers_only():
    row = {"epoch": 4, "a": 1, "b": 2.5, "c": None, "d": True, "e": math.inf,
           "f": "x", "g": [1.0], "h": {"i": 3.0, "j": math.nan}}
    assert row_scalars(row) == {"a": 1.0, "b": 2.5, "h/i": 3.0}


def test_unknown_or_missing_logger_is_one_clear_error_before_writing(tmp_path, monkeypatch):
    with pytest.raises(NCInputError, match="unknown logger 'neptune'; choose from"):
        make_loggers(["csv", "neptune"], tmp_path / "run")
    monkeypatch.setitem(loggers.REQUIREMENTS, "wandb", ("no_such_module_here", "wandb"))
    with pytest.raises(NCInputError, match=r'needs no_such_module_here: pip install "nclab\[wandb'):
        make_loggers(["csv", "wandb"], tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize(("loggers", "setting", "obstacle", "message"), [
    (["csv", "neptune"], {}, None, "unknown logger 'neptune'; choose from"),
    (["csv", "wandb"], {"WANDB_MODE": "bogus"}, None,
     "--logger wandb: WANDB_MODE='bogus' is not a W&B mode"),
    (["tensorboard"], {}, "tensorboard", "tensorboard is a file; it needs a folder there"),
    (["csv"], {}, "scalars.csv/", "scalars.csv is a folder; it needs a file there"),
])
def test_a_bad_logger_leaves_the_run_folder_as_it_was(tmp_path, capsys, monkeypatch, loggers,
                                                      setting, obstacle, message):
    """Names, W&B settings and the places of the loggers' files are checked before the
    run writes anything: the folder keeps exactly what it held."""
    if "wandb" in loggers:
        pytest.importorskip("wandb")
    for name, value in setting.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    if obstacle is not None and obstacle.endswith("/"):
        (out / obstacle).mkdir()
    elif obstacle is not None:
        (out / obstacle).write_text("a file where the logger's folder goes")
    before = _files(out)
    chosen = [arg for name in loggers for arg in ("--logger", name)]
    code, _, err = run_cli(["train", *TINY_ARGS, "--epochs", "1", "--no-report", "--out", out,
                            *chosen], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert _files(out) == before


@pytest.mark.usefixtures("one_thread")
def test_trainer_rows_reach_every_logger_as_in_metrics_jsonl(tmp_path):
    """A tiny nclab training run with all four loggers: each holds every finite number
    of every metrics.jsonl row, and the last row's are nclab.track's of the final model."""
    run_dir = tmp_path / "run"
    config = TINY.updated(epochs=6, log_points=3)
    chosen = make_loggers(list(READERS), run_dir, config=config.to_dict())
    trainer = Trainer(config, run_dir, progress=False,
                      callbacks=[LoggerCallback(logger) for logger in chosen])
    try:
        trainer.fit()
    finally:
        close_loggers(chosen)
    rows = RunDir(run_dir).read_rows()
    assert len(rows) >= 2
    expected = {(row["epoch"], name): value for row in rows
                for name, value in row_scalars(row).items()}
    train = trainer.data.train
    final = nclab.track(trainer.model, DataLoader(TensorDataset(train.x, train.y),
                                                  batch_size=64), trainer.classifier)
    last = rows[-1]["epoch"]
    for name, value in final.scalars("train_").items():
        assert expected[(last, name)] == pytest.approx(value, rel=1e-9), name
    for name, read in READERS.items():
        got = read(run_dir)
        assert sorted(got) == sorted(expected), name
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-12, abs=0), (name, key)


def test_loggers_start_at_their_first_row(tmp_path):
    chosen = make_loggers(list(READERS), tmp_path / "run")
    close_loggers(chosen)
    assert not (tmp_path / "run").exists()


@pytest.mark.usefixtures("one_thread")
def test_nclab_train_logger_option(tmp_path, capsys):
    """``--logger`` (repeatable) on the command line; an unknown name stops the run
    with one line before anything is written."""
    out = tmp_path / "run"
    args = ["train", *TINY_ARGS, "--epochs", "3", "--log-points", "2", "--no-report",
            "--out", out]
    code, _, err = run_cli([*args, "--logger", "csv", "--logger", "neptune"], capsys)
    assert code == 2 and "unknown logger 'neptune'" in err and not out.exists()
    code, _, err = run_cli([*args, "--logger", "csv", "--logger", "tensorboard"], capsys)
    assert code == 0, err
    rows = RunDir(out).read_rows()
    expected = {(row["epoch"], name): value for row in rows
                for name, value in row_scalars(row).items()}
    for name in ("csv", "tensorboard"):
        assert READERS[name](out) == pytest.approx(expected, rel=1e-12), name
