"""Pure float64 functions on class means and classifier rows (SPEC section 1).

Each takes plain numpy arrays and returns one number. Quantities over class pairs are
computed in square tiles of the upper triangle, so that C = 10,000 classes needs only
O(block^2) extra memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from nclab.core.errors import NCInputError

DEFAULT_BLOCK = 1024
# Above this many C x C entries the simplex gaps use trace identities on d x d matrices.
_DENSE_GRAM_LIMIT = 4_000_000


def upper_tiles(n: int, block: int = DEFAULT_BLOCK) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """Tiles (rows, cols, mask) covering the pairs i < j of an n x n matrix once each."""
    for i0 in range(0, n, block):
        rows = slice(i0, min(i0 + block, n))
        for j0 in range(i0, n, block):
            cols = slice(j0, min(j0 + block, n))
            i = np.arange(rows.start, rows.stop)[:, None]
            j = np.arange(cols.start, cols.stop)[None, :]
            yield rows, cols, i < j


def pseudo_inverse_trace(sigma_w: np.ndarray, centred_means: np.ndarray, max_rank: int) -> float:
    """Tr(Sigma_W Sigma_B^+) with Sigma_B = M~^T M~ / C.

    Sigma_B^+ keeps at most ``max_rank`` eigenpairs, and only those above
    max(d, C) * eps times the largest: a default-rcond pseudo-inverse would invert noise.
    """
    num_classes, dim = centred_means.shape
    _, singular, vt = np.linalg.svd(centred_means, full_matrices=False)
    eigen = singular**2 / num_classes
    if eigen.size == 0 or eigen[0] == 0:
        raise NCInputError("all class means coincide: the between-class covariance is zero")
    keep = eigen > max(dim, num_classes) * np.finfo(np.float64).eps * eigen[0]
    keep[max_rank:] = False
    v = vt[keep]
    return float(np.einsum("kd,de,ke->k", v, sigma_w, v) @ (1.0 / eigen[keep]))


def equinorm(vectors: np.ndarray) -> float:
    """std_c ||v_c|| / mean_c ||v_c|| (population std, ddof=0)."""
    norms = np.linalg.norm(vectors, axis=1)
    return float(norms.std() / norms.mean())


def cosine_moments(vectors: np.ndarray, block: int = DEFAULT_BLOCK) -> tuple[float, float]:
    """(equiangularity, maxangle) of the rows of ``vectors``.

    equiangularity = std over c != c' of cos(v_c, v_c'); maxangle = mean of
    |cos(v_c, v_c') + 1/(C-1)|. Sums are taken of cos + 1/(C-1), which is near zero
    at collapse, so the variance suffers no cancellation.
    """
    count = vectors.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    offset = 1.0 / (count - 1)
    total = total_sq = total_abs = 0.0
    for rows, cols, mask in upper_tiles(count, block):
        shifted = (unit[rows] @ unit[cols].T + offset)[mask]
        total += shifted.sum()
        total_sq += shifted @ shifted
        total_abs += np.abs(shifted).sum()
    pairs = count * (count - 1) / 2
    mean = total / pairs
    return float(np.sqrt(max(total_sq / pairs - mean**2, 0.0))), float(total_abs / pairs)


def cdnv(means: np.ndarray, variances: np.ndarray, block: int = DEFAULT_BLOCK) -> float:
    """Mean over pairs c < c' of (sigma_c^2 + sigma_c'^2) / (2 ||mu_c - mu_c'||^2).

    Distances come from a Gram tile; pairs whose distance is tiny next to the norms,
    where that formula cancels, are recomputed from explicit differences.
    """
    centred = means - means.mean(axis=0)
    norms = np.einsum("cd,cd->c", centred, centred)
    total = 0.0
    for rows, cols, mask in upper_tiles(len(means), block):
        scale = norms[rows, None] + norms[None, cols]
        dist = scale - 2 * centred[rows] @ centred[cols].T
        risky = np.argwhere(mask & (dist < 1e-6 * scale))
        for i, j in risky:
            diff = centred[rows.start + i] - centred[cols.start + j]
            dist[i, j] = diff @ diff
        with np.errstate(divide="ignore", invalid="ignore"):  # masked-out diagonal: 0/0
            ratio = (variances[rows, None] + variances[None, cols]) / (2 * dist)
        total += ratio[mask].sum()
    return float(total / (len(means) * (len(means) - 1) / 2))


def simplex_gap(left: np.ndarray, right: np.ndarray) -> float:
    """|| G/||G||_F - (I - 11^T/C)/sqrt(C-1) ||_F for G = left @ right.T (C x C).

    etf_error uses left = right = M~ (or W); wh_duality uses left = W, right = M~.
    For large C the C x C matrix is never formed: ||G||_F^2 = <L^T L, R^T R> and
    <G, I - 11^T/C> = Tr G - (1^T L)(R^T 1)/C.
    """
    count = left.shape[0]
    target_scale = 1.0 / np.sqrt(count - 1)
    if count * count <= _DENSE_GRAM_LIMIT:
        gram = left @ right.T
        target = (np.eye(count) - 1.0 / count) * target_scale
        return float(np.linalg.norm(gram / np.linalg.norm(gram) - target))
    gram_norm = np.sqrt(np.sum((left.T @ left) * (right.T @ right)))
    inner = np.einsum("cd,cd->", left, right) - left.sum(axis=0) @ right.sum(axis=0) / count
    return float(np.sqrt(max(2.0 - 2.0 * inner * target_scale / gram_norm, 0.0)))


def self_duality(weight: np.ndarray, centred_means: np.ndarray) -> float:
    """|| W/||W||_F - M~/||M~||_F ||_F^2 (Papyan's NC3)."""
    gap = weight / np.linalg.norm(weight) - centred_means / np.linalg.norm(centred_means)
    return float(np.sum(gap * gap))
