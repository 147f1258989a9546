"""`nclab train` on the command line: options, resume, and one-line errors."""

import json

import pytest
from cli_helpers import run_cli
from torch_threads import one_thread  # noqa: F401
from train_helpers import TINY, TINY_ARGS

pytestmark = pytest.mark.usefixtures("one_thread")


def test_train_resume_and_refusals(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, out, err = run_cli(["train", *TINY_ARGS, "--epochs", "5", "--log-points", "4",
                              "--out", run_dir],
                             capsys)
    assert code in (0, None), err
    assert "trained 5 epochs" in out and "report: " in out
    stored = json.loads((run_dir / "config.json").read_text())
    expected = {**TINY.to_dict(), "epochs": 5}
    assert stored == expected  # every option reached the config
    # resuming needs no options: they come from the run dir
    code, out, err = run_cli(["train", "--out", run_dir, "--resume", "--no-progress",
                              "--no-report", "--threads", "1"], capsys)
    assert code in (0, None), err
    assert "trained 5 epochs" in out
    code, _, err = run_cli(["train", "--out", run_dir, "--resume", "--lr", "0.2",
                            "--widths", "64", "--no-progress"], capsys)
    assert code == 2
    assert err.startswith("error: refusing to resume") and err.count("\n") == 1
    assert "lr: 0.05 -> 0.2" in err and "model_options: " in err
    code, _, err = run_cli(["train", *TINY_ARGS, "--out", run_dir], capsys)
    assert code == 2 and "already holds a run: continue it with --resume" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'; choose from: "),
    (["--model", "resnet7"], "unknown model 'resnet7'; choose from: mlp, cnn1d, vgg11"),
    (["--loss", "hinge"], "unknown loss 'hinge'; choose from: ce, mse"),
    (["--classes", "0,x"], "--classes expects a comma-separated list of int"),
    (["--data-opt", "num_samples"], "--data-opt expects KEY=VALUE"),
    (["--model-opt", "depth=3"], "model 'mlp' has no option depth"),
    (["--epochs", "0"], "epochs must lie in [1, 1000000000]; got 0"),
    (["--threads", "0"], "--threads must lie in [1, "),
    # resources: refused before anything is allocated, started or written
    (["--threads", "100000"], "--threads must lie in [1, "),
    (["--epochs", str(2**63)], "--epochs must lie in [1, 1000000000]; got 9223372"),
    (["--seed", str(2**64)], "--seed must lie in [0, 4294967295]"),
    (["--seed", str(2**32)], "--seed must lie in [0, 4294967295]; got 4294967296"),
    (["--batch-size", "-" + str(2**70)], "--batch-size must lie in [1, 9223372036854775807]"),
    (["--classes", f"0,{2**63}"], "--classes takes integers in [0, 9223372036854775807]"),
    (["--widths", str(2**64)], "--widths takes integers in [1, 9223372036854775807]"),
    (["--dataset", "gaussian", "--data-opt", "dim=4", "--widths", str(10**12)],
     f"model 'mlp' ({(4 + 1 + 10) * 10**12 + 10:,} parameters, 10 outputs) needs about"),
    (["--dataset", "gaussian", "--data-opt", "dim=4", "--widths", str(10**18)],
     "model 'mlp' cannot be built with these sizes"),
    (["--dataset", "gaussian", "--data-opt", f"num_classes={10**12}"],
     "gaussian data of 300000000000000 samples in 32 dimensions needs about"),
    (["--dataset", "gaussian", "--data-opt", f"dim={10**12}"], "GiB free: use smaller sizes"),
    (["--data-opt", f"num_samples={10**12}"], "mnist1d num_samples=1000000000000 needs about"),
])
def test_bad_options_give_one_line_errors(args, message, tmp_path, capsys):
    code, _, err = run_cli(["train", "--out", tmp_path / "r", "--no-progress",
                            "--epochs", "1", *args], capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def test_resume_needs_a_run_dir(capsys):
    code, _, err = run_cli(["train", "--resume"], capsys)
    assert code == 2 and "--resume needs the --out" in err


def test_demo_trains_reports_and_reruns(tmp_path, capsys, monkeypatch):
    import nclab.cli.demo as demo

    monkeypatch.setattr(demo, "DEMO_CONFIG", TINY)  # the real demo takes minutes
    run_dir = tmp_path / "demo"
    code, out, err = run_cli(["demo", "--out", run_dir, "--no-progress"], capsys)
    assert code in (0, None), err
    last = out.strip().splitlines()[-1]
    assert last == f"report: {run_dir / 'report.html'}"
    assert "TPT onset: epoch" in out
    code, again, _ = run_cli(["demo", "--out", run_dir, "--no-progress"], capsys)
    assert code in (0, None)
    lines = again.strip().splitlines()
    assert lines[-1] == last  # a finished demo is not retrained: it says so, and how to rerun
    assert lines[0] == (f"{run_dir} holds this finished demo run: its result (to train again, "
                        f"remove {run_dir} or pass another --out)")
    assert "trained" in again and "Epoch" not in again
    assert json.loads((run_dir / "summary.json").read_text())["epochs_done"] == TINY.epochs


NPZ_ARGS = ["--model", "mlp", "--widths", "16", "--batch-size", "16", "--epochs", "2",
            "--log-points", "2", "--threads", "1", "--no-progress", "--no-report"]


def test_npz_labels_with_renamed_keys_and_a_run_saved_under_the_old_name(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    data = tmp_path / "feats.npz"
    np.savez(data, h=rng.normal(size=(40, 5)), c=np.arange(40) % 2)
    run_dir = tmp_path / "run"
    given = ["--dataset", "npz_labels", "--root", data, "--data-opt", "x_key=h",
             "--data-opt", "y_key=c", *NPZ_ARGS, "--out", run_dir]
    code, out, err = run_cli(["train", *given], capsys)
    assert code in (0, None) and "trained 2 epochs" in out, err
    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset_options"] == {"x_key": "h", "y_key": "c"}
    # a run folder written before npz was renamed npz_labels resumes, with a warning
    (run_dir / "config.json").write_text(json.dumps({**config, "dataset": "npz"}))
    code, out, err = run_cli(["train", *given, "--resume"], capsys)
    assert code in (0, None), err
    assert "'npz' is renamed 'npz_labels'" in err and "refusing" not in err
    code, _, err = run_cli(["train", *given[:-2], "--out", tmp_path / "new", "--data-opt",
                            "x_key=features"], capsys)
    assert code == 2 and "or features and c; found c, h" in err and err.count("\n") == 1
