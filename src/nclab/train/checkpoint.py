"""What checkpoint.pt holds, and reading it back with every field checked.

A checkpoint is read with ``torch.load(weights_only=True)``, so it cannot run code; but
a file that unpickles can still hold the wrong things (a tensor instead of a dict,
missing keys, shapes of another model, an epoch of -5). :func:`restore` checks each
field it reads and says, in one line, which one is wrong.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import torch
from torch import nn

from nclab.core.errors import NCInputError, first_line

FORMAT = 1
#: Keys every checkpoint has; ``step``, ``step_loss``, ``callbacks`` and ``rng_cuda`` are
#: optional.
REQUIRED = ("format", "model", "optimizer", "epoch", "tpt_onset", "rows", "elapsed", "rng_cpu")
#: Optimizer settings the trainer sets itself at every epoch.
_SCHEDULED = {"params", "lr", "initial_lr"}


@dataclass
class RunProgress:
    """What the checkpoint restores besides the model and optimizer.

    Attributes
    ----------
    epoch : int
        Epochs completed.
    tpt_onset : int, optional
    rows : list of dict
        Every row logged so far.
    elapsed : float
        Training seconds so far.
    step, step_loss : int, float
        Optimizer steps done in epoch ``epoch + 1`` and the sum of their losses, when a
        signal stopped the run inside that epoch (else 0).
    callbacks : dict
        ``state_key -> state_dict()`` of the trainer's callbacks with state.
    """

    epoch: int = 0
    tpt_onset: int | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0
    saved_epoch: int | None = None
    saved_at: float = field(default_factory=time.monotonic)
    step: int = 0
    step_loss: float = 0.0
    callbacks: dict[str, dict[str, Any]] = field(default_factory=dict)


def checkpoint_state(model: nn.Module, optimizer: torch.optim.Optimizer, progress: RunProgress,
                     device: torch.device) -> dict[str, Any]:
    """The dict saved as checkpoint.pt."""
    state = {
        "format": FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": progress.epoch,
        "tpt_onset": -1 if progress.tpt_onset is None else progress.tpt_onset,
        "rows": json.dumps(progress.rows),
        "elapsed": progress.elapsed,
        "rng_cpu": torch.get_rng_state(),
        "step": progress.step,
        "step_loss": progress.step_loss,
        "callbacks": json.dumps(progress.callbacks),
    }
    if device.type == "cuda":
        state["rng_cuda"] = torch.cuda.get_rng_state(device)
    return state


class _Fields:
    """Reads the fields of one checkpoint; a wrong one raises an NCInputError naming it."""

    def __init__(self, checkpoint: Any, path: Path) -> None:
        self.path = path
        if not isinstance(checkpoint, dict):
            raise self.error(f"holds {_show(checkpoint)}, not the dict of an nclab checkpoint")
        missing = [key for key in REQUIRED if key not in checkpoint]
        if missing:
            raise self.error(f"lacks {', '.join(missing)}: not an nclab checkpoint")
        if checkpoint["format"] != FORMAT:
            raise self.error(f"has the unknown format {_show(checkpoint['format'])} (this "
                             f"nclab writes format {FORMAT})")
        self.values = checkpoint

    def error(self, what: str) -> NCInputError:
        return NCInputError(f"{self.path} {what}")

    def integer(self, key: str, low: int, high: int, default: int | None = None) -> int:
        value = self.values.get(key, default)
        if not _is_int(value) or not low <= value <= high:
            raise self.error(f"is damaged: {key} is {_show(value)}; expected an integer in "
                             f"{low}..{high}")
        return value

    def number(self, key: str, low: float = -math.inf, default: float | None = None) -> float:
        value = self.values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < low:
            raise self.error(f"is damaged: {key} is {_show(value)}; expected a finite number"
                             + (f" >= {low:g}" if low > -math.inf else ""))
        return float(value)

    def parsed(self, key: str, default: str | None = None) -> Any:
        """The JSON text under ``key`` read back (None when it is not JSON text)."""
        text = self.values.get(key, default)
        try:
            return json.loads(text) if isinstance(text, str) else None
        except ValueError:
            return None

    def rows(self, epoch: int) -> list[dict[str, Any]]:
        rows = self.parsed("rows")
        if not isinstance(rows, list):
            raise self.error("is damaged: rows is not the JSON list of the logged rows")
        last = 0
        for row in rows:
            logged = row.get("epoch") if isinstance(row, dict) else None
            if not _is_int(logged) or not last < logged <= epoch:
                raise self.error(f"is damaged: a logged row has epoch {_show(logged)}; "
                                 f"expected increasing epochs in 1..{epoch}")
            last = logged
        return rows

    def callbacks(self) -> dict[str, dict[str, Any]]:
        states = self.parsed("callbacks", "{}")
        if not isinstance(states, dict) or not all(isinstance(state, dict)
                                                   for state in states.values()):
            raise self.error("is damaged: callbacks is not the JSON of the callbacks' states")
        return states


def restore(checkpoint: Any, path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
            device: torch.device, epochs: int, steps_per_epoch: int) -> RunProgress:
    """Check ``checkpoint`` field by field, load it into ``model``, ``optimizer`` and the
    random generators, and return the progress it records.

    Parameters
    ----------
    checkpoint : object
        What ``torch.load`` returned for ``path``.
    epochs : int
        The configured number of epochs (the largest valid ``epoch``).
    steps_per_epoch : int
        Optimizer steps per epoch (``step`` lies below it).

    Raises NCInputError naming ``path`` and the field that is wrong.
    """
    fields = _Fields(checkpoint, path)
    epoch = fields.integer("epoch", 0, epochs)
    onset = fields.integer("tpt_onset", -1, epoch)
    if onset == 0:
        raise fields.error("is damaged: tpt_onset is 0; expected -1 (not reached) or an epoch")
    step = fields.integer("step", 0, steps_per_epoch - 1 if epoch < epochs else 0, default=0)
    progress = RunProgress(
        epoch, None if onset < 0 else onset, fields.rows(epoch),
        fields.number("elapsed", low=0), saved_epoch=epoch, step=step,
        step_loss=fields.number("step_loss", default=0.0), callbacks=fields.callbacks(),
    )
    _load_model(fields, model, checkpoint["model"])
    _load_optimizer(fields, optimizer, checkpoint["optimizer"])
    _set_rng(fields, checkpoint["rng_cpu"], checkpoint.get("rng_cuda"), device)
    return progress


def _load_model(fields: _Fields, model: nn.Module, weights: Any) -> None:
    expected = model.state_dict()
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor)
                                                for v in weights.values()):
        raise fields.error(f"is damaged: model is {_show(weights)}, not a dict of tensors")
    missing = [key for key in expected if key not in weights]
    extra = [key for key in weights if key not in expected]
    wrong = [f"{key} has shape {tuple(weights[key].shape)}, the model {tuple(value.shape)}"
             for key, value in expected.items()
             if key in weights and weights[key].shape != value.shape]
    problems = ([f"missing {', '.join(missing)}"] if missing else []) \
        + ([f"unexpected {', '.join(extra)}"] if extra else []) + wrong
    if problems:
        raise fields.error(f"does not fit the model: {'; '.join(problems)}")
    not_finite = [key for key, value in weights.items()
                  if value.is_floating_point() and not bool(value.isfinite().all())]
    if not_finite:
        raise fields.error(f"is damaged: model weights {', '.join(not_finite)} hold NaN or inf")
    model.load_state_dict(weights)


def _load_optimizer(fields: _Fields, optimizer: torch.optim.Optimizer, state: Any) -> None:
    fresh = optimizer.state_dict()["param_groups"]
    groups = state.get("param_groups") if isinstance(state, dict) else None
    if not isinstance(groups, list) or not isinstance(state.get("state"), dict) \
            or len(groups) != len(fresh) or not all(isinstance(g, dict) for g in groups):
        raise fields.error("is damaged: optimizer is not the state of this run's optimizer")
    for group, built in zip(groups, fresh, strict=True):
        for key, value in built.items():
            if key not in _SCHEDULED and group.get(key) != value:
                raise fields.error(f"is damaged: the optimizer's {key} is "
                                   f"{_show(group.get(key))}, the config gives {value!r}")
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
        raise fields.error(f"is damaged: optimizer state ({first_line(exc)})") from None
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != param.shape:
                    raise fields.error(f"is damaged: the optimizer's {key} has shape "
                                       f"{tuple(value.shape)} for a parameter of shape "
                                       f"{tuple(param.shape)}")


def _set_rng(fields: _Fields, cpu: Any, cuda: Any, device: torch.device) -> None:
    try:
        torch.set_rng_state(cpu.cpu())
        if device.type == "cuda" and cuda is not None:
            torch.cuda.set_rng_state(cuda.cpu(), device)
    except (AttributeError, RuntimeError, TypeError, ValueError):
        raise fields.error("is damaged: rng_cpu or rng_cuda is not a random-generator "
                           "state") from None


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value: Any) -> str:
    """A short one-line description of a value read from a checkpoint."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (dict, list, tuple)) and len(repr(value)) > 60:
        return f"a {type(value).__name__} of {len(value)} items"
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."
