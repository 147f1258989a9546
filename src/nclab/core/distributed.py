"""Thin helpers over ``torch.distributed`` shared by every streaming statistic."""

from __future__ import annotations

import torch
import torch.distributed as dist

_OPS = {"sum": "SUM", "max": "MAX"}


def is_initialized() -> bool:
    """True when a ``torch.distributed`` process group is ready to use."""
    return dist.is_available() and dist.is_initialized()


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
