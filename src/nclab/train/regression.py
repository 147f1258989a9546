"""Regression in the trainer: MSE head, real targets, NRC1-NRC3 at the logged epochs.

Registers the task ``"regression"`` in ``TASKS`` and the evaluator ``"nrc"`` in
``EVALUATORS``. ``regression_config(...)`` gives Andriopoulos et al.'s recipe (SPEC
section 5): the MLP of 3 x 256 ReLU units, SGD with learning rate 1e-2, batch 256 and
weight decay on all parameters.

NRC3's gamma is chosen by grid search on the FINAL W and then held fixed for every epoch
(SPEC). A logged epoch does not know the final W yet, so each row stores the n x n
matrices NRC3 needs (``head_gram`` = W W^T and ``target_cov`` = Sigma); the NRC3 curve
is computed from them at the end (:func:`nrc3_history`, in summary.json).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from nclab.core.errors import NCInputError
from nclab.core.regression import RegressionStats, compute_regression_metrics, nrc3_history
from nclab.data.imitation import TASKS as IMITATION_TASKS
from nclab.data.imitation import imitation_data
from nclab.data.regression_base import RegressionData, load_regression
from nclab.data.teacher import teacher
from nclab.models import check_model
from nclab.train.config import TrainConfig
from nclab.train.evaluators import EVALUATORS, EvalContext
from nclab.train.task import TASKS, Task

#: Settings of Andriopoulos et al.: MLP 3 x 256 ReLU, SGD lr 1e-2 (no momentum, constant
#: rate), batch 256, weight decay 1e-2 on every parameter, MSE loss.
PAPER_SETTINGS: dict[str, Any] = {
    "task": "regression", "loss": "mse", "model": "mlp",
    "model_options": {"widths": [256, 256, 256]}, "lr": 1e-2, "momentum": 0.0,
    "batch_size": 256, "weight_decay": 1e-2, "lr_milestones": (), "evaluators": ("nrc",),
}
#: Options in ``TrainConfig.options`` read by the task, with their defaults.
TASK_OPTIONS: dict[str, Any] = {"standardize_inputs": True, "standardize_targets": False,
                                "head_bias": True}


def regression_config(**changes: Any) -> TrainConfig:
    """A TrainConfig for regression: the paper's settings, updated by ``changes``.

    Examples
    --------
    >>> cfg = regression_config(dataset="reacher", epochs=2000)   # doctest: +SKIP
    >>> Trainer(cfg, "runs/reacher").fit()                         # doctest: +SKIP
    """
    return TrainConfig(**{**PAPER_SETTINGS, **changes})


# ---------------------------------------------------------------------------- data
def _npz(path: str, test_fraction: float = 0.2, seed: int = 0) -> RegressionData:
    return load_regression(path, test_fraction=test_fraction, seed=seed)


#: name -> builder(seed=..., **dataset_options) of a RegressionData. ``npz`` reads
#: ``TrainConfig.root`` (the file); the MuJoCo tasks need the ``mujoco`` extra.
REGRESSION_DATA: dict[str, Callable[..., RegressionData]] = {
    "teacher": teacher,
    **{name: partial(imitation_data, name) for name in IMITATION_TASKS},
    "npz": _npz,
}


@dataclass(frozen=True)
class TensorSplit:
    """Inputs ``x`` (N, *input_shape) and targets ``y`` (N, n), float32 tensors."""

    x: torch.Tensor
    y: torch.Tensor


@dataclass(frozen=True)
class RegressionSplits:
    """What :meth:`RegressionTask.load_data` gives the trainer."""

    train: TensorSplit
    test: TensorSplit
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def target_dim(self) -> int:
        return self.train.y.shape[1]


def _builder_options(name: str) -> list[str]:
    skip = {"seed", "path", "search_progress", "collect_progress"}
    return [p for p in inspect.signature(REGRESSION_DATA[name]).parameters if p not in skip]


def _standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both splits scaled by the training mean and standard deviation of each column."""
    flat = train.reshape(len(train), -1).astype(np.float64)
    mean, std = flat.mean(axis=0), flat.std(axis=0) + 1e-8
    return tuple(((a.reshape(len(a), -1) - mean) / std).reshape(a.shape).astype(np.float32)
                 for a in (train, test))


# ---------------------------------------------------------------------------- task
class RegressionTask(Task):
    """Real targets y in R^n; loss = squared error averaged over the n outputs.

    The loss of one sample is (1/n) ||f(x) - y||^2, so the logged ``train_loss`` is the
    MSE of scikit-learn and of :class:`~nclab.core.regression.RegressionMetrics`.

    Data: ``config.dataset`` is a name of ``REGRESSION_DATA`` with builder options in
    ``config.dataset_options`` (``seed`` among them, default 0: the data do not change
    with the training seed); ``npz`` reads the file ``config.root``. Options
    (``config.options``): ``standardize_inputs`` (default True: inputs scaled by the
    training mean and standard deviation), ``standardize_targets`` (default False) and
    ``head_bias`` (default True; False drops the bias b of the last layer, so the
    outputs are W h and the feature mean can no longer hide in b).
    """

    has_error_rate = False

    def check(self) -> None:
        c = self.config
        if c.dataset not in REGRESSION_DATA:
            raise NCInputError(f"unknown regression data set '{c.dataset}'; choose from: "
                               f"{', '.join(REGRESSION_DATA)}")
        if c.loss != "mse":
            raise NCInputError(f"regression trains with loss 'mse'; got '{c.loss}' "
                               "(regression_config() sets it)")
        if "collapse" in c.evaluators:
            raise NCInputError("the 'collapse' evaluator needs class labels; regression "
                               "runs use the 'nrc' evaluator")
        if c.dataset == "npz" and not c.root:
            raise NCInputError("data set 'npz' needs the file: set root to the .npz path")
        accepted = _builder_options(c.dataset)
        unknown = sorted(set(c.dataset_options) - set(accepted) - {"seed"})
        if unknown:
            raise NCInputError(f"data set '{c.dataset}' has no option {', '.join(unknown)}; "
                               f"it accepts: seed, {', '.join(accepted)}")
        unknown = sorted(set(c.options) - set(TASK_OPTIONS))
        if unknown:
            raise NCInputError(f"regression has no option {', '.join(unknown)}; "
                               f"it accepts: {', '.join(TASK_OPTIONS)}")
        wrong = [name for name, value in c.options.items() if not isinstance(value, bool)]
        if wrong:
            raise NCInputError(f"regression option {wrong[0]} must be true or false; "
                               f"got {c.options[wrong[0]]!r}")
        check_model(c.model, c.model_options)

    def option(self, name: str) -> Any:
        return self.config.options.get(name, TASK_OPTIONS[name])

    def load_raw(self) -> RegressionData:
        """The data set as built (before standardization)."""
        c = self.config
        options = dict(c.dataset_options)
        seed = int(options.pop("seed", 0))
        if c.dataset == "npz":
            options["path"] = c.root
        return REGRESSION_DATA[c.dataset](seed=seed, **options)

    def load_data(self) -> RegressionSplits:
        data = self.load_raw()
        x, x_test, y, y_test = data.x, data.x_test, data.y, data.y_test
        if self.option("standardize_inputs"):
            x, x_test = _standardize(x, x_test)
        if self.option("standardize_targets"):
            y, y_test = _standardize(y, y_test)
        x, y, x_test, y_test = (torch.as_tensor(np.asarray(a, dtype=np.float32))
                                for a in (x, y, x_test, y_test))
        return RegressionSplits(TensorSplit(x, y), TensorSplit(x_test, y_test), dict(data.info))

    def num_outputs(self, data: RegressionSplits) -> int:
        return data.target_dim

    def build_model(self, data: RegressionSplits) -> nn.Module:
        """The network; without ``head_bias`` its last layer computes W h only."""
        model = super().build_model(data)
        if not self.option("head_bias"):
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
    stats = RegressionStats()
    captured: list[torch.Tensor] = []
    layer = model.get_submodule(classifier)
    handle = layer.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0]))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x, y in loader:
                captured.clear()
                model(x)
                features = captured[-1].flatten(1)
                if shift is not None:
                    features = features - torch.as_tensor(shift, device=features.device)
                stats.update(features, y)
    finally:
        handle.remove()
        model.train(was_training)
    if sync:
        stats.all_reduce()
    return stats


class NRCEvaluator:
    """NRC1, NRC2, MSE, R^2 per split, and the matrices behind NRC3, at each logged epoch.

    Row keys: ``{split}_nrc1``, ``{split}_nrc2``, ``{split}_mse``, ``{split}_r2``,
    ``{split}_top_n_explained``, ``head_gram`` (W W^T, n x n) and ``target_cov`` (the
    training targets' Sigma, n x n). NRC3 with SPEC's gamma is added by
    :meth:`summarize` at the end of the run.

    ``{split}_nrc1_centred`` and ``{split}_nrc2_centred`` are NRC1 and NRC2 of the centred
    features h_i - hbar (hbar: the split's feature mean; a second pass). SPEC normalizes
    the uncentred h_i: for ReLU features, whose mean is large, and a head with a bias,
    the mean direction stays outside W's row space (the bias absorbs it), so SPEC's NRC2
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


TASKS["regression"] = RegressionTask
EVALUATORS["nrc"] = lambda config: NRCEvaluator()
