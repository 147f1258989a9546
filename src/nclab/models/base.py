"""The shape every nclab network has: a feature extractor, then one linear classifier."""

from __future__ import annotations

import torch
from torch import nn


class Network(nn.Module):
    """``classifier(body(x))`` with ``classifier`` the model's last ``nn.Linear``.

    The input of ``classifier`` is the feature h of definitions §1, which is what
    :func:`nclab.track` hooks. Keeping the classifier a plain attribute named
    ``classifier`` lets later code replace it (for example by a normalized classifier)
    without touching the body.

    Parameters
    ----------
    body : nn.Module
        Maps a batch of inputs (n, *input_shape) to features (n, feature_dim).
    feature_dim : int
    num_classes : int
        Number of outputs (classes, or target dimensions for regression).
    """

    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.body = body
        self.feature_dim = feature_dim
        self.classifier = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))
