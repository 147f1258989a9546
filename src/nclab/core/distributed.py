"""Thin helpers over ``torch.distributed`` shared by every streaming statistic, the
ranks' agreement on whether their local work failed, and the device of this process.

Local work (running a model over a shard, accumulating statistics) can fail on one rank
only. A rank that then skipped to its error path would run other collectives than its
peers, which pair wrongly (a tensor of one rank read as another's) or wait forever.
:func:`agreed` wraps such work: every rank ends the block with one small all_reduce of
its status, and if any rank failed, every rank raises :class:`RankFailed` with the same
one-line message before any rank reaches the next collective.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

from nclab.core.errors import NCInputError, first_line

_OPS = {"sum": "SUM", "max": "MAX"}
#: The longest message (in UTF-8 bytes) a failing rank sends to the others.
MESSAGE_BYTES = 1000


class RankFailed(NCInputError):
    """Local work failed on some rank; every rank of the group raises this, with the
    message of the lowest failing rank, after :func:`agree`.

    Attributes
    ----------
    rank : int
        The rank whose message this is.
    """

    def __init__(self, message: str, rank: int) -> None:
        super().__init__(message)
        self.rank = rank


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


def agree(ok: bool, message: str = "") -> None:
    """Collective: every rank says whether its local work succeeded; if one failed,
    every rank raises the same :class:`RankFailed`.

    Every rank of the group must call it at the same point (as any collective). The
    ranks exchange one int64 per rank (an all_reduce); only when some rank failed does
    the lowest failing rank broadcast its message (at most ``MESSAGE_BYTES`` bytes).
    Without a process group, a failure raises the message as it is.

    Parameters
    ----------
    ok : bool
        Whether this rank's work succeeded.
    message : str
        What failed (one line), used when ``ok`` is False.

    Raises
    ------
    RankFailed
        On every rank, as ``"rank R of K: message"``, when any rank passed ``ok=False``.
    """
    text = " ".join(message.split()).encode()[:MESSAGE_BYTES] if not ok else b""
    if not is_initialized():
        if not ok:
            raise RankFailed(text.decode(errors="ignore"), 0)
        return
    rank, world = dist.get_rank(), dist.get_world_size()
    device = communication_device()
    # the length of each rank's message plus one: zero is "succeeded"
    lengths = torch.zeros(world, dtype=torch.int64, device=device)
    if not ok:
        lengths[rank] = len(text) + 1
    dist.all_reduce(lengths)
    failed = lengths.nonzero().flatten().tolist()
    if not failed:
        return
    source = failed[0]
    buffer = torch.zeros(int(lengths[source]) - 1, dtype=torch.uint8, device=device)
    if rank == source:
        buffer.copy_(torch.frombuffer(bytearray(text), dtype=torch.uint8))
    if buffer.numel():
        dist.broadcast(buffer, src=source)
    received = bytes(buffer.cpu().tolist()).decode(errors="ignore")
    raise RankFailed(f"rank {source} of {world}: {received}", source)


@contextmanager
def agreed(sync: bool = True) -> Iterator[None]:
    """Run the block, then :func:`agree` on whether it raised, on every rank.

    Wrap in it the local work that comes before a collective (a pass over the rank's
    shard before its statistics are all-reduced): a rank whose block raised joins the
    agreement instead of skipping to other collectives, and every rank raises the same
    :class:`RankFailed` (chained to the original exception on the rank it came from).
    A :class:`RankFailed` raised inside the block was already agreed on by every rank
    and passes through unchanged. With ``sync`` False, or without a process group, the
    block runs as it is.

    Parameters
    ----------
    sync : bool
        Whether the ranks run the block together (every rank must then enter it).
    """
    if not (sync and is_initialized()):
        yield
        return
    try:
        yield
    except RankFailed:
        raise
    except Exception as exc:
        try:
            agree(False, _describe(exc))
        except RankFailed as failure:
            raise failure from exc
        raise  # pragma: no cover - agree(False) always raises
    agree(True)


def _describe(exc: Exception) -> str:
    """One line for another rank: the message of an NCInputError, the type and first
    line of any other exception."""
    line, name = first_line(exc), type(exc).__name__
    return line if isinstance(exc, NCInputError) or line == name else f"{name}: {line}"
