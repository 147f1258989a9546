"""Mini-batches of in-memory tensors, the same global batches on 1 or K processes.

Every epoch draws one permutation of the training set from (seed, epoch) alone, so a
resumed run sees exactly the batches the uninterrupted run saw, and a K-process run
splits each global batch of ``batch_size`` samples among its ranks (positions
congruent to the rank modulo K): the union over ranks is the single-process batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def epoch_order(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of the training set used in ``epoch`` (CPU, int64)."""
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(num_samples, generator=generator)


class TrainBatches:
    """This rank's share of each global training batch of one epoch.

    Yields ``(x, y, global_size)``: the rank's samples and the size of the global
    batch they belong to (the loss of the rank is summed and divided by it, so that the
    average over ranks taken by DistributedDataParallel is the mean over the batch).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int,
                 epoch: int, rank: int = 0, world: int = 1) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.order = epoch_order(len(y), seed, epoch).to(x.device)
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        for start in range(0, len(self.order), self.batch_size):
            batch = self.order[start : start + self.batch_size]
            mine = batch[self.rank :: self.world]
            yield self.x[mine], self.y[mine], len(batch)


class EvalBatches:
    """This rank's shard (samples rank, rank + K, ...) of a data set, in fixed order.

    Re-iterable, without padding or repeats, so that statistics summed over the ranks
    are those of the whole set.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                 rank: int = 0, world: int = 1) -> None:
        self.x, self.y = x[rank::world], y[rank::world]
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.y), self.batch_size):
            yield self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]

    def growing(self, first: int = 64) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The same samples in the same order, in batches of ``first``, twice that, and
        so on up to ``batch_size``: a pass that stops at its first hit (the search for a
        misclassified sample) pays for a small batch, a full pass for a few more calls."""
        start, size = 0, max(1, min(first, self.batch_size))
        while start < len(self.y):
            yield self.x[start : start + size], self.y[start : start + size]
            start, size = start + size, min(2 * size, self.batch_size)
