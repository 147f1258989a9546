"""A real 2-process gloo group on the CPU for the distributed tests.

``run_ranks(work, tmp_path)`` forks one process per rank (the children inherit the
imported modules instead of importing them again), joins them to a gloo group and
calls ``work(rank, world)``; what it returns, a dict of JSON values, comes back per rank.
A rank that waits on a peer which never arrives fails within ``TIMEOUT`` instead of
hanging the suite.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TIMEOUT = timedelta(seconds=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, out: str,
               work: Callable[[int, int], dict[str, Any]]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=TIMEOUT)
    try:
        result = work(rank, world)
        Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def run_ranks(work: Callable[[int, int], dict[str, Any]], tmp_path: Path,
              world: int = 2) -> list[dict[str, Any]]:
    """``work(rank, world)`` on every rank of a gloo group; the results, by rank."""
    mp.start_processes(_rank_main, args=(world, free_port(), str(tmp_path), work),
                       nprocs=world, join=True, start_method="fork")
    return [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(world)]
