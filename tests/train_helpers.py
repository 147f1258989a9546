"""A training run small enough for unit tests, and helpers to compare runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

from nclab.train import TrainConfig

TINY = TrainConfig(
    dataset="gaussian",
    dataset_options={"num_classes": 4, "dim": 8, "separation": 8.0},
    per_class=40, per_class_test=10,
    model="mlp", model_options={"widths": [32, 32]},
    epochs=12, batch_size=32, lr=0.05, log_points=4, eval_batch_size=64,
)

#: The same run on the command line.
TINY_ARGS = [
    "--dataset", "gaussian", "--data-opt", "num_classes=4", "--data-opt", "dim=8",
    "--data-opt", "separation=8.0", "--per-class", "40", "--per-class-test", "10",
    "--model", "mlp", "--widths", "32,32",
    "--batch-size", "32", "--lr", "0.05", "--eval-batch-size", "64",
    "--threads", "1", "--no-progress",
]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def rows(run_dir):
    """The metric rows of a run without their wall-clock times."""
    out = []
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        row.pop("time_s")
        out.append(row)
    return out


def nclab_command(*args, launcher=(), entry=("-m", "nclab"), **kwargs):
    """Run ``python [launcher...] -m nclab args`` with this checkout's sources (``entry``:
    what runs nclab's command line instead of ``-m nclab``)."""
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, *launcher, *entry, *map(str, args)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def trained_model(run_dir):
    """(the run's model with its checkpoint's weights, in eval mode; the run's data splits),
    rebuilt from config.json and checkpoint.pt by hand."""
    import torch

    from nclab.runs import RunDir
    from nclab.train import make_task

    run = RunDir(run_dir)
    task = make_task(TrainConfig.from_dict(run.read_config()))
    splits = task.load_data()
    model = task.build_model(splits)
    model.load_state_dict(torch.load(run.file("checkpoint.pt"), weights_only=True)["model"])
    return model.eval(), splits
