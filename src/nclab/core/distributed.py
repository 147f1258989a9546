"""Thin helpers over ``torch.distributed`` shared by every streaming statistic, and the
device of this process."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from nclab.core.errors import NCInputError

_OPS = {"sum": "SUM", "max": "MAX"}


def is_initialized() -> bool:
    """True when a ``torch.distributed`` process group is ready to use."""
    return dist.is_available() and dist.is_initialized()


def resolve_device(device: str | torch.device = "auto", option: str = "device") -> torch.device:
    """The device a computation runs on, checked before anything uses it.

    ``"auto"`` is this process's GPU (``LOCAL_RANK`` under ``torchrun``) when CUDA is
    available, else the CPU; otherwise ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Parameters
    ----------
    device : str or torch.device
    option : str
        How messages name the setting: ``"device"`` for Python, ``"--device"`` for the
        command line.

    Raises
    ------
    NCInputError
        One line for a device this torch cannot use: an unknown name, CUDA without a GPU
        or a CUDA build, a GPU index beyond the ones present, MPS where it is absent.
    """
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise NCInputError(f"{option} '{device}' is not a torch device; use auto, cpu, cuda "
                           "or cuda:N") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise NCInputError(f"{option} '{device}': this torch has no CUDA device "
                               f"(torch {torch.__version__}); use cpu or auto")
        if resolved.index is not None and resolved.index >= count:
            raise NCInputError(f"{option} '{device}': this machine has {count} CUDA "
                               f"device(s), cuda:0..cuda:{count - 1}")
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise NCInputError(f"{option} '{device}': MPS is not available here")
    elif resolved.type != "cpu":
        raise NCInputError(f"{option} '{device}': nclab computes on cpu, cuda or mps")
    return resolved


def communication_device() -> torch.device:
    """The device collectives must use: the current GPU for nccl, the CPU otherwise."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def reduce_on_device(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Reduce ``tensor`` over every rank; the result lies on ``tensor``'s own device.

    The input is not modified. ``op`` is ``"sum"`` or ``"max"``. A tensor already on the
    communication device (a GPU tensor under nccl, a CPU tensor under gloo) is reduced
    there without a round trip through the host.
    """
    reduce_op = getattr(dist.ReduceOp, _OPS[op])
    buffer = tensor.detach().to(communication_device(), copy=True)
    dist.all_reduce(buffer, op=reduce_op)
    return buffer.to(tensor.device)


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Reduce ``tensor`` over every rank and return the result on the CPU.

    The input is not modified. ``op`` is ``"sum"`` or ``"max"``.
    """
    return reduce_on_device(tensor, op).cpu()
