"""From what a layer saw to one feature row per labelled sample (or token).

- (n, d) with labels (n,): as it is.
- (n, c, *positions) of a layer that keeps its channels second (a convolution): reduced
  to (n, c) by the mean over positions, or flattened to (n, c * positions).
- (n, s, d) with labels (n, s): token-level labels; every position is a sample. With
  ``shift_labels`` the labels are those of a causal LM before HuggingFace's shift: the
  features at positions 0..s-2 predict the labels at 1..s-1, exactly as HF's loss pairs
  ``logits[..., :-1, :]`` with ``labels[..., 1:]``.
- Positions (or samples) whose label is ``ignore_index`` (HF's -100: padding, prompts)
  are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nclab.capture.hooks import Probe
from nclab.core.errors import NCInputError

#: Largest feature dimension accepted for a hooked layer: the scatter matrix is d x d.
MAX_DIM = 16_384
SPATIAL = ("mean", "flatten")


@dataclass(frozen=True)
class Arrangement:
    """How hooked tensors and labels become (features (m, d), labels (m,)).

    Parameters
    ----------
    spatial : {"mean", "flatten"}
        For (n, c, *positions) tensors of channels-second layers.
    ignore_index : int, optional
        Label of the positions to drop; None keeps every one.
    shift_labels : bool
        Token labels are unshifted causal-LM labels: shift them as HF's loss does.
    """

    spatial: str = "mean"
    ignore_index: int | None = -100
    shift_labels: bool = False

    def __post_init__(self) -> None:
        if self.spatial not in SPATIAL:
            raise NCInputError(f"spatial must be one of {', '.join(SPATIAL)}; "
                               f"got '{self.spatial}'")

    def __call__(self, probe: Probe, hooked: torch.Tensor,
                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows of one probe's batch and their labels."""
        features, labels = self.align(hooked, labels, probe.features_last, probe.what)
        if features.shape[1] > MAX_DIM:
            raise NCInputError(
                f"{probe.what} has {features.shape[1]} features (> {MAX_DIM}): its d x d "
                "scatter would not fit; use spatial='mean' or a later layer"
            )
        return features, labels

    def align(self, x: torch.Tensor, labels: torch.Tensor, features_last: bool = True,
              what: str = "the tensor") -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` as (m, d) rows paired with ``labels`` (m,); see the module's notes."""
        tokens = labels.ndim == 2 and x.ndim == 3 and tuple(x.shape[:2]) == tuple(labels.shape)
        if self.shift_labels and not tokens:
            raise NCInputError(
                f"shift_labels=True needs labels of shape (batch, seq) and {what} of shape "
                f"(batch, seq, d); got {tuple(x.shape)} and labels {tuple(labels.shape)}"
            )
        if tokens:
            if self.shift_labels:
                x, labels = x[:, :-1], labels[:, 1:]
            x, labels = x.reshape(-1, x.shape[-1]), labels.reshape(-1)
        elif x.ndim > 2 and not features_last:
            x = x.mean(dim=tuple(range(2, x.ndim))) if self.spatial == "mean" else x.flatten(1)
        if x.ndim != 2 or labels.ndim != 1 or len(labels) != len(x):
            raise NCInputError(
                f"{what} has shape {tuple(x.shape)} and the labels {tuple(labels.shape)}; "
                "expected (batch, features) with labels (batch,), or (batch, seq, features) "
                "with token labels (batch, seq)"
            )
        if self.ignore_index is not None:
            keep = labels != self.ignore_index
            if not bool(keep.all()):
                x, labels = x[keep], labels[keep]
        return x, labels
