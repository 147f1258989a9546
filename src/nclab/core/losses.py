"""The classification losses of the trainer and of the UFMs, by their text (``loss=``).

- ``ce``: cross-entropy;
- ``mse``: half the squared error to the one-hot target (Han et al., 2022);
- ``ls:EPS``: cross-entropy against the label-smoothed target (1 - EPS) e_y + EPS/C 1
  (Szegedy et al., 2016; PyTorch's ``label_smoothing``), EPS in [0, 1);
- ``focal:GAMMA``: -(1 - p_y)^GAMMA log p_y (Lin et al., 2017, without the class weight
  alpha), GAMMA >= 0.

``ls:0`` and ``focal:0`` are the cross-entropy. Each loss is SUMMED over the batch (the
trainer divides by the batch size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nclab.core.errors import NCInputError

#: The spellings, for messages.
SYNTAX = "ce, mse, ls:EPS (label smoothing, EPS in [0, 1)) or focal:GAMMA (GAMMA >= 0)"


@dataclass(frozen=True)
class ClassificationLoss:
    """A loss of classification outputs (N, C) against labels (N,).

    Attributes
    ----------
    name : {"ce", "mse", "ls", "focal"}
    parameter : float or None
        EPS of ``ls``, GAMMA of ``focal``.
    """

    name: str
    parameter: float | None = None

    @classmethod
    def parse(cls, text: str, option: str = "loss") -> ClassificationLoss:
        """``"ce"``, ``"mse"``, ``"ls:0.1"``, ``"focal:2"``; one NCInputError line naming
        ``option`` otherwise."""
        name, colon, value = str(text).strip().partition(":")
        if name in ("ce", "mse") and not colon:
            return cls(name)
        if name not in ("ls", "focal") or not colon:
            raise NCInputError(f"{option}: unknown loss '{text}'; choose from: {SYNTAX}")
        try:
            number = float(value)
        except ValueError:
            raise NCInputError(f"{option}: {name}: takes a number; got '{value}'") from None
        if name == "ls" and not 0 <= number < 1:
            raise NCInputError(f"{option}: the label smoothing EPS of ls:EPS must lie in "
                               f"[0, 1); got '{value}'")
        if name == "focal" and not (math.isfinite(number) and number >= 0):
            raise NCInputError(f"{option}: GAMMA of focal:GAMMA must be a finite number >= 0; "
                               f"got '{value}'")
        return cls(name, number)

    @property
    def text(self) -> str:
        """The canonical spelling: ``ce``, ``ls:0.1``, ``focal:2``."""
        return self.name if self.parameter is None else f"{self.name}:{self.parameter:g}"

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of ``outputs`` (N, C) against ``targets`` (N,), summed over the batch."""
        if self.name == "mse":
            one_hot = F.one_hot(targets, outputs.shape[1]).to(outputs.dtype)
            return 0.5 * (outputs - one_hot).square().sum()
        if self.name == "focal" and self.parameter:
            log_p = torch.log_softmax(outputs, dim=1).gather(1, targets[:, None]).squeeze(1)
            # 1 - p_y from log p_y without cancellation; clamped above 0 so that the
            # gradient of the power stays finite where p_y rounds to 1
            rest = (-torch.expm1(log_p)).clamp(min=torch.finfo(log_p.dtype).tiny)
            return -(rest.pow(self.parameter) * log_p).sum()
        smoothing = self.parameter if self.name == "ls" and self.parameter else 0.0
        return F.cross_entropy(outputs, targets, reduction="sum", label_smoothing=smoothing)
