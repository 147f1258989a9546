"""Values checked where they enter: one ``error:`` line, exit code 2, nothing written;
the command surface at 80 columns; the lazy start; old spellings kept with a warning."""

import io
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from rich.console import Console
from torch_threads import one_thread  # noqa: F401
from train_helpers import SRC

pytestmark = pytest.mark.usefixtures("one_thread")

GAUSSIAN = ["--dataset", "gaussian", "--data-opt", "dim=4", "--per-class", "5",
            "--epochs", "1", "--no-progress"]


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--lr", "inf"], "--lr must be a finite number > 0; got inf"),
    (["train", "--width", "nan"], "--width must be a finite number > 0; got nan"),
    (["train", "--device", "tpu9"], "--device 'tpu9' is not a torch device"),
    (["train", *GAUSSIAN, "--data-opt", "num_classes=abc"],
     "--data-opt num_classes=abc: dataset 'gaussian' takes an integer for num_classes"),
    (["train", *GAUSSIAN, "--data-opt", "num_classes=-3"],
     "gaussian num_classes must be an integer >= 1; got -3"),
    (["train", "--dataset", "digits", "--data-opt", "test_fraction=abc"],
     "--data-opt test_fraction=abc: dataset 'digits' takes a finite number for test_fraction"),
    (["train", "--dataset", "gaussian", "--data-opt", "test_fraction=0.5"],
     "dataset 'gaussian' has no option test_fraction; it accepts: num_classes, dim"),
    (["train", "--model-opt", "widths=abc"],
     "--model-opt widths=abc: model 'mlp' takes a comma-separated list of integers"),
    (["train", "--model-opt", "batch_norm=maybe"],
     "--model-opt batch_norm=maybe: model 'mlp' takes true or false for batch_norm"),
    (["train", "--opt", "bogus=1"], "--opt: task 'classification' has no option bogus"),
    (["train", "--epochs", "abc"], "--epochs expects an integer; got 'abc'"),
    (["train", "--momentum", "1"], "--momentum must lie in [0, 1); got 1"),
    (["kernel", "--std", "0"], "--std must be > 0; got 0"),
    (["regress", "ufm", "--spectrum", "abc"], "--spectrum expects a comma-separated list"),
    (["regress", "data", "teacher", "--spectrum", "abc"],
     "--spectrum expects a comma-separated list"),
    (["regress", "data", "teacher", "--samples", "0"], "--samples must be >= 2; got 0"),
    (["ufm", "--classes", "100000000", "--per-class", "1"], "GiB free: use smaller sizes"),
    (["ufm", "--threads", "100000"], "--threads must lie in [1, "),
    (["regress", "train", "teacher", "--threads", str(2**64)], "--threads must lie in [1, "),
    (["kernel", "--workers", "100000"], "--workers must lie in [1, "),
    (["train", "--dataset", "hierarchical", "--data-opt", f"dim={10**12}"],
     "hierarchical data of 3000 samples in 1000000000000 dimensions needs about"),
    (["regress", "ufm", "--samples", str(10**12)], "--samples 1000000000000 --target-dim 3 "
                                                   "--dim 16 needs about"),
    (["regress", "ufm", "--dim", str(10**12)], "GiB free: use smaller sizes"),
    (["regress", "train", "teacher", "--samples", str(10**12)],
     "teacher data of 1000000000000 samples, input_dim 16, hidden 64 needs about"),
    (["ufm", "--tol", "-1"], "--tol must be > 0; got -1"),
    (["finegrained", "--num-coarse", "0"], "--num-coarse must be >= 1; got 0"),
    (["train", "--out", ""], "--out is empty: give a file or folder name"),
    (["train", "--out="], "--out is empty: give a file or folder name"),
    (["measure", "f.npz", "--json", ""], "--json is empty: give a file or folder name"),
    (["regress", "data", "teacher", "-o", ""], "--out is empty: give a file or folder name"),
    (["train", "--epochs", str(2**63)], f"--epochs must lie in [1, 1000000000]; got {2**63}"),
    (["train", "--seed", str(2**32)], f"--seed must lie in [0, 4294967295]; got {2**32}"),
    (["train", "--batch-size", str(2**64)], "--batch-size must lie in [1, 9223372036854775807]"),
    (["regress", "data", "teacher", "--samples", str(2**63)],
     "--samples must lie in [2, 9223372036854775807]"),
    (["train", "--dataset", "digits", "--root", "data"],
     "dataset 'digits' is generated, not read from files: it takes no root (--root)"),
    (["train", "--dataset", "mnist", "--root", ""], "its root (--root) is empty"),
    (["measure", "a" * 300 + ".npz"], "cannot read (File name too long)"),
])
def test_bad_values_give_one_line_and_write_nothing(args, message, tmp_path, capsys,
                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)  # every default output folder is under the cwd
    code, _, err = run_cli(args, capsys)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
def test_cuda_on_a_cpu_only_torch_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for command in (["train"], ["ufm"], ["regress", "train", "teacher"]):
        code, _, err = run_cli([*command, "--device", "cuda"], capsys)
        assert code == 2 and err.count("\n") == 1 and "this torch has no CUDA device" in err
    assert list(tmp_path.iterdir()) == []


def test_typed_options_reach_the_config(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(["train", *GAUSSIAN, "--data-opt", "num_classes=3",
                            "--data-opt", "separation=6", "--model-opt", "batch_norm=true",
                            "--widths", "8", "--milestones", "0.5", "--no-report",
                            "--out", out], capsys)
    assert code in (0, None), err
    import json

    stored = json.loads((out / "config.json").read_text())
    assert stored["dataset_options"] == {"dim": 4, "num_classes": 3, "separation": 6.0}
    assert stored["model_options"] == {"batch_norm": True, "widths": [8]}
    assert stored["lr_milestones"] == [0.5]


def test_one_definition_gives_the_same_options_to_every_training_command():
    from typer.main import get_group

    from nclab.cli import COMMANDS, LazyGroup
    from nclab.train.config import TrainConfig

    root = LazyGroup("nclab", "", COMMANDS, "app")
    regress = root.load("regress")
    commands = {name: root.load(name) for name in ("train", "demo", "finegrained",
                                                   "normcompare")}
    commands.update({f"regress {n}": regress.load(n) for n in ("train", "sweep")})
    del get_group
    common = {"--epochs", "--lr", "--momentum", "--batch-size", "--seed", "--milestones",
              "--lr-gamma", "--eval-batch-size", "--model-opt", "--data-opt", "--out",
              "--device", "--threads", "--progress"}
    for name, command in commands.items():
        options = {opt for param in command.params for opt in param.opts}
        assert common <= options, (name, common - options)
        for param in command.params:  # help texts never repeat a default by hand
            assert "(default" not in (param.help or ""), (name, param.opts)
    spelled = {rule.cli for rule in TrainConfig.settings().values() if rule.cli}
    train_options = {opt for param in commands["train"].params for opt in param.opts}
    assert spelled <= train_options


def test_help_fits_80_columns_one_line_per_command():
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": SRC}
    text = subprocess.run([sys.executable, "-m", "nclab", "--help"], env=env, text=True,
                          capture_output=True, check=True).stdout
    from nclab.cli import COMMANDS

    for name in COMMANDS:
        line = next(line for line in text.splitlines() if f"│ {name} " in line)
        assert line.rstrip().endswith("│") and len(line.rstrip()) <= 80
        # the whole one-line help is on the command's own line
        entry = COMMANDS[name]
        help_text = entry[0] if isinstance(entry[1], dict) else entry[1]
        assert help_text in line, (name, line)
    assert "<bool>" not in text


def test_flags_show_no_value_and_version_prints(capsys):
    code, out, _ = run_cli(["train", "--help"], capsys)
    assert code == 0 and "<bool>" not in out and "--normalize-features" in out
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.startswith("nclab ")
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0 and "--version" in out and "Print the version" in out


def every_command():
    """(words after nclab, the click command) of every command, loaded."""
    from nclab.cli import LazyGroup, root_group

    def walk(group, prefix):
        for name in group.list_commands(None):
            command = group.load(name)
            if isinstance(command, LazyGroup):
                yield from walk(command, [*prefix, name])
            else:
                yield [*prefix, name], command

    return list(walk(root_group(), []))


def test_every_numeric_option_refuses_out_of_range_values_in_one_line():
    # parsing only (make_context does not run the command): 2^64 does not fit the
    # integers that torch, numpy and JSON hold, NaN is no number to compute with
    from typer.core import TyperOption

    from nclab.cli.app import OptionValueError
    from nclab.core.errors import NCInputError

    accepted, checked = [], 0
    for words, command in every_command():
        for param in command.params:
            if not isinstance(param, TyperOption) or param.metavar not in ("INTEGER", "NUMBER"):
                continue
            value = str(2**64) if param.metavar == "INTEGER" else "nan"
            checked += 1
            try:
                command.make_context(" ".join(words), [param.opts[0], value])
            except (OptionValueError, NCInputError) as exc:
                assert "\n" not in str(exc) and param.opts[0] in str(exc), str(exc)
                continue
            except Exception:  # noqa: BLE001 - a missing argument: the value got through
                pass
            accepted.append(f"nclab {' '.join(words)} {param.opts[0]} {value}")
    assert checked > 60 and not accepted, accepted


def test_help_is_whole_at_80_columns_with_one_kind_of_metavar(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    from typer.core import TyperOption

    for words, command in [([], None), *every_command()]:
        code, out, _ = run_cli([*words, "--help"], capsys)
        assert code == 0, words
        assert "…" not in out, (words, [line for line in out.splitlines() if "…" in line])
        for param in command.params if command is not None else ():
            if isinstance(param, TyperOption):  # a flag takes no value: no metavar
                assert param.metavar == "" if param.is_flag else (
                    param.metavar and "<" not in param.metavar), (words, param.opts)
    monkeypatch.setenv("COLUMNS", "250")  # one line per option
    code, out, _ = run_cli(["train", "--help"], capsys)
    assert "Network name: mlp, cnn1d, vgg11" in out and "[default: mlp]" in out
    assert "Data set name (docs/datasets.md): mnist1d, digits" in out
    assert "teacher" not in out  # a regression data set: not for nclab train
    code, out, _ = run_cli(["regress", "train", "--help"], capsys)
    assert code == 0 and "mnist1d" not in out


def test_typer_is_used_through_its_public_interface():
    from typer.core import TyperArgument, TyperOption

    for kind in (TyperOption, TyperArgument):
        for name in ("display_type_rich", "_get_default_string"):
            method = getattr(kind, name)
            assert method.__module__.startswith("typer."), (kind, name, method.__module__)


def test_help_imports_no_command_module_and_no_plotting():
    code = ("import sys\nfrom nclab.cli import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\n"
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'scipy', "
            "'sklearn') or m.startswith(('nclab.cli.', 'nclab.train'))]\n"
            "print(sorted(set(heavy) - {'nclab.cli.app'}))")
    env = {**os.environ, "PYTHONPATH": SRC}
    result = subprocess.run([sys.executable, "-c", code], env=env, text=True,
                            capture_output=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_kernel_table_headers_are_whole_at_80_columns():
    from nclab.cli.kernel import summary_table

    series = ["nngp-erf", "ntk-erf", "nngp-relu", "ntk-relu", "adaptive-erf", "adaptive-relu",
              "network-erf", "network-relu"]
    row = [{"n": 1024, "d0": 128, "log10_nc1_mean": -12.345, "failed": True}]  # the widest
    document = {"summary": {name: row for name in series}}
    buffer = io.StringIO()
    Console(file=buffer, width=80, color_system=None).print(summary_table(document))
    text = buffer.getvalue()
    assert "…" not in text and "-12.35!" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for name in series:
        method, activation = name.split("-")
        assert method in text and activation in text


def test_old_spellings_work_with_a_warning(tmp_path, capsys):
    code, out, err = run_cli(["ufm", "-K", 3, "-d", 4, "-n", 2, "--no-progress",
                              "--out", tmp_path], capsys)
    assert code in (0, None), err
    assert "warning: -K is deprecated and will be removed: use --classes" in err
    assert (tmp_path / "ufm.json").exists()


@pytest.mark.parametrize("command", [["train"], ["regress", "train"], ["regress", "data"],
                                     ["ufm"]])
def test_defaults_given_as_text_show_without_parentheses(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one line per option: no wrapped defaults
    code, out, _ = run_cli([*command, "--help"], capsys)
    assert code == 0 and "[default: " in out
    assert re.search(r"\[default: \(", out) is None, out
    if command == ["train"]:
        assert "Epochs. [default: 350]" in out and "[default: every 30 s and at the end]" in out


def test_training_progress_fits_80_columns(tmp_path):
    from train_helpers import TINY

    from nclab.train import Trainer
    from nclab.train.checkpoint import RunProgress
    from nclab.train.trainer import _ProgressBar, _status

    screen = Console(width=80, record=True, force_terminal=True)
    Trainer(TINY.updated(epochs=4, log_points=2), tmp_path / "run", progress=screen).fit()
    shown = screen.export_text()
    assert "epoch 4/4" in shown and "loss " in shown and "…" not in shown, shown
    # the widest status: long numbers, a terminal phase, four-digit epochs, hours to go
    state = RunProgress()
    state.rows.append({"train_error": 0.000123, "train_nc1": 1.23e-5})
    state.tpt_onset = 1234
    status = _status(1.23e-5, state)
    assert status == "loss 1.23e-5  err 0.000123  nc1 1.23e-5  TPT from 1234"
    with _ProgressBar(9999, 1000, True, Console(file=io.StringIO())) as (bar, task):
        bar.tasks[0].start_time = bar.get_time() - 4000.0  # 4,000 s for 1,000 epochs so far
        bar.update(task, advance=1, status=status)
        frame = bar.make_tasks_table(bar.tasks)  # what one refresh draws
    screen = Console(width=80, record=True)
    screen.print(frame)
    lines = [line.rstrip() for line in screen.export_text().splitlines() if line.strip()]
    assert lines and "…" not in "".join(lines), lines
    assert all(len(line) <= 80 for line in lines)
    assert "1001/9999" in lines[0] and "TPT from 1234" in "".join(lines)
    assert "1:06:40<" in lines[0], lines


def test_a_list_from_python_means_the_same_tuple_field() -> None:
    from nclab.train.config import TrainConfig

    config = TrainConfig(lr_milestones=[0.67, 0.9], classes=[0, 3])
    assert config == TrainConfig(lr_milestones=(0.67, 0.9), classes=(0, 3))
    assert config.to_dict()["lr_milestones"] == [0.67, 0.9]


@pytest.fixture
def features(tmp_path):
    path = tmp_path / "f.npz"
    rng = np.random.default_rng(0)
    np.savez(path, features=rng.normal(size=(12, 3)), labels=np.arange(12) % 3)
    return path


def test_json_to_dev_null_writes_through_and_leaves_it_a_device(features, tmp_path, capsys,
                                                                monkeypatch):
    real = os.replace

    def guarded(src, dst, *args, **kwargs):  # a regression fails here, /dev/null kept
        assert Path(os.path.realpath(dst)).is_relative_to(tmp_path), f"renames over {dst}"
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", guarded)
    device = os.stat("/dev/null")
    link = tmp_path / "null.json"
    link.symlink_to("/dev/null")
    for target in ("/dev/null", link):
        code, out, err = run_cli(["measure", features, "--json", target], capsys)
        assert code in (0, None) and f"wrote {target}" in out, err
    assert os.stat("/dev/null").st_ino == device.st_ino
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and link.is_symlink()
    code, _, err = run_cli(["measure", features, "--json", tmp_path], capsys)
    assert code == 2 and err == f"error: {tmp_path}: cannot write (a folder, not a file)\n"


def test_paths_that_are_not_utf8_print_escaped(features, tmp_path, capsys):
    folder = tmp_path / os.fsdecode(b"caf\xe9")
    code, out, err = run_cli(["measure", features, "--json", folder / "m.json"], capsys)
    assert code in (0, None), err
    assert "caf\\udce9/m.json" in out and (folder / "m.json").is_file()
    code, _, err = run_cli(["measure", folder / "absent.npz"], capsys)
    assert code == 2 and err.count("\n") == 1 and "caf\\xe9/absent.npz: no such file" in err


@pytest.mark.parametrize("command", ["measure", "ood", "transfer", "report"])
def test_a_command_given_no_words_is_one_line(command, capsys):
    """Nothing after the command name (as `make demo` runs `nclab demo`): the empty-path
    check has no words to pair, and the missing argument is one line."""
    code, out, err = run_cli([command], capsys)
    assert code == 2, (out, err)
    assert "Traceback" not in err and "ValueError" not in err
    assert err.strip().startswith("error:") or "Missing argument" in err, err

