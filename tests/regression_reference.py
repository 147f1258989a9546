"""Brute-force float64 reference of definitions §5, written independently of nclab.

Dense matrices over the samples held in memory, scikit-learn's PCA, scipy's sqrtm and a
fine grid for gamma: no streaming and no eigenbasis shortcuts.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import sqrtm
from sklearn.decomposition import PCA


def nrc_reference(H, Y, W=None, gamma=None):
    H = np.asarray(H, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(len(H), -1)
    M, d = H.shape
    n = Y.shape[1]
    Hn = H / np.linalg.norm(H, axis=1, keepdims=True)
    out = {}
    if n < d:
        V = PCA(n_components=n, svd_solver="full").fit(H).components_.T
        out["nrc1"] = np.mean(np.sum((Hn - Hn @ V @ V.T) ** 2, axis=1))
    else:
        out["nrc1"] = 0.0
    if W is None:
        return out
    W = np.asarray(W, dtype=np.float64)
    P = np.linalg.pinv(W) @ W
    out["nrc2"] = np.mean(np.sum((Hn - Hn @ P) ** 2, axis=1))
    if n > 1 and gamma is not None:
        out["nrc3"] = nrc3_reference(W, Y, gamma)
    return {k: float(v) for k, v in out.items()}


def nrc3_reference(W, Y, gamma):
    Sigma = np.cov(np.asarray(Y, dtype=np.float64).T, bias=True)
    A = np.real(sqrtm(Sigma)) - np.sqrt(gamma) * np.eye(len(Sigma))
    G = W @ W.T
    D = G / np.linalg.norm(G) - A / np.linalg.norm(A)
    return float(np.sum(D * D))


def nrc3_grid_minimum(W, Y, points=4000):
    """min over a fine grid of gamma in (0, lambda_min) of NRC3, and the argmin."""
    lam_min = np.linalg.eigvalsh(np.cov(np.asarray(Y, dtype=np.float64).T, bias=True))[0]
    grid = lam_min * np.linspace(0, 1, points + 2)[1:-1]
    values = [nrc3_reference(W, Y, g) for g in grid]
    k = int(np.argmin(values))
    return values[k], grid[k]


def regression_problem(rng, M=300, d=12, n=3, noise=0.3, offset=0.0):
    """Features with structure (a low-rank part plus noise), a head W, b, and targets."""
    basis = rng.normal(size=(n + 2, d))
    H = rng.normal(size=(M, n + 2)) @ basis + noise * rng.normal(size=(M, d)) + offset
    W = rng.normal(size=(n, d))
    b = rng.normal(size=n)
    Y = H @ W.T + b + 0.5 * rng.normal(size=(M, n))
    return H, Y, W, b
