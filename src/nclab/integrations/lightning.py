"""A Lightning callback that logs the collapse metrics of the model as it trains.

Needs the ``lightning`` extra (``pip install "nclab[lightning]"``, which brings
``pytorch-lightning``); the unified ``lightning`` package works too, through
``lightning.pytorch``, when ``pytorch_lightning`` is not installed.

In outline (skipped here: it needs a LightningModule and its loader;
docs/in_your_training.md has a complete example, run by the test suite):

>>> trainer = pl.Trainer(max_epochs=100, callbacks=[CollapseCallback()])  # doctest: +SKIP
>>> trainer.fit(module, train_loader)                                     # doctest: +SKIP
>>> trainer.callback_metrics["nc/nc1"]                                    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from nclab.core.errors import NCInputError
from nclab.integrations import common

__all__ = ["CollapseCallback"]

try:  # the classic package first: a callback must come from the trainer's own package
    import pytorch_lightning as pl
except ImportError:  # pragma: no cover - depends on which package is installed
    try:  # the same API under another name, which mypy cannot see as one module
        import lightning.pytorch as pl  # type: ignore[no-redef]
    except ImportError:
        raise ImportError("nclab.integrations.lightning needs Lightning: "
                          'pip install "nclab[lightning]"') from None


class CollapseCallback(common.EpochMeasurement, pl.Callback):
    """Measure the model with ``nclab.track`` at the end of training epochs and log
    every metric through Lightning.

    Each metric is logged as ``prefix + name`` (``nc/nc1``, ``nc/ncc_mismatch``, ...)
    with ``LightningModule.log``, so it lands in ``trainer.callback_metrics`` (where
    ``ModelCheckpoint`` or ``EarlyStopping`` can monitor it) and in every attached
    logger, at the epoch's step. Metrics of the extra ``layers`` are logged as
    ``prefix + layer + "/" + name``. Non-finite values are not logged.

    Parameters
    ----------
    loader : iterable of (inputs, labels), optional
        What to measure; default: the trainer's train dataloader, re-read each time.
    every_n_epochs : int
        Measure after epochs ``every_n_epochs, 2 every_n_epochs, ...`` (1-based).
    classifier : str or nn.Linear, optional
        The classifier layer of the LightningModule (as in ``nclab.track``); default:
        its last ``nn.Linear``.
    layers : sequence of str, optional
        More layers to measure in the same pass (a layer profile).
    prefix : str
        Prepended to every logged name.
    **track_options
        Passed on to ``nclab.track`` (``weighted_mean``, ``spatial``, ``num_classes``,
        ...).

    Attributes
    ----------
    metrics : CollapseMetrics or dict or None
        The result of the latest measurement.

    Notes
    -----
    The model is the LightningModule itself, called as ``module(inputs)`` in eval mode
    without gradients; its training mode is restored, and torch's random state is left
    as it was, so the training that follows is the same as without the callback.

    A DataLoader whose sampler visits its data set once (sequential, shuffled, or the
    ``DistributedSampler`` that Lightning puts in under DDP) is replaced by a loader of
    the same data set, batch size and collate function that visits rank r's samples
    r, r + world, ... once each. ``DistributedSampler`` would instead pad every rank to
    ceil(N / world) samples by repeating the first ones (or drop the tail with
    ``drop_last``), so a few samples would count twice (or never). Under DDP each rank
    measures its shard once and ``nclab.track`` all-reduces the statistics exactly:
    the logged values are those of the whole data set, equal on every rank. Any other
    loader (a custom sampler, an iterable data set) is measured as it is, as this rank's
    share of the data; under DDP the train loader must then be given as ``loader``.
    The measurement sees the loader's transforms: pass a ``loader`` without data
    augmentation to measure the plain training set.
    """

    def __init__(self, loader: Iterable[Any] | None = None, every_n_epochs: int = 1,
                 classifier: str | nn.Linear | None = None,
                 layers: Sequence[str] | None = None, prefix: str = "nc/",
                 **track_options: Any) -> None:
        super().__init__()
        self.configure(loader, every_n_epochs, classifier, layers, prefix, track_options)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # fail at the start rather than after the first epoch
        common.head_name(pl_module, self.classifier)
        self._loader(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.is_due(trainer.current_epoch + 1):
            return
        scalars = self.measure_scalars(pl_module, self._loader(trainer),
                                       sync=trainer.world_size > 1)
        # float64 where the device has it; the values are already those of every rank
        dtype = torch.float32 if pl_module.device.type == "mps" else torch.float64
        pl_module.log_dict(
            {name: torch.tensor(value, dtype=dtype, device=pl_module.device)
             for name, value in scalars.items()},
            on_step=False, on_epoch=True, sync_dist=False)

    def _loader(self, trainer: pl.Trainer) -> Iterable[Any]:
        loader = self.loader if self.loader is not None else trainer.train_dataloader
        if loader is None:
            raise NCInputError("CollapseCallback: the trainer has no train dataloader; "
                               "pass loader=")
        if common.enumerates_dataset(loader):
            return common.rebuilt_loader(loader, trainer.global_rank, trainer.world_size)
        if trainer.world_size > 1 and self.loader is None:
            raise NCInputError(
                "CollapseCallback: the train dataloader has a custom sampler or an iterable "
                "data set, whose DDP shards may repeat samples; pass loader= yielding "
                "this rank's share of the data")
        return loader
