"""A HuggingFace ``TrainerCallback`` that logs the collapse metrics of the model as it
trains, on its own (dict) batches, sequence-level or token-level.

Needs the ``hf`` extra (``pip install "nclab[hf]"``).

In outline (skipped here: it needs a model and a data set; docs/in_your_training.md
has a complete example, run by the test suite):

>>> trainer = Trainer(model=model, args=args, train_dataset=train)   # doctest: +SKIP
>>> trainer.add_callback(CollapseCallback(trainer))                  # doctest: +SKIP
>>> trainer.train()                                                  # doctest: +SKIP
>>> [row["nc/nc1"] for row in trainer.state.log_history if "nc/nc1" in row]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from nclab.core.errors import NCInputError
from nclab.integrations import common

__all__ = ["CollapseCallback"]

try:
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover - depends on what is installed
    raise ImportError("nclab.integrations.transformers needs transformers: "
                      'pip install "nclab[hf]"') from None


class CollapseCallback(common.EpochMeasurement, TrainerCallback):
    """Measure the model with ``nclab.track`` at the end of training epochs and log
    every metric through the Trainer.

    Each metric is logged as ``prefix + name`` (``nc/nc1``, ...; ``prefix + layer + "/"
    + name`` for the extra ``layers``); non-finite values are not logged. With the
    ``trainer`` given, the values go through ``trainer.log``: they appear in
    ``trainer.state.log_history`` and reach every ``report_to`` integration (W&B,
    TensorBoard, MLflow, ...). Without it they are appended to ``state.log_history``
    only, in the same form (with ``epoch`` and ``step``).

    Parameters
    ----------
    trainer : transformers.Trainer, optional
        The trainer to log through (see above).
    loader : iterable of batches, optional
        What to measure; default: the trainer's training set, through the trainer's
        data collator (see Notes).
    every_n_epochs : int
        Measure after epochs ``every_n_epochs, 2 every_n_epochs, ...`` (1-based).
    classifier : str or nn.Linear, optional
        The classifier layer (``"classifier"`` of ``BertForSequenceClassification``,
        ``"lm_head"`` of a causal LM); default: the model's last ``nn.Linear``.
    layers : sequence of str, optional
        More layers to measure in the same pass.
    prefix : str
        Prepended to every logged name.
    **track_options
        Passed on to ``nclab.track``: ``label_key`` (default ``"labels"``: dict batches
        are split into labels and the model's keyword arguments), ``ignore_index``
        (default -100, HF's padding label), ``shift_labels=True`` for a causal LM's
        unshifted token labels, ``num_classes``, ``weighted_mean``, ...

    Notes
    -----
    The model is called as ``model(**batch_without_labels)`` in eval mode without
    gradients; its training mode is restored. Token-level features (batch, seq, d) are
    measured per position with the token labels (batch, seq); positions labelled
    ``ignore_index`` are left out.

    By default the callback measures the training set once per sample: rank r of
    ``world`` processes takes samples r, r + world, ... of the Trainer's train data set,
    in batches of ``per_device_eval_batch_size`` through the Trainer's collator, and
    ``nclab.track`` all-reduces the statistics exactly. The Trainer's own train loader
    (Accelerate's sharded sampler) would instead pad the ranks to equal lengths with
    samples from the start of the data set, counting those twice. An iterable train
    data set cannot be split this way: it is measured through the Trainer's loader
    in one process, and under distributed training it must be given as ``loader``
    (this rank's share of the data).
    """

    def __init__(self, trainer: Any = None, *, loader: Iterable[Any] | None = None,
                 every_n_epochs: int = 1, classifier: str | nn.Linear | None = None,
                 layers: Sequence[str] | None = None, prefix: str = "nc/",
                 **track_options: Any) -> None:
        self.configure(loader, every_n_epochs, classifier, layers, prefix, track_options)
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any,
                       model: nn.Module | None = None, train_dataloader: Any = None,
                       **kwargs: Any) -> None:
        # fail at the start rather than after the first epoch
        common.head_name(_given(model), self.classifier)
        self._loader(args, train_dataloader)

    def on_epoch_end(self, args: Any, state: Any, control: Any,
                     model: nn.Module | None = None, train_dataloader: Any = None,
                     **kwargs: Any) -> None:
        if not self.is_due(round(state.epoch or 0)):
            return
        scalars = self.measure_scalars(_given(model), self._loader(args, train_dataloader),
                                       sync=args.world_size > 1)
        if self.trainer is not None:
            self.trainer.log(scalars)
        else:
            state.log_history.append({**scalars, "epoch": state.epoch,
                                      "step": state.global_step})

    def _loader(self, args: Any, train_dataloader: Any) -> Iterable[Any]:
        if self.loader is not None:
            return self.loader
        dataset = getattr(train_dataloader, "dataset", None)
        if dataset is None:
            raise NCInputError("CollapseCallback: the Trainer has no train dataloader; "
                               "pass loader=")
        if isinstance(dataset, IterableDataset):
            if args.world_size > 1:
                raise NCInputError(
                    "CollapseCallback: an iterable train data set cannot be split into "
                    "disjoint shards here; pass loader= yielding this rank's share")
            return train_dataloader
        collate = train_dataloader.collate_fn if isinstance(train_dataloader,
                                                            DataLoader) else None
        return common.shard_loader(dataset, args.per_device_eval_batch_size,
                                   args.process_index, args.world_size, collate_fn=collate)


def _given(model: nn.Module | None) -> nn.Module:
    """The model that the HF Trainer passes to every callback event."""
    if model is None:
        raise NCInputError("CollapseCallback: the Trainer passed no model to the callback")
    return model
