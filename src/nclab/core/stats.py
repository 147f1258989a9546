"""Streaming, mergeable sufficient statistics for classification features.

One pass over (features, labels) keeps, per class, the count, the mean and the sum of
squared distances to the mean, plus one pooled within-class scatter matrix (d x d).
Memory is O(d^2 + C d), independent of the number of samples; the accumulation is
:class:`nclab.core.streaming.Moments` with one group per class (its notes say how a
batch costs little more than its batch product and how precision and float range are
kept).

Two partial statistics merge exactly with the pairwise update of Chan, Golub & LeVeque
(definitions, section 1)::

    scatter = scatter_a + scatter_b + sum_c (n_a,c n_b,c / n_c) delta_c delta_c^T

which stays accurate when the within-class spread is tiny next to the class means.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from nclab.core import distributed
from nclab.core.errors import NCInputError
from nclab.core.metrics import CollapseMetrics, compute_metrics
from nclab.core.moments import (
    MAX_STATE_EXPONENT,
    Moments,
    normalizing_exponent,
    times_power_of_two,
)
from nclab.core.nearest import ball_thresholds, screened_nearest, worth_screening
from nclab.core.streaming import StatePart, StreamingStatistic, Tally, check_total, declare
from nclab.core.validation import (
    as_classifier,
    as_features,
    as_labels,
    check_memory,
    ensure_finite,
    positive_int,
    real_tensor,
)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


#: Magnitudes the per-class scatter keeps in float64 without over- or underflow in its
#: squares; beyond, its units change by a power of two (exactly).
_CLASS_BAND = (2.0**-400, 2.0**400)


class ClassScatter(StatePart):
    """Per class, the count n_c, the mean mu_c and the scatter
    S_c = sum_{y_i = c} (h_i - mu_c)(h_i - mu_c)^T (C x d x d: memory C d^2 x 8 bytes).

    Each batch adds, per class in it, its centred scatter about its own mean, folded in
    with Chan, Golub & LeVeque's pairwise update (as the pooled scatter), in float64.
    Values are held in units of ``2**exponent`` times the features, lowered (exactly)
    when a batch would come near float64's range.
    """

    ROLES = ("counts", "means", "scatter", "exponent")

    def __init__(self, num_classes: int, dim: int) -> None:
        self.num_classes, self.dim = num_classes, dim
        check_memory(self.nbytes(num_classes, dim), "cpu", "the per-class scatter (C d^2 x 8 "
                     f"bytes, C = {num_classes}, d = {dim})")
        self._clear(torch.device("cpu"))

    @staticmethod
    def nbytes(num_classes: int, dim: int) -> int:
        """Bytes of the state: C d^2 + C d + C float64 and int64 values."""
        return 8 * num_classes * (dim * dim + dim + 1)

    def _clear(self, device: torch.device) -> None:
        wide: dict[str, Any] = {"dtype": torch.float64, "device": device}
        self.counts = torch.zeros(self.num_classes, dtype=torch.int64, device=device)
        self.means = torch.zeros(self.num_classes, self.dim, **wide)
        self.scatter = torch.zeros(self.num_classes, self.dim, self.dim, **wide)
        self.exponent = 0
        self._signal = False

    def field_specs(self) -> dict[str, dict[str, Any]]:
        C, d = self.num_classes, self.dim
        return {"counts": {"shape": (C,), "integer": True, "nonnegative": True},
                "means": {"shape": (C, d)},
                "scatter": {"shape": (C, d, d)},
                "exponent": {"shape": (), "integer": True, "bound": MAX_STATE_EXPONENT}}

    def read(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts, "means": self.means, "scatter": self.scatter,
                "exponent": torch.tensor(self.exponent)}

    def check(self, values: Mapping[str, torch.Tensor], keys: Mapping[str, str]) -> None:
        """Counts sum below 2**53; a class without samples has zero sums; each scatter
        is symmetric with a non-negative diagonal, up to rounding."""
        check_total(values["counts"], keys["counts"])
        empty = values["counts"] == 0
        for role in ("means", "scatter"):
            if bool((values[role][empty] != 0).any()):
                raise NCInputError(f"state entry '{keys[role]}' is nonzero for a class whose "
                                   "count is 0")
        scatter = values["scatter"]
        diagonal = torch.diagonal(scatter, dim1=1, dim2=2)
        tolerance = 1e-5 * diagonal.abs().sum(dim=1) + torch.finfo(torch.float64).tiny
        asymmetry = (scatter - scatter.transpose(1, 2)).abs().amax(dim=(1, 2))
        if bool((diagonal < -tolerance[:, None]).any()) or bool((asymmetry > tolerance).any()):
            raise NCInputError(f"state entry '{keys['scatter']}' holds a matrix that is not a "
                               "scatter (asymmetric or a negative variance)")

    def load(self, values: Mapping[str, torch.Tensor]) -> None:
        device = self.counts.device
        self.counts = values["counts"].to(device=device, dtype=torch.int64).clone()
        self.means = values["means"].to(device=device, dtype=torch.float64).clone()
        self.scatter = values["scatter"].to(device=device, dtype=torch.float64).clone()
        self.exponent = int(values["exponent"])
        self._signal = bool((self.means != 0).any() or (self.scatter != 0).any())

    def reset(self) -> None:
        self._clear(self.counts.device)

    # ------------------------------------------------------------------ accumulation
    def update(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        """Add rows ``x`` (n, d), finite, with ``labels`` (n,) on the same device."""
        if x.shape[0] == 0:
            return
        self._to(x.device)
        peak = float(x.abs().amax())
        self._fit_exponent(peak)
        rows = times_power_of_two(x.to(torch.float64), self.exponent)
        order = torch.argsort(labels, stable=True)
        classes, sizes = torch.unique_consecutive(labels[order], return_counts=True)
        for label, block in zip(classes.tolist(), torch.split(rows[order], sizes.tolist()),
                                strict=True):
            mean = block.mean(dim=0)
            residual = block - mean
            self._fold(label, block.shape[0], mean, residual.T @ residual)

    def _fold(self, label: int, count: int, mean: torch.Tensor, scatter: torch.Tensor) -> None:
        """Chan's pairwise update of class ``label`` with a part of ``count`` rows."""
        before = int(self.counts[label])
        total = before + count
        delta = mean - self.means[label]
        self.means[label] += delta * (count / total)
        self.scatter[label] += scatter + (before * count / total) * torch.outer(delta, delta)
        self.counts[label] = total

    def _fit_exponent(self, peak: float) -> None:
        low, high = _CLASS_BAND
        if not self._signal:
            if peak == 0:
                return
            self._signal = True
            self.exponent = 0 if low <= peak <= high else -normalizing_exponent(peak)
        elif peak * math.ldexp(1.0, self.exponent) > high:
            self._rescale(-normalizing_exponent(peak))

    def _rescale(self, exponent: int) -> None:
        """Express the state in units of 2**exponent (exactly: powers of two)."""
        shift = exponent - self.exponent
        if shift:
            self.means = times_power_of_two(self.means, shift)
            self.scatter = times_power_of_two(self.scatter, 2 * shift)
            self.exponent = exponent

    def _to(self, device: torch.device) -> None:
        if self.counts.device != device:
            check_memory(self.nbytes(self.num_classes, self.dim), device,
                         "the per-class scatter")
            self.counts, self.means, self.scatter = (
                t.to(device) for t in (self.counts, self.means, self.scatter))

    # ------------------------------------------------------------------ merge and sync
    def merge(self, other: ClassScatter) -> None:
        """Fold ``other`` (same C and d) into this part, exactly."""
        if not other._signal and not bool((other.counts > 0).any()):
            return
        exponent = other.exponent if not self._signal else min(self.exponent, other.exponent)
        self._rescale(exponent)
        self._signal = True
        shift = exponent - other.exponent
        device = self.counts.device
        for label in other.counts.nonzero().squeeze(1).tolist():
            self._fold(label, int(other.counts[label]),
                       times_power_of_two(other.means[label], shift).to(device),
                       times_power_of_two(other.scatter[label], 2 * shift).to(device))

    def all_reduce(self) -> None:
        """Replace this part by the union over every rank (a collective call): each rank
        sends its scatter about the global class means."""
        no_data = 1 << 20
        mine = self.exponent if self._signal else no_data
        exponent = -int(distributed.reduce_on_device(torch.tensor([-mine]), op="max"))
        if exponent != no_data:
            self._rescale(exponent)
            self._signal = True
        local = self.counts.to(torch.float64)
        first = distributed.reduce_on_device(
            torch.cat([local, (self.means * local[:, None]).ravel()]))
        counts = first[: self.num_classes]
        means = (first[self.num_classes :].reshape(self.num_classes, self.dim)
                 / counts.clamp(min=1)[:, None])
        delta = torch.where((local > 0)[:, None], self.means - means, 0.0)
        scatter = self.scatter + local[:, None, None] * delta[:, :, None] * delta[:, None, :]
        self.scatter = distributed.reduce_on_device(scatter)
        self.counts = torch.round(counts).to(torch.int64)
        self.means = means


class CollapseStats(StreamingStatistic):
    """One-pass statistics of classification features, accumulated in float64.

    Parameters
    ----------
    num_classes : int
        Number of classes C; labels must lie in ``0..C-1``.
    dim : int, optional
        Feature dimension d; taken from the first batch when omitted.
    per_class_scatter : bool
        Also keep each class's own d x d scatter (:class:`ClassScatter`, C d^2 x 8 bytes,
        refused in one line when that is more memory than is free), for the per-class
        effective rank ``class_rankme`` of ``compute_metrics(..., spectral=True)``.
        Off by default.

    Attributes
    ----------
    counts : ndarray of shape (C,), int64
        Samples seen per class.
    means : ndarray of shape (C, d), float64
        Class means mu_c (zero rows for classes not seen yet).
    spread : ndarray of shape (C,), float64
        sum_{i in c} ||h_i - mu_c||^2, so that sigma_c^2 = spread_c / n_c.
    scatter : ndarray of shape (d, d), float64
        Pooled within-class scatter sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T = N Sigma_W.
    scale : float
        A power of two s such that the ``scaled_*`` accessors, the same quantities for
        the features times s, are of order one: the metrics are scale-free and read
        those, so no square or fourth power of them over- or underflows.

    Notes
    -----
    The state lives in float64 tensors on the features' device (no host round trip per
    batch) and every accumulation step uses torch, so that a second BLAS (numpy's)
    never competes with torch's threads in the hot loop. The attributes above are numpy
    arrays read from that state (views of it on the CPU); quantities that do not fit in
    float64 in the features' units (the scatter of features of magnitude 1e200) read as
    inf there, and exactly in the scaled accessors.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> W, b = torch.eye(3, 5), torch.zeros(3)
    >>> batches = [(torch.randn(12, 5) + 4 * W[torch.arange(12) % 3], torch.arange(12) % 3)
    ...            for _ in range(3)]
    >>> stats = CollapseStats(num_classes=3)
    >>> for features, labels in batches:
    ...     _ = stats.update(features, labels)   # it returns the stats
    >>> metrics = stats.compute(weight=W, bias=b)
    >>> metrics.num_samples, round(metrics.nc1, 4) > 0
    (36, True)
    """

    CONFIG = ("num_classes", "dim")
    LAZY = ("dim",)

    def __init__(self, num_classes: int, dim: int | None = None, *,
                 per_class_scatter: bool = False) -> None:
        self.num_classes = positive_int(num_classes, "num_classes")
        if not isinstance(per_class_scatter, (bool, np.bool_)):
            raise NCInputError(f"per_class_scatter must be True or False; got "
                               f"{per_class_scatter!r}")
        self.per_class_scatter = bool(per_class_scatter)
        self.dim: int | None = None
        self._views: dict[str, Any] = {}
        self._views_version = -1
        if dim is not None:
            self._check_dim(positive_int(dim, "dim"), "dim")

    def _declare(self, config: Mapping[str, int]) -> dict[str, Any]:
        """The state: one :class:`Moments` group per class (the exponent keeps the name
        ``scale_exponent`` of earlier releases' state dicts)."""
        # the per-class scatter first: its memory is refused before anything is allocated
        extra = ClassScatter(config["num_classes"], config["dim"]) \
            if self.per_class_scatter else None
        moments = Moments(config["num_classes"], config["dim"])
        parts = {"moments": declare(moments, rename={"exponent": "scale_exponent"})}
        if extra is not None:
            parts["class_scatter"] = declare(extra, prefix="per_class_")
        return parts

    def _check_parts(self, values: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        if "class_scatter" in values and not torch.equal(values["class_scatter"]["counts"],
                                                         values["moments"]["counts"]):
            raise NCInputError("state entry 'per_class_counts' differs from 'counts'")

    def class_scatter(self, scaled: bool = False) -> np.ndarray:
        """Each class's scatter S_c, shape (C, d, d) (``per_class_scatter=True`` only).

        With ``scaled`` in the units the state holds (the features times a power of two,
        of order one: what the scale-free metrics read); else in the features' units."""
        parts = self._parts()
        if not self.per_class_scatter:
            raise NCInputError("these statistics keep no per-class scatter: build them with "
                               "CollapseStats(..., per_class_scatter=True)")
        if "class_scatter" not in parts:
            raise NCInputError("no samples were seen yet: the statistics are empty")
        part = parts["class_scatter"].part
        assert isinstance(part, ClassScatter)
        power = 0 if scaled else -2 * part.exponent
        return _numpy(times_power_of_two(part.scatter, power))

    @property
    def _moments(self) -> Moments | None:
        parts = self._parts()
        return parts["moments"].part if parts else None  # type: ignore[return-value]

    def _check_dim(self, dim: int, what: str) -> Moments:
        if self.dim is not None and dim != self.dim:
            raise NCInputError(
                f"{what} has feature dimension {dim}; these statistics have {self.dim}"
            )
        self._configure({"num_classes": self.num_classes,
                         "dim": positive_int(dim, "feature dimension")}, what)
        assert self._moments is not None
        return self._moments

    # ------------------------------------------------------------------ accumulation
    def update(self, features: Any, labels: Any) -> CollapseStats:
        """Add a batch (an empty one changes nothing).

        Parameters
        ----------
        features : array or tensor of shape (n, d)
            Any real dtype, any device; the batch product runs on that device and dtype
            (half precision is promoted to float32).
        labels : array or tensor of shape (n,)
            Integer class labels in ``0..C-1``.

        Returns
        -------
        self
        """
        x = as_features(features, check_finite=False)  # checked by the magnitude pass
        y = as_labels(labels, x.shape[0], self.num_classes).to(x.device)
        if x.shape[0] == 0:  # fixes nothing, not even d
            if self.dim is not None and x.shape[1] != self.dim:
                self._check_dim(x.shape[1], "features")
            return self
        self._check_dim(x.shape[1], "features").update(x, y)
        if self.per_class_scatter:  # after the moments, which refuse NaN and inf
            part = self._parts()["class_scatter"].part
            assert isinstance(part, ClassScatter)
            part.update(x, y)
        return self

    def compute(self, weight: Any = None, bias: Any = None, **kwargs: Any) -> CollapseMetrics:
        """``compute_metrics(self, weight, bias, **kwargs)``: every collapse metric."""
        return compute_metrics(self, weight, bias, **kwargs)

    # ------------------------------------------------------------------ views of the state
    def _view(self, key: str) -> Any:
        """A numpy view of the finalized state, cached until the state changes."""
        if self._moments is None:
            if key == "counts":
                return np.zeros(self.num_classes, dtype=np.int64)
            raise NCInputError("no samples were seen yet: the statistics are empty")
        moments = self._moments
        state = moments.moments()
        if moments.version != self._views_version:
            self._views, self._views_version = {}, moments.version
        if key not in self._views:
            self._views[key] = self._make_view(key, *state)
        return self._views[key]

    def _make_view(self, key: str, counts: torch.Tensor, means: torch.Tensor,
                   spread: torch.Tensor, scatter: torch.Tensor) -> Any:
        assert self._moments is not None
        if key == "counts":
            return _numpy(counts)
        if key == "shift":  # internal units -> scaled units: times 2**-shift
            return self._normalizing_exponent(counts, means, spread)
        if "tensor_" not in key:  # numpy's copy (a view on the CPU) of the tensor
            prefix = "scaled_" if key.startswith("scaled_") else ""
            return _numpy(self._view(f"{prefix}tensor_{key[len(prefix):]}"))
        if key.startswith("scaled_"):
            shift = -self._view("shift")
            key = key[len("scaled_"):]
        else:
            shift = -self._moments.exponent  # internal units -> the features' units
        key = key[len("tensor_"):]
        tensor, power = {"means": (means, 1), "spread": (spread, 2), "scatter": (scatter, 2)}[key]
        return times_power_of_two(tensor, power * shift)

    @staticmethod
    def _normalizing_exponent(counts: torch.Tensor, means: torch.Tensor,
                              spread: torch.Tensor) -> int:
        """k such that means and class radii times 2**-k are at most 1 (about)."""
        present = counts > 0
        if not bool(present.any()):
            return 0
        radius = float((spread[present] / counts[present]).max()) ** 0.5
        return normalizing_exponent(max(float(means.amax()), -float(means.amin()), radius))

    counts = property(lambda self: self._view("counts"), doc="Samples per class, (C,).")
    means = property(lambda self: self._view("means"), doc="Class means, (C, d).")
    spread = property(lambda self: self._view("spread"), doc="Squared spread per class, (C,).")
    scatter = property(lambda self: self._view("scatter"), doc="Within-class scatter, (d, d).")

    @property
    def scale(self) -> float:
        """The power of two s of the ``scaled_*`` accessors (features times s)."""
        if self._moments is None:
            return 1.0
        return math.ldexp(1.0, self._moments.exponent - self._view("shift"))

    def scaled_means(self) -> np.ndarray:
        """Class means of the features times :attr:`scale`, (C, d)."""
        return self._view("scaled_means")

    def scaled_spread(self) -> np.ndarray:
        """Squared spread per class of the features times :attr:`scale`, (C,)."""
        return self._view("scaled_spread")

    def scaled_scatter(self) -> np.ndarray:
        """Within-class scatter of the features times :attr:`scale`, (d, d)."""
        return self._view("scaled_scatter")

    def stored_scatter(self, tensor: bool = False) -> tuple[Any, int]:
        """(the within-class scatter as the state stores it, k), where
        ``scaled_scatter()`` is that times 2**k: a float64 numpy view (``tensor``: the
        tensor on :attr:`device`), where ``scaled_scatter()`` is a d x d copy whenever
        k != 0. Do not modify it."""
        moments = self._moments
        if moments is None:
            raise NCInputError("no samples were seen yet: the statistics are empty")
        scatter = moments.moments()[3]
        return (scatter if tensor else _numpy(scatter)), -2 * self._view("shift")

    @property
    def device(self) -> torch.device:
        """The device the state lives on (the features'; the CPU before any sample)."""
        return torch.device("cpu") if self._moments is None else self._moments.device

    def scaled_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(means (C, d), spread (C,)) of the features times :attr:`scale`, as float64
        tensors on :attr:`device`: what ``scaled_means`` and ``scaled_spread`` copy to
        numpy. They share memory with the state: do not modify them. The scatter on the
        device is ``stored_scatter(tensor=True)``, which forms no d x d copy."""
        return self._view("scaled_tensor_means"), self._view("scaled_tensor_spread")

    # ------------------------------------------------------------------ derived quantities
    @property
    def num_samples(self) -> int:
        return 0 if self._moments is None else self._moments.rows

    @property
    def present(self) -> np.ndarray:
        """Boolean mask (C,) of the classes that have at least one sample."""
        return self.counts > 0

    def global_mean(self, weighted: bool = False, scaled: bool = False) -> np.ndarray:
        """mu_G: the plain average of the present class means, or the sample mean.

        With ``scaled`` in the units of the ``scaled_*`` accessors.
        """
        present = self.present
        means = self.scaled_means() if scaled else self.means
        if weighted:
            return self.counts[present] @ means[present] / self.num_samples
        return means[present].mean(axis=0)

    def within_class_covariance(self, scaled: bool = False) -> np.ndarray:
        """Sigma_W = scatter / N, shape (d, d) (``scaled``: of the scaled features)."""
        return (self.scaled_scatter() if scaled else self.scatter) / self.num_samples

    def class_variances(self, scaled: bool = False) -> np.ndarray:
        """sigma_c^2 of the present classes, shape (C_present,)."""
        present = self.present
        spread = self.scaled_spread() if scaled else self.spread
        return spread[present] / self.counts[present]

    def __repr__(self) -> str:
        return (f"CollapseStats(num_classes={self.num_classes}, dim={self.dim}, "
                f"num_samples={self.num_samples})")


class _DecisionBuffers:
    """Per-chunk scratch of DecisionStats.update, allocated once: the (rows, C) scores
    (the classifier's, then the distances), the (rows, d) shifted features and ones."""

    def __init__(self, rows: int, dim: int, classes: int, like: torch.Tensor) -> None:
        self.rows = rows
        self.scores = like.new_empty((rows, classes))
        self.shifted = like.new_empty((rows, dim))
        self.apart = like.new_empty((rows, dim))  # the ball test's h - mu_k
        self.ones = torch.ones(rows, dtype=torch.int64, device=like.device)


class DecisionStats(StreamingStatistic):
    """Second pass: how often the classifier agrees with the nearest class mean (NC4).

    Counts, over the samples seen, where argmax_c (W h + b)_c differs from
    argmin_c ||h - mu_c|| (``ncc_mismatch``) and where it equals the label (``accuracy``),
    in total and per true class. Classes absent from the first pass are never chosen by
    the nearest-mean rule.

    Parameters
    ----------
    means : ndarray of shape (C, d)
        Class means from the first pass (of the features times ``scale``).
    present : ndarray of shape (C,), bool
        Classes that had samples in the first pass.
    weight : array of shape (C, d)
    bias : array of shape (C,), optional
    scale : float
        The features are multiplied by it (a power of two, exactly) before the
        nearest-mean rule; :meth:`from_stats` passes the statistics' scale and scaled
        means, so that no distance over- or underflows.

    Notes
    -----
    W, b and the centred means are converted once per device and dtype and stay there;
    the counts accumulate on the features' device (read back only by the accessors).

    With ``SCREEN_MIN_CLASSES`` classes or more, a feature within half the distance
    between its classifier's class mean and that mean's nearest neighbour (less the
    rounding) is known to be nearest to it without the distances to every mean
    (:mod:`nclab.core.nearest`): exact, and O(d) instead of O(C d) for collapsed
    features. The test's thresholds cost one C x C x d product, as much as the
    distances of C rows: they are made once C rows have been seen, and only when a
    cheap upper bound says the test could decide a quarter of the rows; the test stops
    for good at the first chunk in which it decides fewer than an eighth.
    """

    _CHUNK_ENTRIES = 1 << 24  # bounds the chunk x C temporaries (64 MiB in float32)
    SCREEN_MIN_CLASSES = 32  # below, the distances cost little more than the test

    def __init__(self, means: np.ndarray, present: np.ndarray, weight: Any, bias: Any = None,
                 *, scale: float = 1.0) -> None:
        means = np.asarray(means, dtype=np.float64)
        present = np.asarray(present, dtype=bool)
        num_classes, dim = means.shape
        checked_weight, self.bias = as_classifier(weight, bias, num_classes, dim)
        if checked_weight is None:
            raise NCInputError("DecisionStats needs the classifier weight")
        self.weight: np.ndarray = checked_weight
        self.num_classes = num_classes
        self.scale = float(scale)
        self.origin = means[present].mean(axis=0)
        self.centred = np.where(present[:, None], means - self.origin, 0.0)
        self.penalty = np.where(present, np.einsum("cd,cd->c", self.centred, self.centred), np.inf)
        self.present = present
        self._constants: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}
        self._buffers: dict[tuple[torch.device, torch.dtype], _DecisionBuffers] = {}
        self._screens: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        self._rows_seen = 0  # rows decided so far: the ball test waits for C of them
        self._screening: bool | None = None  # undecided, then whether the test runs
        self._configure({"num_classes": num_classes}, "the means")

    CONFIG = ("num_classes",)

    def reset(self) -> DecisionStats:
        """Forget every sample, and the ball test's verdict on them: the next stream
        decides afresh whether the test is worth running (its thresholds, which depend on
        the means alone, are kept)."""
        self._rows_seen, self._screening = 0, None
        return super().reset()

    def _declare(self, config: Mapping[str, int]) -> dict[str, Any]:
        """The state: per true class, rows seen, mismatched and correct (summed on merge)."""
        tally = Tally((3, config["num_classes"]))
        return {"tallies": declare(tally, rename={"counts": "class_counts"})}

    @property
    def _tally(self) -> Tally:
        return self._parts()["tallies"].part  # type: ignore[return-value]

    @property
    def _tallies(self) -> torch.Tensor:
        """(3, C) int64 on the features' device: seen, mismatched, correct per true class."""
        return self._tally.counts

    def _check_parts(self, values: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        counts = values["tallies"]["counts"]
        if bool((counts[1:] > counts[0]).any()):
            raise NCInputError("state entry 'class_counts' has more mismatched or correct "
                               "samples than samples seen")

    @classmethod
    def from_stats(cls, stats: CollapseStats, weight: Any, bias: Any = None) -> DecisionStats:
        if stats.dim is None or stats.num_samples == 0:
            raise NCInputError("the first pass saw no samples: class means are unknown")
        return cls(stats.scaled_means(), stats.present, weight, bias, scale=stats.scale)

    # ------------------------------------------------------------------ counts
    @property
    def class_counts(self) -> torch.Tensor:
        """(3, C) int64 on the CPU: samples seen, mismatched and correct, per true class."""
        return self._tallies.cpu()

    samples = property(lambda self: int(self._tallies[0].sum()), doc="Samples seen.")
    mismatched = property(lambda self: int(self._tallies[1].sum()),
                          doc="Samples where the classifier and the nearest mean disagree.")
    correct = property(lambda self: int(self._tallies[2].sum()),
                       doc="Samples the classifier labels correctly.")

    def _device_constants(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(W^T, b, -origin, centred^T, penalty) in x's dtype on x's device, converted
        once (the products read the transposes as stored: no copy per chunk)."""
        key = (x.device, x.dtype)
        if key not in self._constants:
            bias = self.bias if self.bias is not None else np.zeros(self.num_classes)
            self._constants[key] = tuple(
                torch.from_numpy(np.ascontiguousarray(a)).to(device=x.device, dtype=x.dtype)
                for a in (self.weight.T, bias, -self.origin, self.centred.T, self.penalty)
            )
        return self._constants[key]

    def _nearest(self, shifted: torch.Tensor, predicted: torch.Tensor, scratch: torch.Tensor,
                 nearest_of: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The nearest mean of each row: by the ball test where it runs (see the class
        notes), else ``nearest_of`` (the distances to every mean)."""
        seen, self._rows_seen = self._rows_seen, self._rows_seen + len(predicted)
        if (self._screening is False or self.num_classes < self.SCREEN_MIN_CLASSES
                or seen < self.num_classes):
            return nearest_of(shifted)
        key = (shifted.device, shifted.dtype)
        screen = self._screens.setdefault(key, [torch.from_numpy(self.centred).to(
            device=shifted.device, dtype=shifted.dtype)])
        present = torch.from_numpy(self.present)
        if self._screening is None:
            self._screening = worth_screening(shifted, predicted, screen[0], present, scratch)
            if not self._screening:
                return nearest_of(shifted)
        if len(screen) == 1:
            screen.append(ball_thresholds(screen[0], present, float(np.linalg.norm(self.origin))))
        centred, thresholds = screen
        nearest, decided = screened_nearest(shifted, predicted, centred, thresholds, scratch,
                                            nearest_of)
        self._screening = 8 * decided >= len(predicted)
        return nearest

    def _chunk_buffers(self, x: torch.Tensor, rows: int) -> _DecisionBuffers:
        """Scratch arrays for chunks of up to ``rows`` rows, kept between updates."""
        key = (x.device, x.dtype)
        buffers = self._buffers.get(key)
        if buffers is None or buffers.rows < rows:
            buffers = self._buffers[key] = _DecisionBuffers(rows, x.shape[1],
                                                            self.num_classes, x)
        return buffers

    def update(self, features: Any, labels: Any, logits: Any = None, *,
               predictions: Any = None) -> DecisionStats:
        """Add a batch: features (n, d), labels (n,), and optionally what the classifier
        already decided: its outputs ``logits`` (n, C), or their argmax ``predictions``
        (n,) in ``0..C-1`` (W is then not applied again)."""
        x = as_features(features)
        y = as_labels(labels, x.shape[0], self.num_classes).to(x.device)
        if x.shape[1] != self.weight.shape[1]:
            raise NCInputError(
                f"features has dimension {x.shape[1]}; "
                f"the classifier expects {self.weight.shape[1]}"
            )
        if logits is not None and predictions is not None:
            raise NCInputError("pass logits or predictions, not both")
        scores = None if logits is None else self._as_logits(logits, x)
        decided = (None if predictions is None else
                   as_labels(predictions, x.shape[0], self.num_classes).to(x.device))
        weight_t, bias, minus_origin, centred_t, penalty = self._device_constants(x)
        self._tally.to(x.device)
        rows = min(x.shape[0], max(1, self._CHUNK_ENTRIES // self.num_classes))
        work = self._chunk_buffers(x, rows)
        self._tallies[0].index_add_(0, y, work.ones[: x.shape[0]] if x.shape[0] <= work.rows
                                    else torch.ones_like(y))
        for start in range(0, x.shape[0], rows):
            xs, ys = x[start : start + rows], y[start : start + rows]
            n = xs.shape[0]
            if decided is not None:
                predicted = decided[start : start + rows]
            elif scores is not None:
                predicted = scores[start : start + rows].argmax(dim=1)
            else:
                predicted = torch.addmm(bias, xs, weight_t, out=work.scores[:n]).argmax(dim=1)
            # x s - origin in one pass: s is a power of two, so x s is exact and this is
            # the rounding of the plain subtraction (kept before the product: folding
            # the origin into the constants would cancel for means far from 0)
            shifted = torch.add(minus_origin, xs, alpha=self.scale, out=work.shifted[:n])
            def nearest_of(h: torch.Tensor) -> torch.Tensor:
                # ||h - mu_c||^2 up to a constant, from the global mean (less cancellation)
                return torch.addmm(penalty, h, centred_t, alpha=-2,
                                   out=work.scores[: len(h)]).argmin(dim=1)

            nearest = self._nearest(shifted, predicted, work.apart[:n], nearest_of)
            self._tallies[1].index_add_(0, ys, (predicted != nearest).to(torch.int64))
            self._tallies[2].index_add_(0, ys, (predicted == ys).to(torch.int64))
        return self

    def _as_logits(self, logits: Any, x: torch.Tensor) -> torch.Tensor:
        scores = real_tensor(logits, "logits")
        if tuple(scores.shape) != (x.shape[0], self.num_classes):
            raise NCInputError(f"logits must have shape (n, C) = ({x.shape[0]}, "
                               f"{self.num_classes}); got {tuple(scores.shape)}")
        ensure_finite(scores, "logits")
        return scores.to(x.device)

    def compute(self) -> tuple[float, float]:
        """(ncc_mismatch, accuracy) as fractions of the samples seen."""
        seen, mismatched, correct = (int(v) for v in self._tallies.sum(dim=1))
        if seen == 0:
            raise NCInputError("the second pass saw no samples")
        return mismatched / seen, correct / seen

    def compute_per_class(self) -> tuple[np.ndarray, np.ndarray]:
        """(ncc_mismatch, accuracy) of each true class, shape (C,); NaN where none was seen."""
        seen, mismatched, correct = self.class_counts.numpy().astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return mismatched / seen, correct / seen
