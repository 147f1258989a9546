"""What the scores need from the in-distribution data, read from one ``CollapseStats``.

Everything comes from the streamed statistics, in their scaled units (the features times
a power of two, so no square over- or underflows): the class counts n_c and means mu_c,
the within-class scatter S_W, and from those

    mu    = sum_c n_c mu_c / N                                  (the sample mean)
    Sig_W = S_W / N                                             (shared within-class covariance)
    Sig_T = (S_W + sum_c n_c (mu_c - mu)(mu_c - mu)^T) / N      (total covariance)

so no feature is stored and no second pass over the fit set is needed.
:class:`OODFit` holds what the score functions of :mod:`nclab.ood.scores` take and
scores batches of features (:meth:`OODFit.score`, :class:`ScoreStream`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.stats import CollapseStats
from nclab.core.validation import as_classifier, as_features, positive_int
from nclab.ood import scores

#: Every score, in the order results list them.
METHODS = ("msp", "energy", "mahalanobis", "neco", "neco_maxlogit", "nci")
#: The scores computed from the logits W h + b: they need the classifier.
NEEDS_LOGITS = ("msp", "energy", "neco_maxlogit", "nci")
#: NECO's default k: the fewest principal axes that hold this share of the ID variance.
NECO_VARIANCE = 0.9
#: NCI's default weight of the L1-norm filter (OpenOOD's configuration of the method).
NCI_ALPHA = 1e-4
#: Rows x classes of one scoring chunk (bounds the n x C temporaries: 128 MiB in float64).
_CHUNK_ENTRIES = 1 << 24
_EPS = float(np.finfo(np.float64).eps)


def choose_methods(methods: Sequence[str] | None) -> tuple[str, ...] | None:
    """The requested score names, checked (None: every score the inputs allow)."""
    if methods is None:
        return None
    if isinstance(methods, str):
        methods = [methods]
    names = list(dict.fromkeys(methods))
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        what = f"unknown OOD method {', '.join(map(repr, unknown))}" if unknown \
            else "no OOD method given"
        raise NCInputError(f"{what}; choose from {', '.join(METHODS)}")
    return tuple(name for name in METHODS if name in names)


def check_alpha(alpha: Any) -> float:
    """``alpha`` as a finite float >= 0 (NCI's filter weight)."""
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, (int, float, np.number)) \
            or not math.isfinite(alpha) or alpha < 0:
        raise NCInputError(f"nci_alpha must be a finite number >= 0; got {alpha!r}")
    return float(alpha)


def check_neco_k(neco_k: Any, dim: int) -> int | None:
    """``neco_k`` as an int in 1..d, or None (choose by explained variance)."""
    if neco_k is None:
        return None
    k = positive_int(neco_k, "neco_k")
    if k > dim:
        raise NCInputError(f"neco_k must be at most the feature dimension d = {dim}; got {k}")
    return k


@dataclass
class Moments:
    """The fit set's moments in the statistics' scaled units (see the module notes)."""

    num_samples: int
    scale: float
    means: np.ndarray  # (C_present, d)
    mean: np.ndarray  # (d,)
    within: np.ndarray  # (d, d)
    total: np.ndarray  # (d, d)

    @classmethod
    def from_stats(cls, stats: CollapseStats) -> Moments:
        if stats.dim is None or stats.num_samples == 0:
            raise NCInputError("the in-distribution fit set has no samples")
        if stats.num_samples < 2:
            raise NCInputError("the in-distribution fit set has a single sample: its "
                               "covariance is undefined")
        present = stats.present
        counts = stats.counts[present].astype(np.float64)
        means = stats.scaled_means()[present]
        total_count = float(counts.sum())
        mean = counts @ means / total_count
        centred = means - mean
        within = stats.scaled_scatter() / total_count
        between = (centred * counts[:, None]).T @ centred / total_count
        total = within + between
        return cls(stats.num_samples, stats.scale, means, mean, within, (total + total.T) / 2)


def _reasons(moments: Moments, has_weight: bool) -> dict[str, str]:
    """Method -> why it cannot be computed from these inputs (absent: it can)."""
    reasons = {}
    if not has_weight:
        reasons.update(dict.fromkeys(NEEDS_LOGITS, "needs the classifier (weight) for the "
                                                   "logits"))
    if not np.trace(moments.within) > 0:
        reasons["mahalanobis"] = ("needs within-class variance, and every class of the fit "
                                  "set is a single point")
    if not np.trace(moments.total) > 0:
        for name in ("neco", "neco_maxlogit"):
            reasons[name] = "needs variance in the fit set, and all its features are equal"
    return reasons


def _select(requested: tuple[str, ...] | None,
            reasons: dict[str, str]) -> tuple[tuple[str, ...], list[str]]:
    """The methods to compute and the warnings: a requested method that cannot run is
    an error; by default such methods are left out with a warning."""
    if requested is not None:
        for name in requested:
            if name in reasons:
                raise NCInputError(f"OOD method '{name}' {reasons[name]}")
        return requested, []
    chosen = tuple(name for name in METHODS if name not in reasons)
    by_reason: dict[str, list[str]] = {}
    for name in METHODS:
        if name in reasons:
            by_reason.setdefault(reasons[name], []).append(name)
    notes = [f"{', '.join(names)} {'need' if len(names) > 1 else 'needs'}"
             f"{reason.removeprefix('needs')}" for reason, names in by_reason.items()]
    if not chosen:
        raise NCInputError(f"no OOD method can be computed: {'; '.join(notes)}")
    return chosen, [f"left out: {note}" for note in notes]


def pseudo_inverse_root(covariance: np.ndarray) -> np.ndarray:
    """L (d, r) with L L^T the pseudo-inverse of ``covariance``: eigenvalues at most
    d * eps * (the largest) count as zero (scipy's ``pinvh`` cutoff, which
    scikit-learn's ``EmpiricalCovariance.precision_`` uses)."""
    values, vectors = np.linalg.eigh(covariance)
    cutoff = covariance.shape[0] * _EPS * values.max()
    keep = values > cutoff
    return vectors[:, keep] / np.sqrt(values[keep])


def standard_deviations(moments: Moments) -> np.ndarray:
    """sqrt(diag Sig_T), with scikit-learn StandardScaler's rule for a constant
    coordinate: var <= (N |mean| eps)^2 divides by 1 in the features' units."""
    variance = np.clip(np.diag(moments.total), 0.0, None)
    constant = variance <= (moments.num_samples * np.abs(moments.mean) * _EPS) ** 2
    # 1 in the features' units is ``scale`` in the statistics' scaled units
    return np.where(constant, moments.scale, np.sqrt(variance))


def principal_axes(moments: Moments, std: np.ndarray,
                   neco_k: int | None) -> tuple[np.ndarray, float]:
    """(V_k (d, k), share of the variance they hold) of the covariance of
    z = (h - mu) / std; k is ``neco_k`` or the fewest axes holding NECO_VARIANCE."""
    covariance = moments.total / np.outer(std, std)
    values, vectors = np.linalg.eigh(covariance)
    values, vectors = np.clip(values[::-1], 0.0, None), vectors[:, ::-1]
    share = np.cumsum(values) / values.sum()
    if neco_k is None:  # the 1e-9 absorbs rounding at an exact share (9 of 10 equal axes)
        neco_k = int(np.searchsorted(share, NECO_VARIANCE * (1 - 1e-9))) + 1
    k = min(neco_k, len(values))
    return np.ascontiguousarray(vectors[:, :k]), float(min(share[k - 1], 1.0))


@dataclass
class OODFit:
    """The in-distribution quantities of the scores, fitted once; scores any batch.

    Attributes
    ----------
    methods : tuple of str
        The scores computed, in the order of ``METHODS``.
    scale : float
        Features are multiplied by it (a power of two, exact) before the Mahalanobis and
        NECO scores, whose fitted arrays are in those units.
    means : ndarray of shape (C_present, d)
        Class means of the classes present in the fit set (scaled).
    whitener : ndarray of shape (d, r) or None
        L with L L^T = pinv(Sig_W) (scaled), for Mahalanobis.
    mean : ndarray of shape (d,)
        The sample mean of the fit set (scaled).
    std : ndarray of shape (d,) or None
        NECO's per-coordinate divisors (scaled): the standard deviations, or ``scale``
        everywhere without standardization.
    components : ndarray of shape (d, k) or None
        NECO's principal axes.
    explained : float or None
        The share of the (standardized) ID variance that NECO's k axes hold.
    weight, bias : ndarray of shapes (C, d) and (C,), or None
        The classifier, in the features' units.
    nci_alpha : float
    warnings : tuple of str
        Methods left out, NECO with k = d.
    """

    methods: tuple[str, ...]
    scale: float
    means: np.ndarray
    whitener: np.ndarray | None
    mean: np.ndarray
    std: np.ndarray | None
    components: np.ndarray | None
    explained: float | None
    weight: np.ndarray | None
    bias: np.ndarray | None
    nci_alpha: float
    warnings: tuple[str, ...] = ()
    _device_cache: dict[Any, dict[str, torch.Tensor]] = field(
        default_factory=dict, repr=False, compare=False)

    @property
    def k(self) -> int | None:
        """NECO's subspace dimension (None when NECO is not computed)."""
        return None if self.components is None else int(self.components.shape[1])

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def from_stats(cls, stats: CollapseStats, weight: Any = None, bias: Any = None, *,
                   methods: Sequence[str] | None = None, neco_k: int | None = None,
                   nci_alpha: float = NCI_ALPHA, neco_standardize: bool = True) -> OODFit:
        """Fit every requested score (None: all that the inputs allow) from ``stats``.

        Parameters
        ----------
        stats : CollapseStats
            Of the in-distribution fit set (usually its training features).
        weight : array of shape (C, d), optional
            The classifier; the logit scores need it.
        bias : array of shape (C,), optional
        methods : sequence of str, optional
            Names from ``METHODS``; a requested method the inputs cannot give is an
            error, while the default leaves it out with a warning.
        neco_k : int, optional
            NECO's subspace dimension; default: the fewest principal axes that hold 90%
            of the fit set's (standardized) variance.
        nci_alpha : float
            NCI's filter weight.
        neco_standardize : bool
            Standardize each coordinate before NECO's PCA, as the authors' code does.
        """
        requested = choose_methods(methods)
        alpha = check_alpha(nci_alpha)
        moments = Moments.from_stats(stats)
        k = check_neco_k(neco_k, moments.mean.shape[0])
        W, b = as_classifier(weight, bias, stats.num_classes, moments.mean.shape[0])
        chosen, notes = _select(requested, _reasons(moments, W is not None))
        whitener = pseudo_inverse_root(moments.within) if "mahalanobis" in chosen else None
        std = components = explained = None
        if {"neco", "neco_maxlogit"} & set(chosen):
            std = (standard_deviations(moments) if neco_standardize
                   else np.full(moments.mean.shape, moments.scale))
            components, explained = principal_axes(moments, std, k)
            if components.shape[1] == components.shape[0]:
                notes.append("NECO with k = d: every feature lies in the subspace, so the "
                             "NECO score is 1 for all")
        return cls(chosen, moments.scale, moments.means, whitener, moments.mean, std,
                   components, explained, W, b, alpha, tuple(notes))

    # ------------------------------------------------------------------ scoring
    def _constants(self, device: torch.device) -> dict[str, torch.Tensor]:
        if device not in self._device_cache:
            arrays = {"means": self.means, "mean": self.mean, "whitener": self.whitener,
                      "std": self.std, "components": self.components,
                      "weight": self.weight, "bias": self.bias}
            if self.weight is not None:
                arrays["bias"] = self.bias if self.bias is not None \
                    else np.zeros(self.weight.shape[0])
                arrays["raw_mean"] = self.mean / self.scale
            self._device_cache[device] = {
                name: torch.from_numpy(np.ascontiguousarray(value)).to(device)
                for name, value in arrays.items() if value is not None}
        return self._device_cache[device]

    def score(self, features: Any, name: str = "features") -> dict[str, np.ndarray]:
        """Every method's score of each row of ``features`` (n, d), as float64 arrays."""
        x = as_features(features, name).to(torch.float64)
        if x.shape[1] != self.dim:
            raise NCInputError(f"{name} has feature dimension {x.shape[1]}; the "
                               f"in-distribution features have {self.dim}")
        width = max(len(self.means), 0 if self.weight is None else self.weight.shape[0], 1)
        rows = max(1, _CHUNK_ENTRIES // width)
        parts = [self._score_chunk(x[i:i + rows]) for i in range(0, x.shape[0], rows)]
        return {method: np.concatenate([part[method] for part in parts]) if parts
                else np.zeros(0) for method in self.methods}

    def _score_chunk(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        c = self._constants(x.device)
        scaled = x * self.scale
        logits = x @ c["weight"].T + c["bias"] if "weight" in c else None
        ratio = (scores.neco(scaled, c["mean"], c["std"], c["components"])
                 if "components" in c else None)
        made = {
            "msp": lambda: scores.max_softmax(logits),
            "energy": lambda: scores.energy(logits),
            "mahalanobis": lambda: scores.mahalanobis(scaled, c["means"], c["whitener"]),
            "neco": lambda: ratio,
            "neco_maxlogit": lambda: ratio * scores.max_logit(logits),
            "nci": lambda: scores.nci(x, logits, c["weight"], c["raw_mean"], self.nci_alpha),
        }
        return {method: made[method]().cpu().numpy() for method in self.methods}

    def stream(self, name: str = "features") -> ScoreStream:
        """A :class:`ScoreStream` that scores batch after batch with this fit."""
        return ScoreStream(self, name)


class ScoreStream:
    """Per-sample scores of a stream of batches (a sink of :func:`nclab.capture.collect`:
    ``update(features, labels)``, the labels ignored).

    Examples
    --------
    >>> import numpy as np
    >>> from nclab import CollapseStats
    >>> rng = np.random.default_rng(0)
    >>> labels = np.arange(60) % 3
    >>> stats = CollapseStats(num_classes=3)
    >>> _ = stats.update(4 * np.eye(3, 8)[labels] + rng.normal(size=(60, 8)), labels)
    >>> fitted = OODFit.from_stats(stats, weight=np.eye(3, 8), neco_k=2)
    >>> stream = fitted.stream("far")
    >>> for batch in np.split(rng.normal(size=(40, 8)), 4):
    ...     _ = stream.update(batch)
    >>> stream.scores()["neco"].shape
    (40,)
    """

    def __init__(self, fit: OODFit, name: str = "features") -> None:
        self.fit, self.name = fit, name
        self.parts: list[dict[str, np.ndarray]] = []

    def update(self, features: Any, labels: Any = None) -> ScoreStream:
        self.parts.append(self.fit.score(features, self.name))
        return self

    @property
    def num_samples(self) -> int:
        first = self.fit.methods[0]
        return sum(len(part[first]) for part in self.parts)

    def scores(self) -> dict[str, np.ndarray]:
        """Method -> scores (N,) of every row seen, in order."""
        return {method: np.concatenate([part[method] for part in self.parts])
                if self.parts else np.zeros(0) for method in self.fit.methods}
