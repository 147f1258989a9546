"""A weight-decay sweep of regression runs: the same data and settings, several lambdas.

``sweep_weight_decay(config, [0, 1e-3, 1e-2], "sweeps/reacher")`` makes the data once
(``data.npz`` in the output folder, so that every run sees the same samples), trains one
run per weight decay in ``wd_<value>/`` (each a resumable run directory) and writes

    sweep.json   settings, data, and per weight decay the NRC1-NRC3 curves, the first
                 and last values and their ratios (NRC3 at the gamma of each final W)
    sweep.png    NRC1, NRC2, NRC3 against epoch, one colour per weight decay (log scales)
    gamma.png    NRC3 of each final W against gamma

Calling it again with the same arguments resumes unfinished runs and skips finished ones.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nclab.core.errors import NCInputError
from nclab.core.io import make_dirs, write_json
from nclab.report.regression import gamma_figure, nrc_figure, regression_outcome, with_nrc3
from nclab.runs import load_run
from nclab.train.config import TrainConfig
from nclab.train.regression import RegressionTask
from nclab.train.trainer import Trainer

DATA_NPZ, DATA_JSON = "data.npz", "data.json"
SWEEP_JSON, SWEEP_PNG, GAMMA_PNG = "sweep.json", "sweep.png", "gamma.png"
#: Row columns kept per epoch in sweep.json (NRC3 is added from the logged W W^T).
HISTORY_KEYS = ("train_nrc1", "train_nrc2", "nrc3", "train_nrc1_centred", "train_nrc2_centred",
                "test_nrc1", "test_nrc2", "train_mse", "test_mse", "train_r2")


def run_label(weight_decay: float) -> str:
    return f"wd_{weight_decay:g}"


def prepare_data(config: TrainConfig, out: Path) -> TrainConfig:
    """Build the data of ``config`` once into ``out/data.npz``; return a config reading it.

    A folder that already holds data made from another data spec is refused.
    """
    spec = {"dataset": config.dataset, "root": config.root,
            "dataset_options": config.dataset_options}
    stored = out / DATA_JSON
    if stored.is_file():
        previous = json.loads(stored.read_text())
        if previous.get("spec") != json.loads(json.dumps(spec)):
            raise NCInputError(f"{out} holds a sweep on other data ({previous.get('spec')}); "
                               "choose another --out")
    else:
        data = RegressionTask(config).load_raw()
        data.save(out / DATA_NPZ)
        write_json(stored, {"spec": spec, "info": data.info, "train": list(data.train.y.shape),
                            "test": list(data.test.y.shape)})
    return config.updated(dataset="npz_targets", root=str(out / DATA_NPZ), dataset_options={})


def sweep_weight_decay(
    config: TrainConfig,
    weight_decays: Sequence[float],
    out: str | os.PathLike,
    *,
    on_run: Callable[[int, float, Path], None] | None = None,
    **trainer_options: Any,
) -> dict[str, Any]:
    """Train ``config`` once per weight decay; write sweep.json, sweep.png and gamma.png.

    Parameters
    ----------
    config : TrainConfig
        A regression config (``regression_config``); its weight decay is replaced.
    weight_decays : sequence of float
        At least one, each >= 0, distinct.
    out : path
        Output folder.
    on_run : callable, optional
        ``on_run(index, weight_decay, run_dir)`` before each run (to print progress).
    **trainer_options
        Passed to :class:`~nclab.train.Trainer` (device, progress, checkpoint_every).

    Returns
    -------
    dict
        The content of sweep.json.
    """
    values = [float(v) for v in weight_decays]
    if not values or min(values) < 0 or len(set(values)) != len(values):
        raise NCInputError(f"weight decays must be distinct values >= 0; got {values}")
    if config.task != "regression":
        raise NCInputError(f"a weight-decay sweep needs task 'regression'; got '{config.task}'")
    RegressionTask(config).check()
    out = Path(out)
    make_dirs(out)
    shared = prepare_data(config, out)
    runs = []
    for index, weight_decay in enumerate(values):
        run_dir = out / run_label(weight_decay)
        if on_run is not None:
            on_run(index, weight_decay, run_dir)
        # resume=True: continues an interrupted run, re-summarizes a finished one
        Trainer(shared.updated(weight_decay=weight_decay), run_dir,
                **trainer_options).fit(resume=True)
        runs.append(load_run(run_dir, label=f"weight decay {weight_decay:g}"))
    options = config.model_options
    activation = f" {options['activation']}" if "activation" in options else ""
    title = (f"{config.dataset}: {config.model} {options.get('widths', '')}{activation}, "
             f"lr {config.lr:g}, momentum {config.momentum:g}, batch {config.batch_size}")
    nrc_figure(runs, out / SWEEP_PNG, title=title)
    gamma_figure(runs, out / GAMMA_PNG)
    result = {
        "settings": {**config.to_dict(), "weight_decay": None},
        "data": json.loads((out / DATA_JSON).read_text()),
        "runs": [_run_result(run, weight_decay) for run, weight_decay in zip(runs, values,
                                                                               strict=True)],
        "figure": SWEEP_PNG, "gamma_figure": GAMMA_PNG,
    }
    write_json(out / SWEEP_JSON, result)
    return result


def _run_result(run, weight_decay: float) -> dict[str, Any]:
    with_values, history = with_nrc3(run)
    rows = with_values.rows
    return {
        "weight_decay": weight_decay, "run_dir": str(run.path),
        "time_s": rows[-1].get("time_s"), **regression_outcome(run),
        "history": {"epoch": [row["epoch"] for row in rows],
                    **{key: [row.get(key) for row in rows] for key in HISTORY_KEYS}},
        "gamma_curve": history.get("curve"),
    }
