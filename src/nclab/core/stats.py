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
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.metrics import CollapseMetrics, compute_metrics
from nclab.core.moments import Moments, normalizing_exponent, times_power_of_two
from nclab.core.streaming import StreamingStatistic, Tally, declare
from nclab.core.validation import (
    as_classifier,
    as_features,
    as_labels,
    ensure_finite,
    positive_int,
    real_tensor,
)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


class CollapseStats(StreamingStatistic):
    """One-pass statistics of classification features, accumulated in float64.

    Parameters
    ----------
    num_classes : int
        Number of classes C; labels must lie in ``0..C-1``.
    dim : int, optional
        Feature dimension d; taken from the first batch when omitted.

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

    def __init__(self, num_classes: int, dim: int | None = None) -> None:
        self.num_classes = positive_int(num_classes, "num_classes")
        self.dim: int | None = None
        self._views: dict[str, Any] = {}
        self._views_version = -1
        if dim is not None:
            self._check_dim(positive_int(dim, "dim"), "dim")

    def _declare(self, config: Mapping[str, int]) -> dict[str, Any]:
        """The state: one :class:`Moments` group per class (the exponent keeps the name
        ``scale_exponent`` of earlier releases' state dicts)."""
        moments = Moments(config["num_classes"], config["dim"])
        return {"moments": declare(moments, rename={"exponent": "scale_exponent"})}

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

    @property
    def device(self) -> torch.device:
        """The device the state lives on (the features'; the CPU before any sample)."""
        return torch.device("cpu") if self._moments is None else self._moments.device

    def scaled_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(means (C, d), spread (C,), scatter (d, d)) of the features times :attr:`scale`,
        as float64 tensors on :attr:`device`: what ``scaled_means`` & co. copy to numpy.
        They share memory with the state: do not modify them."""
        return (self._view("scaled_tensor_means"), self._view("scaled_tensor_spread"),
                self._view("scaled_tensor_scatter"))

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
    """

    _CHUNK_ENTRIES = 1 << 24  # bounds the chunk x C temporaries (64 MiB in float32)

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
        self._constants: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}
        self._buffers: dict[tuple[torch.device, torch.dtype], _DecisionBuffers] = {}
        self._configure({"num_classes": num_classes}, "the means")

    CONFIG = ("num_classes",)

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
            # ||h - mu_c||^2 up to a constant, from the global mean to limit cancellation
            nearest = torch.addmm(penalty, shifted, centred_t, alpha=-2,
                                  out=work.scores[:n]).argmin(dim=1)
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
