"""Which samples each rank measures, so that statistics summed over ranks count every
sample of the data set once.

A ``DistributedSampler`` (Lightning's under DDP, or one a user passes) *pads* every rank
to the same number of samples by repeating samples from the start of the data set (or,
with ``drop_last``, leaves the tail out). Summed over the ranks, a few samples would
count twice (or never). A DataLoader drawn by such a sampler is replaced by a loader of
the same data set in which rank r takes samples r, r + world, r + 2 world, ... once
each, in order, without padding: :func:`shard_loader`, :func:`rebuilt_loader` (for the
integrations) and :func:`unpadded` (for ``nclab.track``, which warns where it cannot
replace the loader). A DataLoader over an ``IterableDataset`` takes no sampler, so
there is nothing to detect there: such a data set must shard itself without repeats.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sized
from typing import Any, TypeGuard

from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)


class PaddedShardWarning(UserWarning):
    """The loader's ``DistributedSampler`` repeats (or leaves out) samples and could not
    be replaced: the statistics summed over ranks count those samples twice (or never)."""


def shard_loader(dataset: Dataset, batch_size: int | None, rank: int = 0, world: int = 1, *,
                 collate_fn: Callable[[list[Any]], Any] | None = None,
                 num_workers: int = 0) -> DataLoader:
    """Samples ``rank, rank + world, ...`` of a map-style data set, each exactly once.

    The shards of ranks ``0..world-1`` partition the data set: no padding, no shuffling,
    nothing dropped.

    Parameters
    ----------
    dataset : map-style Dataset of N samples
    batch_size : int or None
        None: the samples one by one, not batched (as ``DataLoader(batch_size=None)``).
    rank, world : int
        This process's rank and the number of processes.
    collate_fn : callable, optional
        As in ``DataLoader`` (HF data collators, for example).
    num_workers : int

    Returns
    -------
    DataLoader
        About N / world samples in batches of ``batch_size``.
    """
    size = None if batch_size is None else max(1, int(batch_size))
    return DataLoader(dataset, batch_size=size,
                      sampler=range(rank, dataset_size(dataset), world), collate_fn=collate_fn,
                      num_workers=num_workers)


def dataset_size(dataset: Dataset) -> int:
    """The number of samples of a map-style data set.

    torch's ``Dataset`` does not declare ``__len__``, but every sampler used here needs
    it; one without raises the ``TypeError`` that ``len`` would.
    """
    if not isinstance(dataset, Sized):
        raise TypeError(f"object of type '{type(dataset).__name__}' has no len()")
    return len(dataset)


def enumerates_dataset(loader: Any) -> TypeGuard[DataLoader]:
    """True when ``loader`` is a DataLoader whose sampler visits its (map-style) data set
    once per epoch in some order: sequential, random, or a plain ``DistributedSampler``.

    Such a loader can be replaced by :func:`shard_loader` of the same data set; a custom
    sampler (weighted, a subset, a wrapped custom sampler) cannot.
    """
    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
        return False
    sampler = loader.sampler
    if type(sampler) is DistributedSampler:  # a subclass may wrap another sampler
        return True
    if isinstance(sampler, (RandomSampler, SequentialSampler)):
        return not getattr(sampler, "replacement", False) and len(sampler) == dataset_size(
            loader.dataset)
    return False


def rebuilt_loader(loader: DataLoader, rank: int, world: int) -> DataLoader:
    """:func:`shard_loader` with the data set, batch size, collate function and workers
    of ``loader`` (which must satisfy :func:`enumerates_dataset`)."""
    batch_size = loader.batch_size or getattr(loader.batch_sampler, "batch_size", 1)
    return shard_loader(loader.dataset, batch_size, rank, world,
                        collate_fn=loader.collate_fn, num_workers=loader.num_workers)


def distributed_sampler(loader: Any) -> DistributedSampler | None:
    """The ``DistributedSampler`` (or subclass) that draws the samples of ``loader``,
    given as its sampler or inside its batch sampler; None for anything else."""
    if not isinstance(loader, DataLoader):
        return None
    for sampler in (loader.sampler, getattr(loader.batch_sampler, "sampler", None)):
        if isinstance(sampler, DistributedSampler):
            return sampler
    return None


def padded_samples(sampler: DistributedSampler, size: int) -> int:
    """How many samples all ranks of ``sampler`` draw beyond a data set of ``size``:
    the padding (> 0), or minus the samples that ``drop_last`` leaves out (< 0)."""
    return sampler.num_replicas * len(sampler) - size


def unpadded(loader: Iterable[Any]) -> Iterable[Any]:
    """``loader``, or, when a ``DistributedSampler`` pads (or cuts) it, the same rank's
    samples of the whole data set without padding.

    For statistics that are summed over ranks. A DataLoader drawn by a plain
    ``DistributedSampler`` (with a plain batch sampler, or none) is replaced by
    :func:`shard_loader` of its data set, batch size, collate function and workers, at
    the sampler's rank and number of replicas: over the ranks, every sample of the data
    set is taken once. Where that cannot be done (a
    subclass of DistributedSampler, which may draw other samples; a custom batch
    sampler) a :class:`PaddedShardWarning` names the sampler and the number of samples
    counted twice (or left out). Any other loader is returned as it is.

    Parameters
    ----------
    loader : iterable of batches

    Returns
    -------
    iterable of batches
    """
    sampler = distributed_sampler(loader)
    if sampler is None:
        return loader
    assert isinstance(loader, DataLoader)
    padded = padded_samples(sampler, dataset_size(loader.dataset))
    if padded == 0:
        return loader
    batches = loader.batch_sampler
    if type(sampler) is DistributedSampler and (batches is None or type(batches) is BatchSampler):
        # batch_size None (no batch sampler): samples one at a time, unbatched, as given
        batch_size = None if batches is None else batches.batch_size
        return shard_loader(loader.dataset, batch_size, sampler.rank, sampler.num_replicas,
                            collate_fn=loader.collate_fn, num_workers=loader.num_workers)
    count = f"{abs(padded)} sample{'' if abs(padded) == 1 else 's'}"
    what = (f"repeats {count} to pad the ranks to equal lengths: counted twice" if padded > 0
            else f"leaves {count} out (drop_last): never counted")
    warnings.warn(
        f"the loader's sampler {type(sampler).__name__} (a DistributedSampler) {what} in "
        "the statistics summed over ranks; nclab replaces only a plain DistributedSampler. "
        "Pass a loader that visits each sample once (such as "
        "nclab.capture.sharding.shard_loader(dataset, batch_size, rank, world))",
        PaddedShardWarning, stacklevel=3)
    return loader
