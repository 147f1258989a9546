"""Streaming statistics of regression features and targets (definitions §5).

One pass over (features h_i in R^d, targets y_i in R^n) keeps, in float64:

- the count, mean and centred scatter of the stacked vector z_i = [h_i, y_i]
  (feature PCA, target covariance Sigma, and the cross moments behind MSE and R^2);
- the count, mean and centred scatter of the normalized features h~_i = h_i/||h_i||
  (NRC1 and NRC2 project these).

Memory is O((d + n)^2), independent of the number of samples. Both are declared
:class:`~nclab.core.moments.Moments` parts, so that merging (the pairwise update of Chan,
Golub & LeVeque, definitions §1), ``all_reduce`` and persistence follow from the
declaration as for the classification statistics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.moments import Moments, times_power_of_two
from nclab.core.regression_metrics import RegressionMetrics, compute_regression_metrics
from nclab.core.streaming import StreamingStatistic, declare
from nclab.core.validation import as_features, as_targets, ensure_finite, positive_int


class RegressionStats(StreamingStatistic):
    """One-pass statistics of regression features and targets, accumulated in float64.

    Parameters
    ----------
    dim : int, optional
        Feature dimension d; taken from the first batch when omitted.
    target_dim : int, optional
        Target dimension n; taken from the first batch when omitted.

    Notes
    -----
    Features with norm zero have no direction: they count in the PCA, the target
    statistics and the MSE, but are left out of the normalized moments (NRC1, NRC2);
    ``zero_features`` says how many there were. Both moments are
    :class:`nclab.core.streaming.Moments` with one group (the accumulation shared with
    the classification statistics).

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> W, b = torch.randn(2, 6), torch.zeros(2)
    >>> batches = [(h, h @ W.T + 0.1 * torch.randn(20, 2))
    ...            for h in (torch.randn(20, 6) for _ in range(3))]
    >>> stats = RegressionStats()
    >>> for features, targets in batches:
    ...     _ = stats.update(features, targets)   # it returns the stats
    >>> metrics = stats.compute(weight=W, bias=b)
    >>> metrics.num_samples, metrics.r2 > 0.9
    (60, True)
    """

    CONFIG = ("dim", "target_dim")
    LAZY = ("dim", "target_dim")

    def __init__(self, dim: int | None = None, target_dim: int | None = None) -> None:
        self.dim: int | None = None
        self.target_dim: int | None = None
        if (dim is None) != (target_dim is None):
            raise NCInputError("give both dim and target_dim, or neither")
        if dim is not None and target_dim is not None:
            self._check_dims(positive_int(dim, "dim"), positive_int(target_dim, "target_dim"),
                             "the arguments")

    def _declare(self, config: Mapping[str, int]) -> dict[str, Any]:
        """The state: moments of z = [h, y] and of the normalized features (one group)."""
        dim, target_dim = config["dim"], config["target_dim"]
        return {"joint": declare(Moments(1, dim + target_dim), prefix="joint_"),
                "unit": declare(Moments(1, dim), prefix="unit_")}

    @property
    def _joint(self) -> Moments:
        return self._parts()["joint"].part  # type: ignore[return-value]

    @property
    def _unit(self) -> Moments:
        return self._parts()["unit"].part  # type: ignore[return-value]

    def _check_dims(self, dim: int, target_dim: int, what: str) -> None:
        if self.dim is not None and (dim, target_dim) != (self.dim, self.target_dim):
            raise NCInputError(
                f"{what} has (d, n) = ({dim}, {target_dim}); "
                f"these statistics have ({self.dim}, {self.target_dim})"
            )
        if dim < 1 or target_dim < 1:
            raise NCInputError(
                f"feature and target dimensions must be >= 1; got d={dim}, n={target_dim}"
            )
        self._configure({"dim": dim, "target_dim": target_dim}, what)

    # ------------------------------------------------------------------ accumulation
    def update(self, features: Any, targets: Any) -> RegressionStats:
        """Add a batch (an empty one changes nothing).

        Parameters
        ----------
        features : array or tensor of shape (b, d)
            Any float dtype, any device; the batch products run there (half precision is
            promoted to float32).
        targets : array or tensor of shape (b, n) or (b,)
            Real targets; a 1-D array is one target column (n = 1).

        Returns
        -------
        self
        """
        h = as_features(features, check_finite=False)  # checked by the magnitude pass
        y = as_targets(targets, h.shape[0])
        dtype = torch.promote_types(h.dtype, y.dtype)
        h, y = h.to(dtype), y.to(device=h.device, dtype=dtype)
        if h.shape[0] == 0:  # fixes nothing, not even d and n
            if self.dim is not None:
                self._check_dims(h.shape[1], y.shape[1], "this batch")
            return self
        self._check_dims(h.shape[1], y.shape[1], "this batch")
        try:
            self._joint.update(torch.cat([h, y], dim=1), name="features and targets")
        except NCInputError:
            ensure_finite(h)  # name the array and the row
            ensure_finite(y, "targets")
            raise
        norms = torch.linalg.vector_norm(h, dim=1)
        nonzero = norms > 0
        if bool(nonzero.any()):
            self._unit.update(h[nonzero] / norms[nonzero, None], name="normalized features")
        return self

    def compute(self, weight: Any = None, bias: Any = None, **kwargs: Any) -> RegressionMetrics:
        """``compute_regression_metrics(self, weight, bias, **kwargs)``."""
        return compute_regression_metrics(self, weight, bias, **kwargs)

    # ------------------------------------------------------------------ derived quantities
    @staticmethod
    def _in_data_units(moments: Moments) -> tuple[np.ndarray, np.ndarray]:
        """(mean (k,), scatter (k, k)) of one-group moments, in the data's units."""
        _, means, _, scatter = moments.moments()
        shift = -moments.exponent
        return (times_power_of_two(means[0], shift).cpu().numpy(),
                times_power_of_two(scatter, 2 * shift).cpu().numpy())

    @property
    def num_samples(self) -> int:
        return 0 if self.dim is None else self._joint.rows

    @property
    def unit_count(self) -> int:
        """How many features had a direction (norm > 0): the samples of NRC1 and NRC2."""
        return 0 if self.dim is None else self._unit.rows

    @property
    def zero_features(self) -> int:
        """How many features had norm zero (left out of NRC1 and NRC2)."""
        return self.num_samples - self.unit_count

    def joint_mean(self) -> np.ndarray:
        """Mean of z = [h, y], shape (d + n,)."""
        return self._in_data_units(self._joint)[0]

    def feature_mean(self) -> np.ndarray:
        """Mean of h, shape (d,)."""
        return self.joint_mean()[: self.dim]

    def target_mean(self) -> np.ndarray:
        """ybar, shape (n,)."""
        return self.joint_mean()[self.dim :]

    def joint_covariance(self) -> np.ndarray:
        """Covariance of z = [h, y], shape (d + n, d + n)."""
        return self._in_data_units(self._joint)[1] / self.num_samples

    def feature_covariance(self) -> np.ndarray:
        """(1/M) sum (h_i - hbar)(h_i - hbar)^T, shape (d, d)."""
        d = self.dim
        return self.joint_covariance()[:d, :d]

    def target_covariance(self) -> np.ndarray:
        """Sigma = (1/M) sum (y_i - ybar)(y_i - ybar)^T, shape (n, n)."""
        d = self.dim
        return self.joint_covariance()[d:, d:]

    def unit_second_moment(self) -> np.ndarray:
        """(1/M') sum h~_i h~_i^T over the M' nonzero features (not centred), (d, d)."""
        if self.unit_count == 0:
            raise NCInputError("every feature vector is zero: normalized features are undefined")
        mean, scatter = self._in_data_units(self._unit)
        return scatter / self.unit_count + np.outer(mean, mean)

    def _check_parts(self, values: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        if int(values["unit"]["counts"].sum()) > int(values["joint"]["counts"].sum()):
            raise NCInputError("state entry 'unit_counts' exceeds 'joint_counts'")

    def __repr__(self) -> str:
        return (f"RegressionStats(dim={self.dim}, target_dim={self.target_dim}, "
                f"num_samples={self.num_samples})")


