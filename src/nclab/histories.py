"""Post-processing of logged training rows, shared by training and reports.

The regression trainer logs, per epoch, the Gram W W^T of the head and the target
covariance (``head_gram``, ``target_cov``); NRC3 over the run is computed from those
rows at one gamma, chosen on the last row (definitions §5).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nclab.core.errors import NCInputError
from nclab.core.regression_metrics import nrc3_from_gram

#: Points of the NRC3(gamma) curve of the final W kept in the summary.
GAMMA_CURVE_POINTS = 64


def nrc3_history(rows: list[dict[str, Any]], gamma: float | None = None,
                 curve_points: int = GAMMA_CURVE_POINTS) -> dict[str, Any]:
    """NRC3 of each logged row at one gamma, searched on the last row's W (definitions §5).

    Parameters
    ----------
    rows : list of dict
        Logged rows with ``epoch``, ``head_gram`` and ``target_cov``.
    gamma : float, optional
        Use this gamma instead of the search on the last row.
    curve_points : int
        Points of the curve NRC3(gamma) of the last row, log-spaced on (0, lambda_min).

    Returns
    -------
    dict
        ``gamma``, ``gamma_epoch`` (the row it was searched on), ``epoch`` and ``nrc3``
        (lists, one per row), ``curve`` ({"gamma", "nrc3"} of the last row), and
        ``warning`` instead of the values when NRC3 does not exist (n = 1, singular
        Sigma, W = 0).
    """
    rows = [row for row in rows if row.get("head_gram") is not None]
    if not rows:
        return {"warning": "no logged row holds head_gram: run the 'nrc' evaluator"}
    last = rows[-1]
    if len(last["head_gram"]) < 2:
        return {"warning": "nrc3 is not reported for n = 1 (it is 0 trivially)"}
    sigma = np.asarray(last["target_cov"])
    try:
        chosen = nrc3_from_gram(sigma, last["head_gram"],
                                "search" if gamma is None else gamma)
        values = [nrc3_from_gram(sigma, row["head_gram"], chosen["gamma"])["nrc3"]
                  if np.any(row["head_gram"]) else None for row in rows]
    except NCInputError as exc:
        return {"warning": f"nrc3 not computed: {exc}"}
    lam_min = chosen["lambda_min"]
    # from below the chosen gamma (it can sit near 0) up to lambda_min
    grid = lam_min * np.geomspace(min(1e-4, 0.5 * chosen["gamma"] / lam_min), 1 - 1e-3,
                                  curve_points)
    curve = nrc3_from_gram(sigma, last["head_gram"], grid)
    return {"gamma": chosen["gamma"], "gamma_epoch": last["epoch"],
            "gamma_searched": gamma is None, "lambda_min": lam_min,
            "epoch": [row["epoch"] for row in rows], "nrc3": values,
            "curve": {"gamma": curve["gamma"], "nrc3": curve["nrc3"]}}


def nrc_drops(rows: list[dict[str, Any]], nrc3: dict[str, Any],
              split: str = "train") -> dict[str, float | None]:
    """First logged value / last logged value of NRC1, NRC2 (``split``; as defined and centred)
    and NRC3."""
    first, last = rows[0], rows[-1]
    pairs = {name: (first.get(f"{split}_{name}"), last.get(f"{split}_{name}"))
             for name in ("nrc1", "nrc2", "nrc1_centred", "nrc2_centred")}
    values = nrc3.get("nrc3") or [None]
    pairs["nrc3"] = (values[0], values[-1])
    return {name: a / b if a is not None and b else None for name, (a, b) in pairs.items()}
