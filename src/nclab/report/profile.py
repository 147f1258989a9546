"""The layer profile figure: NC1 and NC1_trace layer by layer, in depth order."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm

from nclab.capture import LayerProfile
from nclab.core.errors import NCInputError
from nclab.core.io import write_atomic
from nclab.report.style import (
    color,
    drawable,
    epoch_axis,
    figure_notes,
    figure_style,
    note_empty,
    panel_grid,
    plain,
    save_png,
)
from nclab.runs import RunLogWarning, is_number, shown_path

__all__ = ["CURVES", "profile_figure", "profile_section", "separation_figure",
           "separation_history_figure"]

PROFILE_JSON, PROFILE_PNG = "profile.json", "profile.png"
#: The figure of the law of data separation (log D_l against l), beside profile.png.
SEPARATION_PNG = "separation.png"
#: The same law at every logged epoch: D_l by epoch, decay ratio and Pearson r by epoch.
SEPARATION_EPOCHS_PNG = "separation_epochs.png"
#: (key in a profile row, legend label) of the curves drawn.
CURVES = (("nc1", "NC1: Tr(Σ_W Σ_B⁺)/C"), ("nc1_trace", "NC1_trace: Tr(Σ_W)/Tr(Σ_B)"))
#: At most this many layers are drawn (the tick labels of more could not be read).
MAX_LAYERS = 200


def _rows(profile: LayerProfile | Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The layers of the profile that are objects (others are left out, with a warning)."""
    document = profile.to_dict() if isinstance(profile, LayerProfile) else profile
    rows = document.get("layers") if isinstance(document, Mapping) else None
    if not isinstance(rows, list) or not rows:
        raise NCInputError("the profile has no layers to draw (expected a non-empty list "
                           "'layers' of objects)")
    kept = [row for row in rows if isinstance(row, Mapping)][:MAX_LAYERS]
    if len(kept) < len(rows):
        warnings.warn(f"{len(rows) - len(kept)} of the {len(rows)} layers are not objects, "
                      f"or beyond the first {MAX_LAYERS}: left out", RunLogWarning, stacklevel=3)
    if not kept:
        raise NCInputError("the profile has no layers to draw (none of its 'layers' is an "
                           "object)")
    return kept


def _label(row: Mapping[str, Any], last: bool) -> str:
    point = "classifier input" if last else row.get("point", "output")
    return f"{plain(row.get('name', '?'))}\n{plain(point)}"


def _values(rows: list[Mapping[str, Any]], key: str) -> np.ndarray:
    """Column ``key`` of the layers as floats; NaN where it is not a finite number."""
    return np.asarray([row.get(key) if is_number(row.get(key)) else np.nan for row in rows],
                      dtype=float)


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
    with figure_style(), figure_notes(path):
        fig, (ax,) = panel_grid(1, size=profile_size(profile))
        draw_profile(ax, profile, title)
        save_png(fig, path)


def profile_size(profile: LayerProfile | Mapping[str, Any]) -> tuple[float, float]:
    """(width, height) in inches of the profile figure: wider for more layers."""
    return max(6.0, 0.6 * len(_rows(profile)) + 2.5), 4.2


def draw_profile(ax: Axes, profile: LayerProfile | Mapping[str, Any],
                 title: str | None = None) -> None:
    """Draw NC1 and NC1_trace against depth (log y axis) into ``ax`` (the profile as in
    :func:`profile_figure`); layers without a drawable value are left out, with a
    :class:`RunLogWarning` that says how many."""
    rows = _rows(profile)
    depth = np.arange(1, len(rows) + 1)
    crowded = len(rows) > 6
    for i, (key, label) in enumerate(CURVES):
        values = _values(rows, key)
        keep = drawable(values, log=True)
        if keep.any():
            ax.plot(depth[keep], values[keep], marker="o", color=color(i), label=label)
        if (~keep).any():
            warnings.warn(f"{key}: {int((~keep).sum())} of {len(rows)} layers have no "
                          "positive number within 1e±100 to draw", RunLogWarning,
                          stacklevel=2)
    if ax.get_lines():
        ax.set_yscale("log")
        ax.legend()
    else:
        note_empty(ax, "no value to draw on a log scale")
    labels = [_label(row, x == len(rows)) for x, row in zip(depth, rows, strict=True)]
    ax.set_xticks(depth, labels, rotation=35 if crowded else 0,
                  ha="right" if crowded else "center", fontsize=8)
    ax.set_xlabel("layer, in the order of the forward pass")
    ax.set_ylabel("NC1 and NC1_trace")
    ax.set_title(plain(title) if title else "collapse layer by layer")


def profile_section(run_dir: str | os.PathLike, out: str | os.PathLike) -> str:
    """The HTML of the run's layer profile and its law of data separation (written by
    ``nclab profile`` into the run directory) for its report in ``out``; empty when the
    run has none."""
    shown = [(name, alt) for name, alt in _PROFILE_FIGURES
             if _copied(Path(run_dir) / name, Path(out))]
    if not shown or shown[0][0] != PROFILE_PNG:
        return ""
    images = "".join(f"<img src='{name}' alt='{alt}' style='max-width:700px'>"
                     for name, alt in shown)
    return f"<h2>Collapse layer by layer</h2>{images}"


#: The figures ``nclab profile`` writes, in the order the report shows them.
_PROFILE_FIGURES = (
    (PROFILE_PNG, "NC1 and NC1_trace per layer"),
    (SEPARATION_PNG, "law of data separation: log D_l against the layer"),
    (SEPARATION_EPOCHS_PNG, "law of data separation at every logged epoch"),
)


def _copied(source: Path, out: Path) -> bool:
    """Whether the figure ``source`` exists and is (now) in ``out`` beside the report."""
    if not source.is_file():
        return False
    if out.resolve() != source.parent.resolve():
        try:
            data = source.read_bytes()
        except OSError as exc:
            warnings.warn(f"{shown_path(source)}: cannot read ({exc.strerror}): left out",
                          RunLogWarning, stacklevel=3)
            return False
        write_atomic(out / source.name, data)
    return True


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


def separation_history_figure(history: Mapping[str, Any], path: str | os.PathLike,
                              title: str | None = None, lr_drops: Sequence[int] = ()) -> None:
    """Write a PNG of the law of data separation at every logged epoch: D_l against l,
    one line per epoch coloured by the epoch; the decay ratio and the Pearson r of the
    fit against the epoch.

    Parameters
    ----------
    history : dict
        ``separation_by_epoch`` of profile.json (``nclab.studies.layer_profile``):
        ``{"epochs": [{"epoch", "decay_ratio", "pearson_r", "D", ...} or {"epoch",
        "error"}, ...]}``; the epochs without a fit are left out.
    path : path
    title : str, optional
    lr_drops : sequence of int
        Epochs after which the learning rate dropped, marked on the epoch axes.
    """
    fitted = [entry for entry in history["epochs"] if "error" not in entry]
    with figure_style():
        fig, axes = panel_grid(3, ncols=3, size=(4.4, 3.6))
        if fitted:
            _draw_layer_lines(fig, axes[0], fitted)
            _draw_by_epoch(axes[1], fitted, "decay_ratio", "decay ratio per layer", 1.0, lr_drops)
            _draw_by_epoch(axes[2], fitted, "pearson_r", "Pearson r of (l, log D_l)", -1.0,
                           lr_drops)
        else:
            for ax in axes:
                note_empty(ax, "no logged epoch has a fit")
        fig.suptitle(plain(title) if title else "law of data separation during training")
        save_png(fig, path)


def _draw_layer_lines(fig: Any, ax: Axes, fitted: list[Mapping[str, Any]]) -> None:
    """D_l against l, one line per epoch, coloured by the epoch on a log scale."""
    epochs = [entry["epoch"] for entry in fitted]
    norm = LogNorm(vmin=min(epochs), vmax=max(max(epochs), min(epochs) * 1.01))
    cmap = colormaps["viridis"]
    for entry in fitted:
        values = np.asarray(entry["D"], dtype=float)
        keep = drawable(values, log=True)
        layers = np.arange(1, len(values) + 1)
        ax.plot(layers[keep], values[keep], marker="o", color=cmap(norm(entry["epoch"])))
    ax.set_yscale("log")
    ax.set_xlabel("layer l")
    ax.set_ylabel("D_l = Tr(SS_W SS_B⁺)")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="epoch")


def _draw_by_epoch(ax: Axes, fitted: list[Mapping[str, Any]], key: str, label: str,
                   reference: float, lr_drops: Sequence[int]) -> None:
    """The fit's ``key`` against the epoch, with a dotted line at ``reference`` and the
    learning-rate drops."""
    pairs = [(entry["epoch"], entry[key]) for entry in fitted if is_number(entry.get(key))]
    if pairs:
        epochs, values = zip(*pairs, strict=True)
        ax.plot(epochs, values, marker="o", color=color(0))
    ax.axhline(reference, color="0.5", linestyle=":", linewidth=1.0)
    epoch_axis(ax, lr_drops)
    ax.set_ylabel(label)
