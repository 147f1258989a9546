"""Faults put into one rank of a distributed ``nclab train``.

``python -m torch.distributed.run ... tests/ddp_faults.py FAULT ARGS...`` runs the
``nclab`` command line (``ARGS``) with the fault ``FAULT`` (a key of :data:`FAULTS`);
``with injected(FAULT): ...`` does the same around a trainer run in this process. A
fault reads the rank from the process group when it strikes (rank 0 without one).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any
from unittest import mock

import torch.distributed as dist

from nclab.core.errors import NCInputError
from nclab.runs import RunDir
from nclab.train.batches import EvalBatches
from nclab.train.evaluators import CollapseEvaluator
from nclab.train.task import Task


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def data_unreadable_on_rank_1(original: Callable, task: Any) -> Any:
    if _rank() == 1:
        raise NCInputError("cannot read the data files on this node")
    return original(task)


def evaluator_crashes_on_rank_1_at_epoch_3(original: Callable, evaluator: Any,
                                           context: Any) -> Any:
    if _rank() == 1 and context.epoch == 3:
        raise RuntimeError("the evaluator crashed")
    return original(evaluator, context)


def row_write_fails_at_epoch_2(original: Callable, run: RunDir, row: dict,
                               previous: list) -> None:
    if row["epoch"] == 2:  # rank 0 alone writes the rows
        raise NCInputError(f"{run.path}: no space left on device")
    original(run, row, previous)


def evaluation_all_on_rank_0(original: Callable, batches: EvalBatches, x: Any, y: Any,
                             batch_size: int, rank: int = 0, world: int = 1) -> None:
    """Rank 0 evaluates every sample, rank 1 none: its shards are empty."""
    keep = slice(None) if rank == 0 else slice(0, 0)
    original(batches, x[keep], y[keep], batch_size)


FAULTS = {
    "setup": (Task, "load_data", data_unreadable_on_rank_1),
    "evaluate": (CollapseEvaluator, "__call__", evaluator_crashes_on_rank_1_at_epoch_3),
    "write": (RunDir, "append_row", row_write_fails_at_epoch_2),
    "empty-shards": (EvalBatches, "__init__", evaluation_all_on_rank_0),
}


def injected(fault: str) -> AbstractContextManager[Any]:
    """``owner.name`` replaced by ``fault(original, *args)`` while the context lasts."""
    owner, name, strike = FAULTS[fault]
    original = getattr(owner, name)
    return mock.patch.object(owner, name,
                             lambda *args, **kwargs: strike(original, *args, **kwargs))


if __name__ == "__main__":
    from nclab.cli import main

    with injected(sys.argv.pop(1)):
        sys.argv[0] = "nclab"
        main()
