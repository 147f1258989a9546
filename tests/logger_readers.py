"""Read what each logger wrote back with the logging library's own reader:
``{(step, name): value}``."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path


def tensorboard_values(run_dir: Path) -> dict[tuple[int, str], float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    assert not events.Tags()["scalars"]  # every value went in as a float64 tensor summary
    return {(event.step, tag): float(tensor_util.make_ndarray(event.tensor_proto))
            for tag in events.Tags()["tensors"] for event in events.Tensors(tag)}


def wandb_values(run_dir: Path) -> dict[tuple[int, str], float]:
    """The history records of the offline run, through ``wandb leet inspect --json``
    (wandb's reader of its .wandb transaction log; ``wandb.Api`` is online only)."""
    (run,) = (run_dir / "wandb").glob("offline-run-*")
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run)],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    values = {}
    for line in out.splitlines():
        record = json.loads(line)
        if record.get("type") == "history":
            step = int(record["history"]["step"]["num"])
            values.update({(step, name): float(value)
                           for name, value in record["history"]["item"].items()
                           if not name.startswith("_")})
    return values


def mlflow_values(run_dir: Path) -> dict[tuple[int, str], float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(run_dir / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("nclab")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    return {(metric.step, name): metric.value for name in run.data.metrics
            for metric in client.get_metric_history(run.info.run_id, name)}


def csv_values(run_dir: Path) -> dict[tuple[int, str], float]:
    with open(run_dir / "scalars.csv", newline="") as handle:
        return {(int(row["step"]), row["name"]): float(row["value"])
                for row in csv.DictReader(handle)}


READERS = {"tensorboard": tensorboard_values, "wandb": wandb_values,
           "mlflow": mlflow_values, "csv": csv_values}
