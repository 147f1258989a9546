"""Thin helpers over ``torch.distributed`` shared by every streaming statistic."""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_initialized() -> bool:
    """True when a ``torch.distributed`` process group is ready to use."""
    return dist.is_available() and dist.is_initialized()


def communication_device() -> torch.device:
    """The device collectives must use: the current GPU for nccl, the CPU otherwise."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Reduce ``tensor`` over every rank and return the result on the CPU.

    The input is not modified. ``op`` is ``"sum"`` or ``"max"``.
    """
    reduce_op = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op]
    buffer = tensor.detach().to(communication_device(), copy=True)
    dist.all_reduce(buffer, op=reduce_op)
    return buffer.cpu()
