"""The collapse of a trained run, layer by layer (``nclab profile RUN_DIR``).

Rebuilds the run's model and data from its config.json, loads the weights of its
checkpoint (``weights_only=True``), measures NC1 and NC1_trace at the output of each
stage of the network and at the classifier's input in one pass over a split, and writes
profile.json and profile.png. Everything is checked before the first file is written.

A run trained with the ``layers`` evaluator logged the nc1 of each stage at every logged
epoch: the law of data separation is then fitted at each of them too
(``separation_by_epoch``, separation_epochs.png).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nclab.capture import LayerProfile, find_classifier, profile
from nclab.core.distributed import resolve_device
from nclab.core.errors import NCInputError, first_line
from nclab.core.io import make_dirs, write_json
from nclab.core.separation import MIN_LAYERS, layer_fit, separation_history
from nclab.report.profile import (
    PROFILE_JSON,
    PROFILE_PNG,
    SEPARATION_EPOCHS_PNG,
    SEPARATION_PNG,
    profile_figure,
    separation_figure,
    separation_history_figure,
)
from nclab.report.style import lr_drop_epochs
from nclab.runs import RunDir, RunLogWarning, is_number, load_run
from nclab.train.batches import EvalBatches
from nclab.train.config import TrainConfig
from nclab.train.layers import LAYER_NC1, default_layers
from nclab.train.layers import MAX_DEFAULT_LAYERS as MAX_DEFAULT_LAYERS  # moved; old home kept
from nclab.train.task import Task
from nclab.train.tasks import make_task

SPLITS = ("train", "test")


@dataclass
class TrainedRun:
    """A run's task, data and model with the checkpoint's weights."""

    config: TrainConfig
    task: Task
    data: Any
    model: nn.Module
    epoch: int


def load_trained(run_dir: str | os.PathLike, device: torch.device | str = "cpu") -> TrainedRun:
    """The model of a finished (or interrupted) ``nclab train`` run, ready to measure."""
    run = RunDir(run_dir)
    stored = run.read_config()
    if stored is None:
        raise NCInputError(f"{run.path} has no config.json: not a run directory of nclab train")
    config = TrainConfig.from_dict(stored)
    task = make_task(config)
    if not task.has_error_rate:
        raise NCInputError(f"the run in {run.path} is a '{config.task}' run: the profile "
                           "measures classification collapse")
    checkpoint = run.load_checkpoint("cpu")
    if checkpoint is None:
        raise NCInputError(f"{run.path} has no checkpoint.pt: the run saved no weights yet")
    data = task.load_data()
    model = task.build_model(data)
    try:
        model.load_state_dict(checkpoint["model"])
    except (KeyError, RuntimeError) as exc:
        raise NCInputError(f"the checkpoint of {run.path} does not fit the model its config "
                           f"builds ({first_line(exc)})") from None
    return TrainedRun(config, task, data, model.to(device), int(checkpoint.get("epoch", 0)))


def profile_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                split: str = "train", layers: Sequence[str] | None = None,
                point: str = "output", device: str = "auto",
                batch_size: int | None = None) -> tuple[Path, Path, LayerProfile]:
    """Measure a trained run layer by layer; write profile.json and profile.png.

    Parameters
    ----------
    run_dir : path
        A run directory of ``nclab train``.
    out : path, optional
        Output folder; default ``run_dir``.
    split : {"train", "test"}
    layers : sequence of str, optional
        Module names; default :func:`default_layers`.
    point : {"output", "input"}
        Where the layers are measured.
    device : str
        ``"auto"``: CUDA when available.
    batch_size : int, optional
        Default: the run's ``eval_batch_size``.

    Returns
    -------
    (json path, png path, LayerProfile)
    """
    if split not in SPLITS:
        raise NCInputError(f"split must be one of {', '.join(SPLITS)}; got '{split}'")
    if batch_size is not None and batch_size < 1:
        raise NCInputError(f"batch_size must be >= 1; got {batch_size}")
    trained = load_trained(run_dir, resolve_device(device))
    model, config = trained.model, trained.config
    head = trained.task.classifier(model)
    names = list(layers) if layers else default_layers(model)
    for name in names:
        find_classifier(model, name)  # an unknown name stops here, before any file
    part = getattr(trained.data, split)
    device_of = next(model.parameters()).device
    loader = EvalBatches(part.x.to(device_of), part.y.to(device_of),
                         batch_size or config.eval_batch_size)
    result = profile(model, loader, names, head, layer_point=point)
    history = history_entry(run_dir, split, result.metrics[0].num_classes,
                            [*default_layers(model), head])
    out = Path(out) if out is not None else Path(run_dir)
    make_dirs(out)
    document = {"run": str(run_dir), "epoch": trained.epoch, "split": split,
                "model": config.model, "dataset": config.dataset, **result.to_dict(),
                **separation_entry(result), **history}
    json_path, png_path = out / PROFILE_JSON, out / PROFILE_PNG
    write_json(json_path, document)
    title = f"{config.model} on {config.dataset}, epoch {trained.epoch} ({split})"
    profile_figure(document, png_path, title=title)
    if document["separation"] is not None:
        separation_figure(document["separation"], out / SEPARATION_PNG,
                          title=f"law of data separation: {title}")
    if document["separation_by_epoch"] is not None:
        separation_history_figure(document["separation_by_epoch"], out / SEPARATION_EPOCHS_PNG,
                                  title=f"law of data separation during training: {config.model} "
                                        f"on {config.dataset} ({split})",
                                  lr_drops=lr_drop_epochs(config.to_dict()))
    return json_path, png_path, result


def separation_entry(result: LayerProfile) -> dict[str, Any]:
    """``separation``: He & Su's fit of log D_l against l, D_l = C nc1_l (definitions
    §16) and the name of its figure (``figure``), or None with ``separation_error`` saying
    why (fewer than three layers, a layer with nc1 = 0 or undefined)."""
    try:
        fit = layer_fit([metrics.nc1 for metrics in result.metrics],
                        num_classes=result.metrics[0].num_classes)
    except NCInputError as exc:
        return {"separation": None, "separation_error": str(exc)}
    return {"separation": {**fit, "figure": SEPARATION_PNG}}


def history_entry(run_dir: str | os.PathLike, split: str, num_classes: int,
                  layers: Sequence[str]) -> dict[str, Any]:
    """``separation_by_epoch``: He & Su's fit at every logged epoch whose row holds the
    per-layer nc1 of the ``layers`` evaluator (definitions §16), as ``{"split",
    "layers", "epochs": [{"epoch", "decay_ratio", "pearson_r", "ratios", "D", ...} or
    {"epoch", "error"}], "figure"}``; or None with ``separation_by_epoch_error`` saying
    why (the run logged no per-layer nc1, or fewer than three layers).

    Parameters
    ----------
    run_dir : path
    split : str
        The split whose column ``{split}_layer_nc1`` is read.
    num_classes : int
        C of D_l = C nc1_l.
    layers : sequence of str
        The names of the layers the evaluator measures (its default layers and the
        classifier), listed when the logged values have as many entries.
    """
    column = split + LAYER_NC1
    try:
        epochs, values = logged_layer_values(run_dir, column)
        if len(values[-1]) < MIN_LAYERS:
            raise NCInputError(f"the run logged {len(values[-1])} layers in {column}: the law "
                               f"of data separation needs at least {MIN_LAYERS} (a deeper "
                               "network)")
    except NCInputError as exc:
        return {"separation_by_epoch": None, "separation_by_epoch_error": str(exc)}
    named = list(layers) if len(layers) == len(values[-1]) else None
    return {"separation_by_epoch": {
        "split": split, "layers": named,
        "epochs": separation_history(epochs, values, num_classes),
        "figure": SEPARATION_EPOCHS_PNG}}


def logged_layer_values(run_dir: str | os.PathLike, column: str
                        ) -> tuple[list[int], list[list[float | None]]]:
    """(epochs, per-layer values) of the logged rows holding ``column``, a list of
    numbers or nulls; a row whose cell is anything else is left out with a
    RunLogWarning. NCInputError when no row holds one."""
    epochs: list[int] = []
    values: list[list[float | None]] = []
    for row in load_run(run_dir).rows:
        cell = row.get(column)
        if cell is None:
            continue
        if isinstance(cell, list) and all(v is None or is_number(v) for v in cell):
            epochs.append(row["epoch"])
            values.append(cell)
        else:
            warnings.warn(f"epoch {row['epoch']}: {column} is not a list of numbers: left out",
                          RunLogWarning, stacklevel=2)
    if not values:
        how = ("train it with --evaluators collapse,layers" if column == "train" + LAYER_NC1
               else "the layers evaluator logs the train split; "
                    "Trainer(evaluators=[LayerEvaluator(splits=('train', 'test'))]) logs both")
        raise NCInputError(f"the run logged no {column}: {how}, to fit the law of data "
                           "separation at every logged epoch")
    return epochs, values
