"""Brute-force float64 reference of definitions §1, written independently of nclab.

Everything is computed from the features held in memory with explicit loops and dense
matrices; no streaming, no tiling, no shortcuts.
"""

from __future__ import annotations

import itertools

import numpy as np


def reference_metrics(H, y, W=None, b=None, weighted=False, ood=None):
    H = np.asarray(H, dtype=np.float64)
    y = np.asarray(y)
    classes = sorted(set(y.tolist()))
    C = len(classes)
    N, d = H.shape
    mu = np.array([H[y == c].mean(axis=0) for c in classes])
    mu_G = H.mean(axis=0) if weighted else mu.mean(axis=0)
    Mt = mu - mu_G

    Sigma_W = np.zeros((d, d))
    for i in range(N):
        k = classes.index(y[i])
        r = H[i] - mu[k]
        Sigma_W += np.outer(r, r)
    Sigma_W /= N
    Sigma_B = sum(np.outer(m, m) for m in Mt) / C

    evals, evecs = np.linalg.eigh(Sigma_B)
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    rank = C if weighted else C - 1
    tol = max(d, C) * np.finfo(float).eps * evals[0]
    pinv = np.zeros((d, d))
    for k in range(min(rank, d)):
        if evals[k] > tol:
            pinv += np.outer(evecs[:, k], evecs[:, k]) / evals[k]
    out = {
        "nc1": np.trace(Sigma_W @ pinv) / C,
        "nc1_trace": np.trace(Sigma_W) / np.trace(Sigma_B),
    }
    sigma2 = [np.mean(np.sum((H[y == c] - mu[k]) ** 2, axis=1)) for k, c in enumerate(classes)]
    pairs = list(itertools.combinations(range(C), 2))
    out["cdnv"] = np.mean(
        [(sigma2[a] + sigma2[c]) / (2 * np.sum((mu[a] - mu[c]) ** 2)) for a, c in pairs]
    )

    def norm_stats(V):
        norms = [np.sqrt(np.sum(v * v)) for v in V]
        return np.std(norms) / np.mean(norms)

    def cos_stats(V):
        cos = [
            V[a] @ V[c] / np.sqrt((V[a] @ V[a]) * (V[c] @ V[c]))
            for a in range(C) for c in range(C) if a != c
        ]
        return np.std(cos), np.mean(np.abs(np.array(cos) + 1 / (C - 1)))

    def etf_gap(G):
        G = G / np.sqrt(np.sum(G * G))
        target = (np.eye(C) - np.ones((C, C)) / C) / np.sqrt(C - 1)
        return np.sqrt(np.sum((G - target) ** 2))

    out["equinorm_means"] = norm_stats(Mt)
    out["equiangularity_means"], out["maxangle_means"] = cos_stats(Mt)
    out["etf_error_means"] = etf_gap(Mt @ Mt.T)
    if W is not None:
        W = np.asarray(W, dtype=np.float64)[classes]
        out["equinorm_weights"] = norm_stats(W)
        out["equiangularity_weights"], out["maxangle_weights"] = cos_stats(W)
        out["etf_error_weights"] = etf_gap(W @ W.T)
        D = W / np.sqrt(np.sum(W * W)) - Mt / np.sqrt(np.sum(Mt * Mt))
        out["self_duality"] = np.sum(D * D)
        out["wh_duality"] = etf_gap(W @ Mt.T)
        bias = np.zeros(C) if b is None else np.asarray(b, dtype=np.float64)[classes]
        mismatch = correct = 0
        for i in range(N):
            logits = W @ H[i] + bias
            pred = classes[int(np.argmax(logits))]
            ncc = classes[int(np.argmin([np.sum((H[i] - m) ** 2) for m in mu]))]
            mismatch += pred != ncc
            correct += pred == y[i]
        out["ncc_mismatch"] = mismatch / N
        out["accuracy"] = correct / N
    out.update(modern_reference(mu, mu_G, W, None if b is None else bias, ood))
    return {k: float(v) for k, v in out.items()}


def modern_reference(mu, mu_G, W=None, b=None, ood=None):
    """The metrics of definitions §7 by explicit loops over classes and pairs.

    W and b hold the present classes' rows only.
    """
    C = len(mu)
    u = [(m - mu_G) / np.sqrt(np.sum((m - mu_G) ** 2)) for m in mu]
    chords = [np.sqrt(np.sum((u[a] - u[c]) ** 2)) for a, c in itertools.combinations(range(C), 2)]
    logs = [-np.log(k) for k in chords]
    out = {"gnc2_dist_means": np.var(chords), "gnc2_log_means": np.var(logs)}
    if W is not None:
        s = np.array([W[c] @ (mu[c] - mu_G) for c in range(C)])
        out["unc3_duality_cv"] = np.sqrt(np.mean((s - s.mean()) ** 2)) / s.mean()
        out["unc3_duality_var"] = np.sum((s - s.mean()) ** 2) / (C - 1)
        if b is not None:
            wg = np.array([W[c] @ mu_G for c in range(C)])
            out["bias_relation"] = np.linalg.norm(wg + b) / (np.linalg.norm(wg) + np.linalg.norm(b))
    if ood is not None:
        g = np.asarray(ood, dtype=np.float64).mean(axis=0)
        out["nc5_ood_orthogonality"] = np.mean(
            [abs(m @ g) / np.sqrt((m @ m) * (g @ g)) for m in mu])
    return out


def simplex_etf(C, d, rng, scale=1.0):
    """C vectors of norm ``scale`` in R^d (d >= C-1), pairwise cosine -1/(C-1), rotated."""
    centring = np.eye(C) - np.ones((C, C)) / C
    u, s, _ = np.linalg.svd(centring)
    coords = u[:, : C - 1] * s[: C - 1]  # the ETF in its own C-1 dimensional span
    coords /= np.linalg.norm(coords, axis=1, keepdims=True)
    basis, _ = np.linalg.qr(rng.normal(size=(d, C - 1)))
    return scale * coords @ basis.T


def gaussian_classes(rng, C=6, d=10, sizes=None, spread=0.3, scale=3.0):
    sizes = sizes if sizes is not None else [40] * C
    mu = rng.normal(size=(C, d)) * scale
    y = np.concatenate([np.full(n, c) for c, n in enumerate(sizes)])
    H = mu[y] + spread * rng.normal(size=(len(y), d))
    perm = rng.permutation(len(y))
    return H[perm], y[perm]
