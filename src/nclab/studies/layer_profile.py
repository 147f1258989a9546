"""The collapse of a trained run, layer by layer (``nclab profile RUN_DIR``).

Rebuilds the run's model and data from its config.json, loads the weights of its
checkpoint (``weights_only=True``), measures NC1 and NC1_trace at the output of each
stage of the network and at the classifier's input in one pass over a split, and writes
profile.json and profile.png. Everything is checked before the first file is written.
"""

from __future__ import annotations

import os
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
from nclab.core.separation import separation_fit
from nclab.report.profile import (
    PROFILE_JSON,
    PROFILE_PNG,
    SEPARATION_PNG,
    profile_figure,
    separation_figure,
)
from nclab.runs import RunDir
from nclab.train.batches import EvalBatches
from nclab.train.config import TrainConfig
from nclab.train.task import Task
from nclab.train.tasks import make_task

SPLITS = ("train", "test")
#: At most this many default layers (evenly spaced): each holds a d x d scatter.
MAX_DEFAULT_LAYERS = 16


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


def default_layers(model: nn.Module) -> list[str]:
    """The stages of an nclab network: every activation and every block (a module with
    submodules) among the children of its ``body`` (of the model itself otherwise), but
    the last child, whose output the classifier receives; at most
    ``MAX_DEFAULT_LAYERS``, evenly spaced."""
    body = getattr(model, "body", model)
    prefix = "body." if body is not model else ""
    children = list(body.named_children())[:-1]
    stages = [prefix + name for name, child in children
              if type(child).__module__ == "torch.nn.modules.activation"
              or next(child.children(), None) is not None]
    if len(stages) > MAX_DEFAULT_LAYERS:
        step = (len(stages) - 1) / (MAX_DEFAULT_LAYERS - 1)
        stages = [stages[round(i * step)] for i in range(MAX_DEFAULT_LAYERS)]
    return stages


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
    out = Path(out) if out is not None else Path(run_dir)
    make_dirs(out)
    document = {"run": str(run_dir), "epoch": trained.epoch, "split": split,
                "model": config.model, "dataset": config.dataset, **result.to_dict(),
                **separation_entry(result)}
    json_path, png_path = out / PROFILE_JSON, out / PROFILE_PNG
    write_json(json_path, document)
    title = f"{config.model} on {config.dataset}, epoch {trained.epoch} ({split})"
    profile_figure(document, png_path, title=title)
    if document["separation"] is not None:
        separation_figure(document["separation"], out / SEPARATION_PNG,
                          title=f"law of data separation: {title}")
    return json_path, png_path, result


def separation_entry(result: LayerProfile) -> dict[str, Any]:
    """``separation``: He & Su's fit of log D_l against l, D_l = C nc1_l (definitions
    §16) and the name of its figure (``figure``), or None with ``separation_error`` saying
    why (fewer than three layers, a layer with nc1 = 0 or undefined)."""
    try:
        values = [metrics.nc1 for metrics in result.metrics]
        known = [v for v in values if v is not None]
        if len(known) < len(values):
            raise NCInputError("a layer has no nc1")
        fit = separation_fit(known, num_classes=result.metrics[0].num_classes)
    except NCInputError as exc:
        return {"separation": None, "separation_error": str(exc)}
    return {"separation": {**fit, "figure": SEPARATION_PNG}}
