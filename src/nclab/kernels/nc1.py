"""NC1 of the features of a kernel, from its Gram matrix alone (definitions §3).

With class sizes n_c, S = Y^T K Y the C x C matrix of class-block sums (Y one-hot) and
G = S / (n n^T) the Gram matrix of the class means mu_c in feature space:

    Tr Sigma_W = (1/N) (Tr K - sum_c S_cc / n_c)
    Tr Sigma_B = (1/C) Tr (P G P^T),    P = I - 1 w^T

w = 1/C (the global mean is the plain average of class means, the definitions' default) or
w = n/N with ``weighted_mean``. Both are exact for unbalanced classes: they are the
definitions of section 1 written through the kernel trick, so on an explicit feature map
they equal ``nc1_trace`` of ``nclab.measure``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.geometry import power_of_two_scale
from nclab.core.validation import as_features, as_labels
from nclab.kernels._arrays import as_square

# Relative size below which a trace is indistinguishable from rounding noise.
_NOISE = 64 * np.finfo(np.float64).eps


@dataclass(frozen=True)
class KernelNC1:
    """Trace form of NC1 of a kernel's features.

    Attributes
    ----------
    trace_within : float
        Tr Sigma_W.
    trace_between : float
        Tr Sigma_B.
    nc1 : float
        trace_within / trace_between (``nc1_trace`` of definitions §1).
    num_samples, num_classes : int
        N, and C counting only classes with samples.
    weighted_mean : bool
    """

    trace_within: float
    trace_between: float
    nc1: float
    num_samples: int
    num_classes: int
    weighted_mean: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def kernel_nc1(K: Any, labels: Any, *, weighted_mean: bool = False) -> KernelNC1:
    """Tr Sigma_W, Tr Sigma_B and their ratio from a Gram matrix.

    Parameters
    ----------
    K : array or tensor of shape (N, N)
        Symmetric positive semi-definite Gram matrix of the samples.
    labels : array or tensor of shape (N,)
        Integer classes; classes without samples are left out.
    weighted_mean : bool
        Use the sample-weighted global mean instead of the average of class means.

    Returns
    -------
    KernelNC1
        The traces in the units of K (0 or inf where they leave the float64 range; the
        ratio is computed in range whatever the scale of K).
    """
    k = as_square(K)
    n = k.shape[0]
    y = as_labels(labels, n, None).to(k.device)
    if n == 0:
        raise NCInputError("K is empty")
    unit = _unit(k)
    k = k / unit  # exact: the sums below neither overflow nor underflow
    scale = float(k.abs().max())
    if float((k - k.T).abs().max()) > 1e-8 * scale:
        raise NCInputError("K is not symmetric")
    counts = torch.bincount(y)
    present = (counts > 0).nonzero().flatten()
    if len(present) < 2:
        raise NCInputError(f"need at least 2 classes with samples; got {len(present)}")
    onehot = (y[:, None] == present[None, :]).to(torch.float64)
    sizes = counts[present].to(torch.float64)
    block_sums = onehot.T @ (k @ onehot)
    trace = float(torch.diagonal(k).sum())
    within = (trace - float((torch.diagonal(block_sums) / sizes).sum())) / n
    if within < -_NOISE * max(trace, scale * n) / n:
        raise NCInputError(f"K is not positive semi-definite (Tr Sigma_W = {within:.3g} < 0)")
    between = _between_trace(block_sums / torch.outer(sizes, sizes), sizes, weighted_mean)
    if between <= _NOISE * max(trace, scale) / n:
        raise NCInputError("the class means coincide in feature space (Tr Sigma_B = 0)")
    within = max(within, 0.0)
    return KernelNC1(within * unit, between * unit, within / between, n, len(present),
                     weighted_mean)


def feature_nc1(features: Any, labels: Any, *, weighted_mean: bool = False) -> KernelNC1:
    """The same traces from explicit features, in O(N d) time and memory.

    ``kernel_nc1`` of the linear kernel H H^T without forming it: the within-class
    residuals are taken about the class means directly, so nothing cancels. Equal to
    ``nc1_trace`` of ``nclab.measure``; this one skips the d x d scatter the other metrics
    need, which matters when it is called at every step of a training run.

    Parameters
    ----------
    features : array or tensor of shape (N, d)
    labels : array or tensor of shape (N,)
    weighted_mean : bool

    Returns
    -------
    KernelNC1
        As :func:`kernel_nc1`: the traces in squared units of the features.
    """
    h = as_features(features).to(torch.float64)
    unit = _unit(h)
    h = h / unit  # exact: the squares below neither overflow nor underflow
    n = h.shape[0]
    y = as_labels(labels, n, None).to(h.device)
    if n == 0:
        raise NCInputError("features has no rows")
    counts = torch.bincount(y)
    present = (counts > 0).nonzero().flatten()
    if len(present) < 2:
        raise NCInputError(f"need at least 2 classes with samples; got {len(present)}")
    sums = torch.zeros(len(counts), h.shape[1], dtype=torch.float64, device=h.device)
    sums.index_add_(0, y, h)
    means = sums / counts.clamp(min=1)[:, None]
    within = float(((h - means[y]) ** 2).sum()) / n
    sizes = counts[present].to(torch.float64)
    present_means = means[present]
    between = _between_trace(present_means @ present_means.T, sizes, weighted_mean)
    if between <= _NOISE * float((present_means**2).sum(dim=1).max()):
        raise NCInputError("the class means coincide in feature space (Tr Sigma_B = 0)")
    return KernelNC1(within * unit * unit, between * unit * unit, within / between, n,
                     len(present), weighted_mean)


def _unit(x: torch.Tensor) -> float:
    """The power of two near the largest magnitude of ``x`` (1 for an empty or zero x)."""
    return power_of_two_scale(np.asarray(float(x.abs().max())) if x.numel() else np.zeros(0))


def _between_trace(mean_gram: torch.Tensor, sizes: torch.Tensor, weighted: bool) -> float:
    """(1/C) sum_c ||mu_c - mu_G||^2 from the Gram matrix of the class means."""
    num = len(sizes)
    weights = sizes / sizes.sum() if weighted else torch.full_like(sizes, 1.0 / num)
    centring = torch.eye(num, dtype=torch.float64, device=sizes.device) - weights[None, :]
    return float(torch.trace(centring @ mean_gram @ centring.T)) / num
