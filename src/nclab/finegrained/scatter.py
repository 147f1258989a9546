"""How much of a superclass's feature spread tells its fine classes apart.

k-means with k = 2 cuts a superclass along its direction of largest spread. It finds
the fine split only when the fine classes' means carry a large share of that spread:
``fine_scatter_shares`` measures that share (the R² of the fine label) and, for
comparison, the share of the first principal direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nclab.core.errors import NCInputError
from nclab.core.validation import as_features, as_labels


@dataclass(frozen=True)
class ScatterShares:
    """Per superclass (index = superclass id).

    Attributes
    ----------
    fine_share : tuple of float
        Between-fine-class scatter / total scatter of the superclass's features
        (0: the fine means coincide; 1: every sample sits on its fine class's mean).
    top_pc_share : tuple of float
        Share of the total scatter along the first principal direction.
    """

    fine_share: tuple[float, ...]
    top_pc_share: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"fine_share": list(self.fine_share), "top_pc_share": list(self.top_pc_share)}


def fine_scatter_shares(features: Any, fine: Any, coarse: Any) -> ScatterShares:
    """The fine share and the top principal share of each superclass's scatter.

    Parameters
    ----------
    features : array or tensor of shape (N, d)
    fine, coarse : arrays of shape (N,), int
        Fine and superclass label of each sample; superclasses 0..K'-1 each hold samples.

    Returns
    -------
    ScatterShares
        NaN for a superclass whose features are all equal (no scatter to share).
    """
    x = as_features(features).cpu().double().numpy()
    fine = as_labels(fine, len(x), None).cpu().numpy()
    coarse = as_labels(coarse, len(x), None).cpu().numpy()
    shares, tops = [], []
    for s in range(int(coarse.max()) + 1 if len(coarse) else 0):
        rows = coarse == s
        if not rows.any():
            raise NCInputError(f"superclass {s} has no samples")
        centred = x[rows] - x[rows].mean(axis=0)
        labels = fine[rows]
        total = float((centred**2).sum())
        between = sum(float((labels == c).sum() * (centred[labels == c].mean(axis=0) ** 2).sum())
                      for c in np.unique(labels))
        top = float(np.linalg.svd(centred, compute_uv=False)[0] ** 2)
        shares.append(between / total if total > 0 else float("nan"))
        tops.append(top / total if total > 0 else float("nan"))
    return ScatterShares(tuple(shares), tuple(tops))
