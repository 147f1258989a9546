"""The layer profile figure: NC1 and NC1_trace layer by layer, in depth order."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nclab.capture import LayerProfile
from nclab.core.errors import NCInputError
from nclab.core.io import write_atomic
from nclab.report.style import color, figure_style, panel_grid, save_png

PROFILE_JSON, PROFILE_PNG = "profile.json", "profile.png"
#: The figure of the law of data separation (log D_l against l), beside profile.png.
SEPARATION_PNG = "separation.png"
#: (key in a profile row, legend label) of the curves drawn.
CURVES = (("nc1", "NC1: Tr(Σ_W Σ_B⁺)/C"), ("nc1_trace", "NC1_trace: Tr(Σ_W)/Tr(Σ_B)"))


def _rows(profile: LayerProfile | Mapping[str, Any]) -> list[dict[str, Any]]:
    document = profile.to_dict() if isinstance(profile, LayerProfile) else profile
    rows = document.get("layers") if isinstance(document, Mapping) else None
    if not rows:
        raise NCInputError("the profile has no layers to draw")
    return list(rows)


def _label(row: Mapping[str, Any], last: bool) -> str:
    point = "classifier input" if last else str(row.get("point", "output"))
    return f"{row['name']}\n{point}"


def profile_figure(profile: LayerProfile | Mapping[str, Any], path: str | os.PathLike,
                   title: str | None = None) -> None:
    """Write a PNG of NC1 and NC1_trace against depth (log y axis).

    Parameters
    ----------
    profile : LayerProfile or dict
        A :class:`~nclab.capture.LayerProfile` or its ``to_dict()`` (as in profile.json):
        ``{"layers": [{"name", "point", "nc1", "nc1_trace", ...}, ...]}`` in depth order,
        the classifier's input last.
    path : path
    title : str, optional
    """
    rows = _rows(profile)
    depth = list(range(1, len(rows) + 1))
    crowded = len(rows) > 6
    with figure_style():
        fig, (ax,) = panel_grid(1, size=(max(6.0, 0.6 * len(rows) + 2.5), 4.2))
        for i, (key, label) in enumerate(CURVES):
            points = [(x, row.get(key)) for x, row in zip(depth, rows, strict=True)]
            kept = [(x, v) for x, v in points
                    if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]
            if kept:
                ax.plot(*zip(*kept, strict=True), marker="o", color=color(i), label=label)
        ax.set_yscale("log")
        labels = [_label(row, x == len(rows)) for x, row in zip(depth, rows, strict=True)]
        ax.set_xticks(depth, labels, rotation=35 if crowded else 0,
                      ha="right" if crowded else "center", fontsize=8)
        ax.set_xlabel("layer, in the order of the forward pass")
        ax.set_ylabel("NC1 and NC1_trace")
        ax.set_title(title or "collapse layer by layer")
        ax.legend()
        save_png(fig, path)


def profile_section(run_dir: str | os.PathLike, out: str | os.PathLike) -> str:
    """The HTML of the run's layer profile (written by ``nclab profile`` into the run
    directory) for its report in ``out``; empty when the run has none."""
    source = Path(run_dir) / PROFILE_PNG
    if not source.is_file():
        return ""
    if Path(out).resolve() != Path(run_dir).resolve():
        write_atomic(Path(out) / PROFILE_PNG, source.read_bytes())
    return (f"<h2>Collapse layer by layer</h2><img src='{PROFILE_PNG}' "
            "alt='NC1 and NC1_trace per layer' style='max-width:700px'>")


def separation_figure(fit: Mapping[str, Any], path: str | os.PathLike,
                      title: str | None = None) -> None:
    """Write a PNG of log D_l against the layer index l with the fitted line (He & Su's
    law of data separation; ``fit`` as returned by
    :func:`nclab.core.separation.separation_fit`)."""
    values = list(fit["D"])
    layers = list(range(1, len(values) + 1))
    line = [math.exp(fit["intercept"] + fit["slope"] * x) for x in layers]
    with figure_style():
        fig, (ax,) = panel_grid(1, size=(6.0, 4.2))
        ax.plot(layers, values, marker="o", linestyle="none", color=color(0),
                label="D_l = Tr(SS_W SS_B⁺)")
        ax.plot(layers, line, color=color(1),
                label=f"fit: ratio {fit['decay_ratio']:.3g} per layer, r = {fit['pearson_r']:.3f}")
        ax.set_yscale("log")
        ax.set_xticks(layers)
        ax.set_xlabel("layer l, in the order of the forward pass")
        ax.set_ylabel("D_l")
        ax.set_title(title or "law of data separation")
        ax.legend()
        save_png(fig, path)
