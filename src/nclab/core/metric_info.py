"""What each collapse metric is, declared once: its section of the definitions, its paper,
which way is better and what it needs.

``METRICS`` is the registry the rest of nclab reads: ``core.metrics`` takes
``METRIC_NAMES`` and ``SPECTRAL_NAMES`` from it, the reports their columns, the
experiment loggers and the torchmetrics wrapper the directions, and docs/metrics.md
shows :func:`markdown_table` (a test keeps the page equal to it).
"""

from __future__ import annotations

from dataclasses import dataclass

#: A direction: "lower" or "higher" is better, or the number the metric's paper calls ideal.
Direction = str | float
LOWER, HIGHER = "lower", "higher"


@dataclass(frozen=True)
class MetricInfo:
    """One metric of ``CollapseMetrics``.

    Attributes
    ----------
    name : str
        Its field of ``CollapseMetrics`` and its name in JSON, logs and figures.
    label : str
        A few words on what it measures (figure labels, HTML tables).
    section : str
        Its section of docs/definitions.md ("§1", "§7" or "§8").
    paper : str
        Where it comes from ("" for a plain quantity such as the accuracy).
    direction : "lower", "higher" or float
        Which values are better: "lower" (a gap, >= 0, that is 0 at perfect collapse),
        "higher", or a number (the ideal value: closer is better).
    needs_classifier : bool
        Needs the classifier's weight W (None without it).
    needs_second_pass : bool
        Needs a second pass over the data with the final class means (``DecisionStats``).
    weights_only : bool
        Depends on W alone, not on the samples: the same value on every split.
    needs : str
        Any other input it needs ("" for none): the bias, out-of-distribution features,
        or ``spectral=True``.
    """

    name: str
    label: str
    section: str
    paper: str
    direction: Direction = LOWER
    needs_classifier: bool = False
    needs_second_pass: bool = False
    weights_only: bool = False
    needs: str = ""

    @property
    def is_gap(self) -> bool:
        """A non-negative gap that is 0 at perfect collapse (drawn on a log scale)."""
        return self.direction == LOWER

    @property
    def option(self) -> str:
        """The ``compute_metrics`` flag that asks for it ("" when always computed):
        "spectral" for §8, "margins" for §10."""
        return _OPTIONS.get(self.section, "")

    @property
    def spectral(self) -> bool:
        """One of the spectral metrics of §8 (computed only with ``spectral=True``)."""
        return self.option == "spectral"

    @property
    def higher_is_better(self) -> bool | None:
        """True, False, or None for a metric with an ideal value in between."""
        return {HIGHER: True, LOWER: False}.get(self.direction) if isinstance(
            self.direction, str) else None

    def better(self) -> str:
        """The direction in words: "lower", "higher" or "closer to 0"."""
        return self.direction if isinstance(self.direction, str) else (
            f"closer to {self.direction:g}")


def _info(name: str, label: str, section: str, paper: str, direction: Direction = LOWER,
          classifier: bool = False, *, needs_second_pass: bool = False,
          weights_only: bool = False, needs: str = "") -> tuple[str, MetricInfo]:
    return name, MetricInfo(name, label, section, paper, direction, classifier,
                            needs_second_pass, weights_only, needs)


_PAPYAN, _ZHU = "Papyan, Han & Donoho (2020)", "Zhu et al. (2021)"
_WU = "Wu & Papyan (2024)"
_SPECTRAL, _MARGINS = "spectral=True", "margins=True"
_JIANG = "Jiang et al. (2024)"
#: Sections whose metrics are computed on request, and the flag of ``compute_metrics``.
_OPTIONS = {"§8": "spectral", "§10": "margins"}

#: Every metric of ``CollapseMetrics``, in the order of definitions §1, §7 and §8.
METRICS: dict[str, MetricInfo] = dict([
    _info("nc1", "within-class variability Tr(Σ_W Σ_B⁺)/C", "§1", f"{_PAPYAN}, NC1"),
    _info("nc1_trace", "within-class variability Tr(Σ_W)/Tr(Σ_B)", "§1",
          "Kothapalli & Tirer (2024)"),
    _info("cdnv", "class-distance normalized variance", "§1", "Galanti et al. (2022)"),
    _info("equinorm_means", "spread of the class-mean norms", "§1", f"{_PAPYAN}, NC2"),
    _info("equinorm_weights", "spread of the classifier-row norms", "§1", f"{_PAPYAN}, NC2",
          classifier=True, weights_only=True),
    _info("equiangularity_means", "spread of the class-mean cosines", "§1",
          f"{_PAPYAN}, NC2"),
    _info("equiangularity_weights", "spread of the classifier-row cosines", "§1",
          f"{_PAPYAN}, NC2", classifier=True, weights_only=True),
    _info("maxangle_means", "class-mean cosines off −1/(C−1)", "§1", f"{_PAPYAN}, NC2"),
    _info("maxangle_weights", "classifier-row cosines off −1/(C−1)", "§1", f"{_PAPYAN}, NC2",
          classifier=True, weights_only=True),
    _info("etf_error_means", "class means off a simplex ETF", "§1", f"{_ZHU}, NC2"),
    _info("etf_error_weights", "classifier rows off a simplex ETF", "§1", f"{_ZHU}, NC2",
          classifier=True, weights_only=True),
    _info("self_duality", "classifier off the class means", "§1", f"{_PAPYAN}, NC3",
          classifier=True),
    _info("wh_duality", "W M~ᵀ off a simplex ETF", "§1", f"{_ZHU}, NC3", classifier=True),
    _info("ncc_mismatch", "classifier ≠ nearest class mean", "§1", f"{_PAPYAN}, NC4",
          classifier=True, needs_second_pass=True),
    _info("accuracy", "classifier accuracy", "§1", "", HIGHER, classifier=True,
          needs_second_pass=True),
    _info("gnc2_dist_means", "variance of the chords between unit means", "§7",
          f"Liu et al. (2023); {_WU}"),
    _info("gnc2_log_means", "variance of −log chords between unit means", "§7",
          f"Liu et al. (2023); {_WU}"),
    _info("unc3_duality_cv", "std/mean of the duality w_c·μ~_c", "§7", _WU, 0.0,
          classifier=True),
    _info("unc3_duality_var", "variance of the duality w_c·μ~_c", "§7", _WU,
          classifier=True),
    _info("nc5_ood_orthogonality", "|cos| of class means and the OOD mean", "§7",
          "Ammar et al. (2024), NECO", needs="out-of-distribution features"),
    _info("bias_relation", "‖W μ_G + b‖ relative to its parts", "§7", _ZHU, classifier=True,
          needs="the bias"),
    _info("rankme", "effective rank of the features", "§8", "Garrido et al. (2023)", HIGHER,
          needs=_SPECTRAL),
    _info("rankme_centred", "effective rank of the centred features", "§8",
          "Garrido et al. (2023)", HIGHER, needs=_SPECTRAL),
    _info("alpha_req", "decay exponent of the covariance spectrum", "§8",
          "Agrawal et al. (2022)", 1.0, needs=_SPECTRAL),
    _info("lidar", "effective rank of Σ_W^(−1/2) Σ_B Σ_W^(−1/2)", "§8", "Thilak et al. (2024)",
          HIGHER, needs=_SPECTRAL),
    _info("class_rankme_mean", "mean over classes of their centred features' effective rank",
          "§8", "Garrido et al. (2023)", HIGHER,
          needs=f"{_SPECTRAL}, per_class_scatter=True"),
    _info("ovr_margin_means", "smallest one-vs-rest distance of the unit centred means",
          "§10", _JIANG, HIGHER, needs=_MARGINS),
    _info("ovr_margin_means_lower", "certified lower bound of ovr_margin_means", "§10",
          _JIANG, HIGHER, needs=_MARGINS),
    _info("ovr_margin_weights", "smallest one-vs-rest distance of the unit classifier rows",
          "§10", _JIANG, HIGHER, classifier=True, weights_only=True, needs=_MARGINS),
    _info("ovr_margin_weights_lower", "certified lower bound of ovr_margin_weights", "§10",
          _JIANG, HIGHER, classifier=True, weights_only=True, needs=_MARGINS),
])


def names(option: str = "") -> tuple[str, ...]:
    """The names of the metrics asked for by ``option`` ("spectral", "margins"), or of
    those always computed (""), in order."""
    return tuple(name for name, info in METRICS.items() if info.option == option)


def info_for_column(column: str) -> MetricInfo | None:
    """The metric a logged column shows: ``train_nc1``, ``nc/nc1`` and ``nc1`` are nc1;
    None for a column that is no metric (``train_loss``, ``epoch``)."""
    if column in METRICS:
        return METRICS[column]
    found = [name for name in METRICS if column.endswith((f"_{name}", f"/{name}"))]
    return METRICS[max(found, key=len)] if found else None


def _yes(flag: bool) -> str:
    return "yes" if flag else ""


def markdown_table() -> str:
    """The table of docs/metrics.md, one row per entry of ``METRICS``."""
    lines = ["| name | § | better | classifier | second pass | also needs | paper |",
             "|---|---|---|---|---|---|---|"]
    for info in METRICS.values():
        lines.append(f"| `{info.name}` | {info.section} | {info.better()} | "
                     f"{_yes(info.needs_classifier)} | {_yes(info.needs_second_pass)} | "
                     f"{info.needs} | {info.paper} |")
    return "\n".join(lines) + "\n"
