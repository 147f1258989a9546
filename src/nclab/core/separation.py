"""The law of data separation (He & Su, PNAS 2023), definitions §16.

He & Su measure the separation of the classes at layer l by D_l = Tr(SS_W SS_B^+), with
SS_W the within-class and SS_B the between-class covariance of the layer's features, and
find that, in a well-trained network, log D_l falls linearly with l: D_l ≈ rho^l D_0 with
one decay ratio rho for every layer. With nclab's Sigma_W (1/N) and Sigma_B (1/C, plain
average of the class means), SS_W and SS_B are normalized the same way, so
D_l = C · nc1_l (nc1 of definitions §1): the constant C shifts the intercept of the fit,
not its slope.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from nclab.core.errors import NCInputError

#: The fit needs this many layers: with two, a line passes through both (r = ±1).
MIN_LAYERS = 3


def separation_fit(values: Sequence[float], num_classes: int = 1) -> dict[str, Any]:
    """Least-squares fit of log D_l = a + l log(rho) over the layers l = 1..L.

    Parameters
    ----------
    values : sequence of float, length L >= 3
        nc1 of each layer in depth order (or D_l itself with ``num_classes=1``); each
        finite and > 0.
    num_classes : int
        C: D_l = C · nc1_l.

    Returns
    -------
    dict
        ``decay_ratio`` rho = exp(slope), ``slope`` and ``intercept`` of the natural log,
        ``pearson_r`` of (l, log D_l) (−1: a perfect geometric decay), ``ratios``
        D_{l+1}/D_l of consecutive layers and ``D`` the values fitted.
    """
    d = np.asarray(list(values), dtype=np.float64) * num_classes
    if d.ndim != 1 or len(d) < MIN_LAYERS:
        raise NCInputError(f"the law of data separation needs at least {MIN_LAYERS} layers; "
                           f"got {d.size}")
    if not np.isfinite(d).all() or (d <= 0).any():
        bad = int(np.flatnonzero(~np.isfinite(d) | (d <= 0))[0])
        raise NCInputError(f"layer {bad + 1}: D = {d[bad]!r} is not finite and > 0, so log D "
                           "is undefined")
    layer = np.arange(1, len(d) + 1, dtype=np.float64)
    log_d = np.log(d)
    slope, intercept = np.polyfit(layer, log_d, 1)
    spread = log_d.std()
    r = float(np.corrcoef(layer, log_d)[0, 1]) if spread > 0 else math.nan
    return {"decay_ratio": float(math.exp(slope)), "slope": float(slope),
            "intercept": float(intercept), "pearson_r": r,
            "ratios": (d[1:] / d[:-1]).tolist(), "D": d.tolist()}


def separation_history(epochs: Sequence[int], values: Sequence[Sequence[float | None]],
                       num_classes: int = 1) -> list[dict[str, Any]]:
    """:func:`separation_fit` at each logged epoch.

    Parameters
    ----------
    epochs : sequence of int, length E
    values : sequence of E sequences of float or None
        nc1 of each layer at each epoch, in depth order.
    num_classes : int
        C: D_l = C · nc1_l.

    Returns
    -------
    list of E dicts
        ``{"epoch", **separation_fit(...)}``; an epoch whose fit is undefined (a layer
        with nc1 None, 0 or not finite, fewer than ``MIN_LAYERS`` layers) gets
        ``{"epoch", "error"}`` with the reason in one line instead.
    """
    if len(epochs) != len(values):
        raise NCInputError(f"{len(epochs)} epochs but {len(values)} lists of layer values")
    history = []
    for epoch, layers in zip(epochs, values, strict=True):
        try:
            history.append({"epoch": epoch, **layer_fit(layers, num_classes)})
        except NCInputError as exc:
            history.append({"epoch": epoch, "error": str(exc)})
    return history


def layer_fit(values: Sequence[float | None], num_classes: int = 1) -> dict[str, Any]:
    """:func:`separation_fit` of per-layer nc1 values that may hold None (a layer whose
    nc1 is undefined): one NCInputError line naming the first such layer."""
    missing = [i for i, value in enumerate(values) if value is None]
    if missing:
        raise NCInputError(f"layer {missing[0] + 1} has no nc1")
    return separation_fit([float(value) for value in values if value is not None],
                          num_classes)
