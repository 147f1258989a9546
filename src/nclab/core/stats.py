"""Streaming, mergeable sufficient statistics for classification features.

One pass over (features, labels) keeps, per class, the count, the mean and the sum of
squared distances to the mean, plus one pooled within-class scatter matrix (d x d).
Memory is O(d^2 + C d), independent of the number of samples.

Two partial statistics merge exactly with the pairwise update of Chan, Golub & LeVeque
(SPEC section 1)::

    scatter = scatter_a + scatter_b + sum_c (n_a,c n_b,c / n_c) delta_c delta_c^T

which stays accurate when the within-class spread is tiny next to the class means.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nclab.core import distributed
from nclab.core.errors import NCInputError
from nclab.core.validation import as_classifier, as_features, as_labels, ensure_finite


class CollapseStats:
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

    Notes
    -----
    The state lives in float64 CPU tensors and every accumulation step uses torch, so
    that a second BLAS (numpy's) never competes with torch's threads in the hot loop.
    The attributes above are numpy views of that state.

    Examples
    --------
    >>> stats = CollapseStats(num_classes=10)
    >>> for features, labels in batches:          # doctest: +SKIP
    ...     stats.update(features, labels)
    >>> compute_metrics(stats, weight=W, bias=b)   # doctest: +SKIP
    """

    _STATE = ("counts", "means", "spread", "scatter")

    def __init__(self, num_classes: int, dim: int | None = None) -> None:
        if int(num_classes) < 1:
            raise NCInputError(f"num_classes must be >= 1; got {num_classes}")
        self.num_classes = int(num_classes)
        self.dim: int | None = None
        self._workspace: torch.Tensor | None = None
        if dim is not None:
            self._allocate(int(dim))

    def _allocate(self, dim: int) -> None:
        if dim < 1:
            raise NCInputError(f"feature dimension must be >= 1; got {dim}")
        self.dim = dim
        self._counts = torch.zeros(self.num_classes, dtype=torch.int64)
        self._means = torch.zeros(self.num_classes, dim, dtype=torch.float64)
        self._spread = torch.zeros(self.num_classes, dtype=torch.float64)
        self._scatter = torch.zeros(dim, dim, dtype=torch.float64)

    def _check_dim(self, dim: int, what: str) -> None:
        if self.dim is None:
            self._allocate(dim)
        elif dim != self.dim:
            raise NCInputError(
                f"{what} has feature dimension {dim}; these statistics have {self.dim}"
            )

    counts = property(lambda self: self._counts.numpy(), doc="Samples per class, (C,).")
    means = property(lambda self: self._means.numpy(), doc="Class means, (C, d).")
    spread = property(lambda self: self._spread.numpy(), doc="Squared spread per class, (C,).")
    scatter = property(lambda self: self._scatter.numpy(), doc="Within-class scatter, (d, d).")

    # ------------------------------------------------------------------ accumulation
    def update(self, features: Any, labels: Any) -> CollapseStats:
        """Add a batch.

        Parameters
        ----------
        features : array or tensor of shape (n, d)
            Any float dtype, any device; the batch product runs on that device and dtype
            (half precision is promoted to float32).
        labels : array or tensor of shape (n,)
            Integer class labels in ``0..C-1``.

        Returns
        -------
        self
        """
        x = as_features(features, check_finite=False)  # checked on the batch sums instead
        y = as_labels(labels, x.shape[0], self.num_classes).to(x.device)
        self._check_dim(x.shape[1], "features")
        if x.shape[0]:
            self._merge_moments(*self._batch_moments(x, y))
        return self

    def _workspace_like(self, x: torch.Tensor) -> torch.Tensor:
        """A reused (n, d) buffer: a fresh batch-sized tensor each call costs page faults."""
        buf = self._workspace
        if buf is None or buf.dtype != x.dtype or buf.device != x.device or len(buf) < len(x):
            buf = self._workspace = torch.empty_like(x)
        return buf[: len(x)]

    def _shift(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-class reference points close to the data, in the batch's dtype.

        Subtracting them before the batch product keeps the residuals small, so a float32
        product loses nothing to the size of the means. Known classes use their running
        mean; new classes use their first sample in the batch.
        """
        n = x.shape[0]
        first = torch.full((self.num_classes,), n, dtype=torch.int64, device=x.device)
        first.scatter_reduce_(0, y, torch.arange(n, device=x.device), reduce="amin")
        shift = x[first.clamp(max=n - 1)]
        seen = (self._counts > 0).to(x.device)
        if bool(seen.any()):
            known = self._means.to(device=x.device, dtype=x.dtype)
            shift = torch.where(seen[:, None], known, shift)
        return shift

    def _batch_moments(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        shift = self._shift(x, y)
        residual = self._workspace_like(x)
        torch.index_select(shift, 0, y, out=residual)
        torch.sub(x, residual, out=residual)
        counts = torch.bincount(y, minlength=self.num_classes)
        sums = torch.zeros_like(shift).index_add_(0, y, residual)
        squares = torch.zeros(self.num_classes, dtype=x.dtype, device=x.device)
        squares.index_add_(0, y, torch.linalg.vector_norm(residual, dim=1).square())
        if not bool(torch.isfinite(squares).all()):
            ensure_finite(x)  # NaN or inf reach every sum: find the row only on this path
        gram = residual.T @ residual
        gram = (gram + gram.T) / 2  # low-precision products are not exactly symmetric
        sums, squares, gram, shift = (
            t.to(device="cpu", dtype=torch.float64) for t in (sums, squares, gram, shift)
        )
        counts = counts.cpu()
        weights = counts.to(torch.float64)
        offset = sums / weights.clamp(min=1)[:, None]
        spread = squares - weights * (offset * offset).sum(dim=1)
        scatter = gram - (offset.T * weights) @ offset
        return counts, shift + offset, spread.clamp(min=0), scatter

    def _merge_moments(
        self, counts: torch.Tensor, means: torch.Tensor, spread: torch.Tensor,
        scatter: torch.Tensor,
    ) -> None:
        rows = counts > 0
        n_a, n_b = self._counts[rows].to(torch.float64), counts[rows].to(torch.float64)
        total = n_a + n_b
        delta = means[rows] - self._means[rows]
        weight = n_a * n_b / total
        self._means[rows] += delta * (n_b / total)[:, None]
        self._spread[rows] += spread[rows] + weight * (delta * delta).sum(dim=1)
        self._scatter += scatter + (delta.T * weight) @ delta
        self._counts[rows] += counts[rows]

    def merge(self, other: CollapseStats) -> CollapseStats:
        """Fold the statistics of ``other`` (another part of the data) into these."""
        if not isinstance(other, CollapseStats):
            raise NCInputError(f"can only merge CollapseStats; got {type(other).__name__}")
        if other.num_classes != self.num_classes:
            raise NCInputError(
                f"cannot merge statistics of {other.num_classes} classes into {self.num_classes}"
            )
        if other.dim is None:
            return self
        self._check_dim(other.dim, "the other statistics")
        self._merge_moments(other._counts, other._means, other._spread, other._scatter)
        return self

    def all_reduce(self) -> CollapseStats:
        """Replace these statistics by those of the union over every rank, in place.

        Works with any ``torch.distributed`` backend (gloo on CPU, nccl on GPU). Each rank
        sends its moments about the global class means, which is the exact pairwise merge
        of all ranks at once.
        """
        if not distributed.is_initialized():
            return self  # one process: the local statistics are already the whole
        dim = int(distributed.all_reduce(torch.tensor([self.dim or 0]), op="max"))
        if dim == 0:
            return self
        self._check_dim(dim, "another rank's features")
        C, n_local = self.num_classes, self._counts.to(torch.float64)
        sums_local = (self._means * n_local[:, None]).ravel()
        first = distributed.all_reduce(torch.cat([n_local, sums_local]))
        counts, sums = first[:C], first[C:].reshape(C, dim)
        means = sums / counts.clamp(min=1)[:, None]
        delta = torch.where((n_local > 0)[:, None], self._means - means, 0.0)
        spread = self._spread + n_local * (delta * delta).sum(dim=1)
        scatter = self._scatter + (delta.T * n_local) @ delta
        second = distributed.all_reduce(torch.cat([spread, scatter.ravel()]))
        self._counts = torch.round(counts).to(torch.int64)
        self._means, self._spread, self._scatter = means, second[:C], second[C:].reshape(dim, dim)
        return self

    # ------------------------------------------------------------------ derived quantities
    @property
    def num_samples(self) -> int:
        return 0 if self.dim is None else int(self._counts.sum())

    @property
    def present(self) -> np.ndarray:
        """Boolean mask (C,) of the classes that have at least one sample."""
        if self.dim is None:
            return np.zeros(self.num_classes, dtype=bool)
        return self.counts > 0

    def global_mean(self, weighted: bool = False) -> np.ndarray:
        """mu_G: the plain average of the present class means, or the sample mean."""
        present = self.present
        if weighted:
            return self.counts[present] @ self.means[present] / self.num_samples
        return self.means[present].mean(axis=0)

    def within_class_covariance(self) -> np.ndarray:
        """Sigma_W = scatter / N, shape (d, d)."""
        return self.scatter / self.num_samples

    def class_variances(self) -> np.ndarray:
        """sigma_c^2 of the present classes, shape (C_present,)."""
        present = self.present
        return self.spread[present] / self.counts[present]

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only, so that ``torch.load(..., weights_only=True)`` reads it back."""
        state = {"num_classes": torch.tensor(self.num_classes), "dim": torch.tensor(self.dim or 0)}
        if self.dim is not None:
            state.update({key: getattr(self, f"_{key}").clone() for key in self._STATE})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> CollapseStats:
        if int(state["num_classes"]) != self.num_classes:
            raise NCInputError(
                f"state holds {int(state['num_classes'])} classes; expected {self.num_classes}"
            )
        dim = int(state["dim"])
        if dim == 0:
            self.dim = None
            return self
        self._allocate(dim)
        for key in self._STATE:
            current = getattr(self, f"_{key}")
            value = torch.as_tensor(state[key])
            if tuple(value.shape) != tuple(current.shape):
                raise NCInputError(
                    f"state entry '{key}' has shape {tuple(value.shape)}; "
                    f"expected {tuple(current.shape)}"
                )
            current.copy_(value)
        return self

    def __repr__(self) -> str:
        return (f"CollapseStats(num_classes={self.num_classes}, dim={self.dim}, "
                f"num_samples={self.num_samples})")


class DecisionStats:
    """Second pass: how often the classifier agrees with the nearest class mean (NC4).

    Counts, over the samples seen, where argmax_c (W h + b)_c differs from
    argmin_c ||h - mu_c|| (``ncc_mismatch``) and where it equals the label (``accuracy``).
    Classes absent from the first pass are never chosen by the nearest-mean rule.

    Parameters
    ----------
    means : ndarray of shape (C, d)
        Class means from the first pass.
    present : ndarray of shape (C,), bool
        Classes that had samples in the first pass.
    weight : array of shape (C, d)
    bias : array of shape (C,), optional
    """

    _CHUNK_ENTRIES = 1 << 22

    def __init__(self, means: np.ndarray, present: np.ndarray, weight: Any, bias: Any = None):
        num_classes, dim = means.shape
        self.weight, self.bias = as_classifier(weight, bias, num_classes, dim)
        if self.weight is None:
            raise NCInputError("DecisionStats needs the classifier weight")
        self.num_classes = num_classes
        self.origin = means[present].mean(axis=0)
        self.centred = np.where(present[:, None], means - self.origin, 0.0)
        self.penalty = np.where(present, np.einsum("cd,cd->c", self.centred, self.centred), np.inf)
        self.samples = self.mismatched = self.correct = 0
        # per true class, for the per-class views (which classes collapse last)
        # rows: seen, mismatched, correct
        self.class_counts = torch.zeros(3, num_classes, dtype=torch.int64)

    @classmethod
    def from_stats(cls, stats: CollapseStats, weight: Any, bias: Any = None) -> DecisionStats:
        if stats.dim is None:
            raise NCInputError("the first pass saw no samples: class means are unknown")
        return cls(stats.means, stats.present, weight, bias)

    def update(self, features: Any, labels: Any) -> DecisionStats:
        x = as_features(features)
        y = as_labels(labels, x.shape[0], self.num_classes).to(x.device)
        if x.shape[1] != self.weight.shape[1]:
            raise NCInputError(
                f"features has dimension {x.shape[1]}; "
                f"the classifier expects {self.weight.shape[1]}"
            )
        as_x = {"device": x.device, "dtype": x.dtype}
        weight = torch.from_numpy(self.weight).to(**as_x)
        bias = torch.from_numpy(self.bias if self.bias is not None else np.zeros(len(weight)))
        bias = bias.to(**as_x)
        # ||h - mu_c||^2 up to a constant, measured from the global mean to limit cancellation
        origin = torch.from_numpy(self.origin).to(**as_x)
        centred = torch.from_numpy(self.centred).to(**as_x)
        penalty = torch.from_numpy(self.penalty).to(**as_x)
        rows = max(1, self._CHUNK_ENTRIES // self.num_classes)  # bounds the n x C temporaries
        mismatched, correct = [], []
        for xs, ys in zip(x.split(rows), y.split(rows), strict=True):
            predicted = (xs @ weight.T + bias).argmax(dim=1)
            nearest = (penalty - 2 * (xs - origin) @ centred.T).argmin(dim=1)
            mismatched.append(predicted != nearest)
            correct.append(predicted == ys)
        mismatched, correct = torch.cat(mismatched), torch.cat(correct)
        self.mismatched += int(mismatched.sum())
        self.correct += int(correct.sum())
        for row, kept in enumerate((y, y[mismatched], y[correct])):
            self.class_counts[row] += torch.bincount(kept, minlength=self.num_classes).cpu()
        self.samples += x.shape[0]
        return self

    def merge(self, other: DecisionStats) -> DecisionStats:
        self.samples += other.samples
        self.mismatched += other.mismatched
        self.correct += other.correct
        self.class_counts += other.class_counts
        return self

    def all_reduce(self) -> DecisionStats:
        if not distributed.is_initialized():
            return self  # one process: the local statistics are already the whole
        total = distributed.all_reduce(
            torch.tensor([self.samples, self.mismatched, self.correct], dtype=torch.int64)
        )
        self.samples, self.mismatched, self.correct = (int(v) for v in total)
        self.class_counts = distributed.all_reduce(self.class_counts)
        return self

    def compute(self) -> tuple[float, float]:
        """(ncc_mismatch, accuracy) as fractions of the samples seen."""
        if self.samples == 0:
            raise NCInputError("the second pass saw no samples")
        return self.mismatched / self.samples, self.correct / self.samples

    def compute_per_class(self) -> tuple[np.ndarray, np.ndarray]:
        """(ncc_mismatch, accuracy) of each true class, shape (C,); NaN where none was seen."""
        seen, mismatched, correct = self.class_counts.numpy().astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return mismatched / seen, correct / seen
