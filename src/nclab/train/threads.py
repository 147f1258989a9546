"""How many CPU threads torch and numpy's BLAS use while nclab trains.

One policy for the command line (``--threads``, default :data:`DEFAULT_THREADS`) and the
Python API (``Trainer(threads=...)``, the same default), so that a Python run takes the
time and gives the digits of its command-line twin.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from threadpoolctl import threadpool_limits

from nclab.core.errors import NCInputError

#: benchmarks/threads.py, on a shared 2-core machine: one thread trains the shipped MLP and
#: 1-D CNN about 5x faster than torch's default of one per core, whose threads spin-wait
#: for each other when other work holds the cores (and sums in another order: the last
#: digits of a run depend on the thread count).
DEFAULT_THREADS = 1


def check_threads(threads: int | None) -> int | None:
    """``threads`` itself when it is None (keep the current setting) or an int >= 1."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise NCInputError(f"threads must be an integer >= 1 or None; got {threads!r}")
    return threads


@contextmanager
def limited_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op and BLAS threads, then restore the
    previous counts; ``None`` leaves them as they are."""
    check_threads(threads)
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(before)
