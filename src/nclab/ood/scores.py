"""Per-sample out-of-distribution scores, one pure function each (definitions §9).

Convention, for every score here: **higher means more in-distribution**. Each function
takes floating-point torch tensors (float64 for exact results; any device) and returns
a tensor of shape (n,), one score per row; nothing is fitted here (the in-distribution
quantities they take, such as class means, a whitener or principal axes, come from
:mod:`nclab.ood.evaluate`).
"""

from __future__ import annotations

import torch

__all__ = ["energy", "mahalanobis", "max_logit", "max_softmax", "nci", "neco"]


def max_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Maximum softmax probability (Hendrycks & Gimpel, 2017): max_c softmax(l)_c.

    Parameters
    ----------
    logits : Tensor of shape (n, C)

    Returns
    -------
    Tensor of shape (n,), in (1/C, 1]
    """
    # exp(l_max - logsumexp(l)): no exponential of a large logit is ever formed
    return torch.exp(logits.amax(dim=1) - torch.logsumexp(logits, dim=1))


def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Negative free energy (Liu et al., 2020): T logsumexp(l / T).

    Parameters
    ----------
    logits : Tensor of shape (n, C)
    temperature : float
        T > 0 (Liu et al. use 1).

    Returns
    -------
    Tensor of shape (n,)
    """
    return temperature * torch.logsumexp(logits / temperature, dim=1)


def max_logit(logits: torch.Tensor) -> torch.Tensor:
    """The largest logit max_c l_c (Hendrycks et al., 2022), shape (n,)."""
    return logits.amax(dim=1)


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Each row divided by its Euclidean norm (zero rows stay zero); rows are first
    divided by their largest magnitude, so that no square over- or underflows."""
    peak = x.abs().amax(dim=1, keepdim=True)
    x = x / torch.where(peak > 0, peak, torch.ones_like(peak))
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    return x / torch.where(norm > 0, norm, torch.ones_like(norm))


def mahalanobis(features: torch.Tensor, means: torch.Tensor,
                whitener: torch.Tensor) -> torch.Tensor:
    """Negative squared Mahalanobis distance to the nearest class mean (Lee et al., 2018):
    -min_c (h - mu_c)^T P (h - mu_c), with P = L L^T.

    Parameters
    ----------
    features : Tensor of shape (n, d)
    means : Tensor of shape (C, d)
        The class means mu_c.
    whitener : Tensor of shape (d, r)
        Any L with L L^T = P, the (pseudo-)inverse of the shared covariance.

    Returns
    -------
    Tensor of shape (n,), <= 0

    Notes
    -----
    The nearest mean is found from the expansion |hL|^2 - 2 (hL).(mu_c L) + |mu_c L|^2,
    and its distance is then recomputed from the difference (h - mu_c) L: the expansion
    cancels catastrophically for collapsed features, whose distance to their own class
    mean is tiny next to the means' norms.
    """
    z, centres = features @ whitener, means @ whitener
    approx = (z * z).sum(dim=1, keepdim=True) - 2 * z @ centres.T \
        + (centres * centres).sum(dim=1)
    nearest = approx.argmin(dim=1)
    diff = z - centres[nearest]
    return -(diff * diff).sum(dim=1)


def neco(features: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor,
         components: torch.Tensor) -> torch.Tensor:
    """NECO (Ammar et al., 2024): ||V_k^T z|| / ||z|| with z = (h - mean) / scale.

    Parameters
    ----------
    features : Tensor of shape (n, d)
    mean : Tensor of shape (d,)
        The mean of the in-distribution features.
    scale : Tensor of shape (d,)
        Per-coordinate divisors: the in-distribution standard deviations (the
        authors' code standardizes), or ones.
    components : Tensor of shape (d, k)
        Orthonormal columns: the top-k principal axes of the in-distribution z.

    Returns
    -------
    Tensor of shape (n,), in [0, 1]; 1 for a feature exactly at the mean (the limit
    along the principal subspace; 0/0 otherwise).
    """
    direction = _unit_rows((features - mean) / scale)
    ratio = torch.linalg.vector_norm(direction @ components, dim=1)
    at_mean = (direction == 0).all(dim=1)
    return torch.where(at_mean, torch.ones_like(ratio), ratio)


def nci(features: torch.Tensor, logits: torch.Tensor, weight: torch.Tensor,
        mean: torch.Tensor, alpha: float) -> torch.Tensor:
    """NCI (Liu & Qin, 2025): w_p . (h - mean) / ||h - mean|| + alpha ||h||_1, with
    p = argmax_c l_c the predicted class and w_p its classifier row.

    Parameters
    ----------
    features : Tensor of shape (n, d)
    logits : Tensor of shape (n, C)
    weight : Tensor of shape (C, d)
    mean : Tensor of shape (d,)
        The mean of the in-distribution features.
    alpha : float
        Weight of the L1-norm filter term (>= 0).

    Returns
    -------
    Tensor of shape (n,); the first term is 0 for a feature exactly at the mean.
    """
    predicted = weight[logits.argmax(dim=1)]
    proximity = (predicted * _unit_rows(features - mean)).sum(dim=1)
    if alpha == 0:
        return proximity
    return proximity + alpha * torch.linalg.vector_norm(features, ord=1, dim=1)
