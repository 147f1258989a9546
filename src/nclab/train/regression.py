"""Regression in the trainer: MSE head, real targets, NRC1-NRC3 at the logged epochs.

The task ``"regression"`` and the evaluator ``"nrc"`` (listed in
``nclab.train.tasks``). ``regression_config(...)`` gives Andriopoulos et al.'s recipe
(definitions §5): the MLP of 3 x 256 ReLU units, SGD with learning rate 1e-2, batch 256 and
weight decay on all parameters.

NRC3's gamma is chosen by grid search on the FINAL W and then held fixed for every epoch
(definitions). A logged epoch does not know the final W yet, so each row stores the n x n
matrices NRC3 needs (``head_gram`` = W W^T and ``target_cov`` = Sigma); the NRC3 curve
is computed from them at the end (:func:`nrc3_history`, in summary.json).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nclab.capture import Probe, collect
from nclab.core import distributed
from nclab.core.errors import NCInputError
from nclab.core.regression_metrics import compute_regression_metrics
from nclab.core.regression_stats import RegressionStats
from nclab.data import REGRESSION, DatasetSplits, load_dataset, targets_from_numpy
from nclab.data.registry import check_dataset_options
from nclab.histories import nrc3_history
from nclab.models import check_model
from nclab.train.config import TrainConfig
from nclab.train.evaluators import EvalContext
from nclab.train.task import Task, TaskOptions

#: Settings of Andriopoulos et al.: MLP 3 x 256 ReLU, SGD lr 1e-2 (no momentum, constant
#: rate), batch 256, weight decay 1e-2 on every parameter, MSE loss.
PAPER_SETTINGS: dict[str, Any] = {
    "task": "regression", "loss": "mse", "model": "mlp",
    "model_options": {"widths": [256, 256, 256]}, "lr": 1e-2, "momentum": 0.0,
    "batch_size": 256, "weight_decay": 1e-2, "lr_milestones": (), "evaluators": ("nrc",),
}


def regression_config(**changes: Any) -> TrainConfig:
    """A TrainConfig for regression: the paper's settings, updated by ``changes``.

    Examples
    --------
    >>> from nclab.train import Trainer
    >>> cfg = regression_config(dataset="teacher", epochs=3, model_options={"widths": [16]})
    >>> cfg.lr, cfg.batch_size, cfg.weight_decay       # the paper's
    (0.01, 256, 0.01)
    >>> summary = Trainer(cfg, "runs/teacher", progress=False).fit()
    >>> summary["epochs_done"]
    3
    """
    return TrainConfig(**{**PAPER_SETTINGS, **changes})


@dataclass(frozen=True)
class RegressionOptions(TaskOptions):
    """Options of the regression task.

    Attributes
    ----------
    standardize_inputs : bool
        Scale the inputs by the training mean and standard deviation of each column.
    standardize_targets : bool
        The same for the targets.
    head_bias : bool
        False drops the bias b of the last layer, so the outputs are W h and the
        feature mean can no longer hide in b.
    """

    standardize_inputs: bool = True
    standardize_targets: bool = False
    head_bias: bool = True


def _standardize(train: torch.Tensor, test: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Both splits scaled by the training mean and standard deviation of each column."""
    train, test = train.numpy(), test.numpy()
    flat = train.reshape(len(train), -1).astype(np.float64)
    mean, std = flat.mean(axis=0), flat.std(axis=0) + 1e-8
    return tuple(((a.reshape(len(a), -1) - mean) / std).reshape(a.shape).astype(np.float32)
                 for a in (train, test))


# ---------------------------------------------------------------------------- task
class RegressionTask(Task):
    """Real targets y in R^n; loss = squared error averaged over the n outputs.

    The loss of one sample is (1/n) ||f(x) - y||^2, so the logged ``train_loss`` is the
    MSE of scikit-learn and of :class:`~nclab.core.regression_metrics.RegressionMetrics`.

    Data: ``config.dataset`` is a regression set of ``nclab.data.DATASETS`` with builder
    options in ``config.dataset_options`` (``seed`` among them, default 0: the data do
    not change with the training seed); ``npz_targets`` reads the file ``config.root``.
    Options: :class:`RegressionOptions`.
    """

    name = "regression"
    options_type = RegressionOptions
    options: RegressionOptions
    default_evaluators = ("nrc",)
    data_kind = REGRESSION
    has_error_rate = False

    def check(self) -> None:
        c = self.config
        dataset = self.dataset
        if c.loss != "mse":
            raise NCInputError(f"regression trains with loss 'mse'; got '{c.loss}' "
                               "(regression_config() sets it)")
        if "collapse" in self.evaluator_names:
            raise NCInputError("the 'collapse' evaluator needs class labels; regression "
                               "runs use the 'nrc' evaluator")
        if dataset == "npz_targets" and not c.root:
            raise NCInputError(f"data set '{c.dataset}' needs the file: set root to the "
                               ".npz path")
        check_dataset_options(dataset, {k: v for k, v in c.dataset_options.items()
                                        if k != "seed"})
        check_model(c.model, c.model_options)

    def load_raw(self) -> DatasetSplits:
        """The data set as built (before standardization)."""
        c = self.config
        options = dict(c.dataset_options)
        seed = int(options.pop("seed", 0))
        return load_dataset(self.dataset, c.root, seed=seed, kind=REGRESSION,
                            imbalance=c.imbalance, **options)  # refused for real targets

    def load_data(self) -> DatasetSplits:
        data = self.load_raw()
        x, x_test, y, y_test = data.train.x, data.test.x, data.train.y, data.test.y
        if self.options.standardize_inputs:
            x, x_test = _standardize(x, x_test)
        if self.options.standardize_targets:
            y, y_test = _standardize(y, y_test)
        name = data.train.name
        return DatasetSplits(targets_from_numpy(np.asarray(x), np.asarray(y), name),
                             targets_from_numpy(np.asarray(x_test), np.asarray(y_test), name),
                             info=dict(data.info))

    def num_outputs(self, data: DatasetSplits) -> int:
        return data.target_dim

    def build_model(self, data: DatasetSplits) -> nn.Module:
        """The network; without ``head_bias`` its last layer computes W h only."""
        model = super().build_model(data)
        if not self.options.head_bias:
            # Unregistering the parameter keeps W's initialization and the random
            # stream identical to the run with a bias.
            model.get_submodule(self.classifier(model)).register_parameter("bias", None)
        return model

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs - targets).square().sum() / outputs.shape[1]

    def errors(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.zeros((), device=outputs.device)  # no error rate: has_error_rate=False


# ---------------------------------------------------------------------------- evaluator
def regression_stats(model: nn.Module, loader: Iterable[tuple[Any, Any]], classifier: str,
                     sync: bool = False, shift: Any = None) -> RegressionStats:
    """RegressionStats of the input of ``model``'s layer ``classifier`` and the targets.

    Runs ``model`` over ``loader`` in eval mode without gradients (its mode is restored);
    with ``sync`` the statistics of every rank are all-reduced. ``shift`` (d,) is
    subtracted from every feature first (to measure centred features).
    """
    offset = None if shift is None else torch.as_tensor(shift)

    def flatten(_probe: Probe, hooked: torch.Tensor, targets: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        hooked = hooked.flatten(1)
        return (hooked if offset is None else hooked - offset.to(hooked.device)), targets

    with distributed.agreed(sync):  # a rank's shard may be empty; its error stops all
        seen = collect(model, loader, lambda _: RegressionStats(), [Probe(model, classifier)],
                       prepare=flatten, allow_empty=sync)
    stats = seen.get(classifier, RegressionStats())
    if sync:
        stats.all_reduce()
    return stats


class NRCEvaluator:
    """NRC1, NRC2, MSE, R^2 per split, and the matrices behind NRC3, at each logged epoch.

    Row keys: ``{split}_nrc1``, ``{split}_nrc2``, ``{split}_mse``, ``{split}_r2``,
    ``{split}_top_n_explained``, ``head_gram`` (W W^T, n x n) and ``target_cov`` (the
    training targets' Sigma, n x n). NRC3 with the definitions' gamma is added by
    :meth:`summarize` at the end of the run.

    ``{split}_nrc1_centred`` and ``{split}_nrc2_centred`` are NRC1 and NRC2 of the centred
    features h_i - hbar (hbar: the split's feature mean; a second pass). The definitions normalize
    the uncentred h_i: for ReLU features, whose mean is large, and a head with a bias,
    the mean direction stays outside W's row space (the bias absorbs it), so nclab's NRC2
    cannot fall far below the share of the mean in ||h||^2 even when the centred
    features have collapsed (docs/regression.md shows a run).

    Parameters
    ----------
    splits : tuple of str
        Which splits to measure.
    """

    name = "nrc"

    def __init__(self, splits: tuple[str, ...] = ("train", "test")) -> None:
        self.splits = splits

    def __call__(self, context: EvalContext) -> dict[str, Any]:
        head = context.model.get_submodule(context.classifier)
        weight, bias = head.weight.detach(), head.bias
        row: dict[str, Any] = {}
        for split in self.splits:
            stats = regression_stats(context.model, context.loaders[split], context.classifier,
                                     sync=context.distributed)
            metrics = compute_regression_metrics(stats, weight, bias, gamma=None)
            row.update({f"{split}_{key}": getattr(metrics, key)
                        for key in ("nrc1", "nrc2", "mse", "r2", "top_n_explained")})
            centred = compute_regression_metrics(
                regression_stats(context.model, context.loaders[split], context.classifier,
                                 sync=context.distributed, shift=stats.feature_mean()),
                weight, gamma=None)
            row.update({f"{split}_{key}_centred": getattr(centred, key)
                        for key in ("nrc1", "nrc2")})
            if split == "train":
                row["target_cov"] = stats.target_covariance().tolist()
        w = weight.to(torch.float64).cpu()
        row["head_gram"] = (w @ w.T).tolist()
        return row

    def summarize(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """NRC3 of every logged epoch at the gamma of the final W (for summary.json)."""
        return {"nrc3": nrc3_history(rows)}

