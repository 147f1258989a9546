"""Training with normalized features and classifier (definitions §4, "In training").

The network's features h are L2-normalized, and the logits are ``tau * W (h / ||h||)``
with no bias, the rows of W being renormalized to unit norm after every optimizer step
(Euclidean step, then the retraction ``w -> w / ||w||`` of the sphere). Select it with
``TrainConfig(task="normalized", options={"tau": 5.0})`` or ``nclab train
--normalize-features --tau 5``.

Which features are tracked: the normalization is a module at the end of the network's
body, so the classifier's input, which :func:`nclab.track` hooks, is ``h / ||h||`` (unit
norm: the features on the sphere of definitions §4), and W is the unit-row classifier.
The inverse temperature is applied by the classifier (``tau * W x`` equals
``W (tau x)``: the logits are those of definitions §4). Every collapse metric is
invariant to a common scale of the features, so placing ``tau`` on either side of
``W`` gives the same nc1, etf_error_means and wh_duality; the unit-norm choice makes
the tracked features directly comparable with the UFM on the sphere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nclab.core.errors import NCInputError
from nclab.data import DatasetSplits
from nclab.models.base import Network
from nclab.train.config import TrainConfig
from nclab.train.task import ClassificationTask, TaskOptions

#: Name of the task in ``nclab.train.tasks.TASKS``.
NORMALIZED_TASK = "normalized"
#: Inverse temperature used by ``nclab train --normalize-features`` without ``--tau``
#: and by ``nclab normcompare``: on MNIST-1D the collapse is fastest for tau of 3-5 and
#: stalls at tau = 10 (docs/normalized_training.md); tune it per problem.
DEFAULT_TAU = 5.0


class FeatureNormalization(nn.Module):
    """Row-wise L2 normalization ``h -> h / max(||h||, eps)`` of a batch (n, d)."""

    def __init__(self, eps: float = 1e-12) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(h, dim=1, eps=self.eps)


class SphereClassifier(nn.Linear):
    """Bias-free linear classifier with unit-norm rows and inverse temperature ``tau``.

    ``forward(x) = tau * x W^T``. The rows of W start at unit norm;
    :meth:`renormalize` puts them back after an optimizer step.

    Parameters
    ----------
    in_features : int
        Feature dimension d.
    out_features : int
        Number of classes C.
    tau : float
        Inverse temperature, > 0.
    """

    def __init__(self, in_features: int, out_features: int, tau: float) -> None:
        super().__init__(in_features, out_features, bias=False)
        self.tau = check_tau(tau)
        self.renormalize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tau * F.linear(x, self.weight)

    @torch.no_grad()
    def renormalize(self) -> None:
        """Project every row of W back onto the unit sphere."""
        self.weight.copy_(F.normalize(self.weight, dim=1))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, tau={self.tau:g}"


def check_tau(tau: Any) -> float:
    """``tau`` as a float, or NCInputError unless it is a finite number > 0."""
    if isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise NCInputError(f"tau must be a number > 0; got {tau!r}")
    if not (math.isfinite(tau) and tau > 0):
        raise NCInputError(f"tau must be a finite number > 0; got {tau}")
    return float(tau)


def normalize_features(model: Network, tau: float) -> Network:
    """Make ``model`` a normalized-feature network, in place.

    The body becomes ``Sequential(body, FeatureNormalization())`` and the classifier a
    :class:`SphereClassifier` (its rows: those of the old weight, normalized; no bias).

    Parameters
    ----------
    model : Network
        Any ``nclab.models`` network (``body`` then ``classifier``).
    tau : float
        Inverse temperature.

    Returns
    -------
    Network
        The same object.
    """
    if not isinstance(model, Network):
        raise NCInputError(f"feature normalization needs an nclab Network (body, classifier); "
                           f"got {type(model).__name__}")
    old = model.classifier
    classifier = SphereClassifier(old.in_features, old.out_features, tau)
    with torch.no_grad():
        classifier.weight.copy_(old.weight)
    classifier.renormalize()
    model.body = nn.Sequential(model.body, FeatureNormalization())
    model.classifier = classifier
    return model


@dataclass(frozen=True)
class NormalizedOptions(TaskOptions):
    """Options of the normalized task.

    Attributes
    ----------
    tau : float
        Inverse temperature of the logits ``tau * W (h / ||h||)``, finite and > 0
        (default ``DEFAULT_TAU``; ``--tau`` on the command line).
    """

    tau: float = DEFAULT_TAU

    def __post_init__(self) -> None:
        check_tau(self.tau)


class NormalizedTask(ClassificationTask):
    """Cross-entropy on ``tau * W (h / ||h||)``; W's rows renormalized after each step.

    Options: :class:`NormalizedOptions` (``tau``).
    """

    name = NORMALIZED_TASK
    options_type = NormalizedOptions
    options: NormalizedOptions
    LOSSES = ("ce",)

    def check(self) -> None:
        if self.config.loss not in self.LOSSES:
            raise NCInputError(f"--normalize-features trains with the cross-entropy loss "
                               f"(definitions §4); got loss '{self.config.loss}'")
        super().check()

    @property
    def tau(self) -> float:
        return self.options.tau

    def build_model(self, data: DatasetSplits) -> nn.Module:
        return normalize_features(super().build_model(data), self.tau)

    def after_step(self, model: nn.Module) -> None:
        for module in model.modules():
            if isinstance(module, SphereClassifier):
                module.renormalize()


def normalized_config(config: TrainConfig, tau: float = DEFAULT_TAU) -> TrainConfig:
    """``config`` switched to normalized-feature training with inverse temperature ``tau``."""
    return config.updated(task=NORMALIZED_TASK,
                          options={**config.options, "tau": check_tau(tau)})


def normalization_flags(config: TrainConfig, normalize: bool, tau: float | None,
                        resume: bool) -> TrainConfig:
    """``config`` (built from a command's other options) with its ``--tau`` flag.

    ``--tau`` sets the inverse temperature of a run that normalizes its features (by
    ``--normalize-features``, or as stored when resuming) and is refused on any other;
    a new run given ``--normalize-features`` alone gets ``DEFAULT_TAU``. A resumed run
    keeps its stored tau unless ``--tau`` is given (a different one is then refused as
    a config change).
    """
    if tau is not None:
        if config.task != NORMALIZED_TASK:
            raise NCInputError("--tau is the inverse temperature of --normalize-features: "
                               "pass both")
        return normalized_config(config, tau)
    if normalize and not resume and "tau" not in config.options:
        return normalized_config(config)
    return config
