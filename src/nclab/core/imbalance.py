"""Collapse under imbalanced classes: minority collapse and the SELI geometry (definitions §12).

Pure functions of a classifier W (C, d), class means (C, d), class counts and the list of
minority classes:

- :func:`minority_collapse_weights`, :func:`minority_collapse_means`: the mean pairwise
  cosine of the minority classes' classifier rows / centred class means (Fang, He, Long &
  Su, PNAS 2021). -1/(C-1) on a simplex ETF; it rises towards 1 as the minority collapse.
- :func:`seli_grams`: the Gram matrices of the SELI geometry for given class counts
  (Thrampoulidis, Kini, Vakilian & Behnia, NeurIPS 2022), in closed form:
  W W^T ~ (P N P)^(1/2) and M M^T ~ ((P N P)^+)^(1/2), with P = I - 11^T/C and
  N = diag(n_1, ..., n_C); both are proportional to P (the simplex ETF) for equal counts.
- :func:`seli_distance_weights`, :func:`seli_distance_means`: the normalized Frobenius
  distance of W W^T and of M~ M~^T to them.
- :func:`group_accuracies`: the mean per-class accuracy of the majority and of the minority.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from nclab.core.errors import NCInputError


def _rows(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 2:
        raise NCInputError(f"{name} must be a (C, d) array with C >= 2; got shape "
                           f"{array.shape}")
    if not np.isfinite(array).all():
        raise NCInputError(f"{name} holds NaN or infinite values")
    return array


def _minority(minority: Sequence[int], num_classes: int) -> np.ndarray:
    index = np.asarray(list(minority), dtype=np.int64)
    if len(index) < 2:
        raise NCInputError(f"minority collapse needs at least 2 minority classes; got "
                           f"{index.tolist()}")
    if len(set(index.tolist())) != len(index) or index.min() < 0 or index.max() >= num_classes:
        raise NCInputError(f"minority classes must be distinct classes in 0..{num_classes - 1}; "
                           f"got {index.tolist()}")
    return index


def mean_pairwise_cosine(vectors: Any, name: str = "vectors") -> float:
    """Mean over pairs a < b of cos(v_a, v_b), for vectors (k, d), k >= 2.

    Raises NCInputError for a zero vector (its cosine is undefined).
    """
    rows = _rows(vectors, name)
    norms = np.linalg.norm(rows, axis=1)
    if (norms == 0).any():
        raise NCInputError(f"{name}: row {int(np.flatnonzero(norms == 0)[0])} is zero, its "
                           "cosine is undefined")
    unit = rows / norms[:, None]
    upper = np.triu_indices(len(rows), k=1)
    return float(np.mean((unit @ unit.T)[upper]))


def minority_collapse_weights(weight: Any, minority: Sequence[int]) -> float:
    """Mean pairwise cosine of the classifier rows w_c of the minority classes.

    Parameters
    ----------
    weight : array of shape (C, d)
    minority : sequence of int
        At least two distinct classes.

    Returns
    -------
    float
        -1/(C-1) on a simplex ETF; 1 when the minority rows share one direction.
    """
    w = _rows(weight, "weight")
    return mean_pairwise_cosine(w[_minority(minority, len(w))], "minority rows of W")


def centred_means(means: Any) -> np.ndarray:
    """mu~_c = mu_c - mu_G (C, d), mu_G the plain average of the class means (§Notation)."""
    m = _rows(means, "means")
    return m - m.mean(axis=0)


def minority_collapse_means(means: Any, minority: Sequence[int]) -> float:
    """Mean pairwise cosine of the centred class means mu~_c of the minority classes.

    ``means`` (C, d) are the class means of every class (uncentred): they are centred by
    the plain average of the class means, as in every metric of §1.
    """
    centred = centred_means(means)
    return mean_pairwise_cosine(centred[_minority(minority, len(centred))],
                                "minority centred means")


def _counts(counts: Any) -> np.ndarray:
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or len(n) < 2:
        raise NCInputError(f"counts must be C >= 2 class counts; got shape {n.shape}")
    if not np.isfinite(n).all() or (n <= 0).any():
        raise NCInputError(f"every class count must be > 0 for the SELI geometry; got "
                           f"{n.tolist()}")
    return n


def seli_grams(counts: Any) -> tuple[np.ndarray, np.ndarray]:
    """The SELI Gram matrices of the classifier and of the class means, unit Frobenius norm.

    Parameters
    ----------
    counts : array of shape (C,)
        n_c > 0 (only their ratios matter).

    Returns
    -------
    weights : ndarray of shape (C, C)
        (P N P)^(1/2) / ‖.‖_F: the SELI shape of W W^T (U Lambda U^T).
    means : ndarray of shape (C, C)
        ((P N P)^+)^(1/2) / ‖.‖_F: the SELI shape of M M^T (the classes' blocks of
        V Lambda V^T).

    Notes
    -----
    The simplex-encoded label matrix is Z = P Y (C x N), with Y the one-hot labels and
    P = I - 11^T/C. Z Z^T = P Y Y^T P = P N P, so with Z = U Lambda V^T (rank C-1),
    U Lambda U^T = (P N P)^(1/2); and V Lambda V^T = Z^T U Lambda^-1 U^T Z
    = Y^T ((P N P)^+)^(1/2) Y: equal for the samples of a class, whose features coincide
    there. P N P = Q A Q^T with Q an orthonormal basis of 1^perp and A = Q^T N Q positive
    definite: both roots come from the eigenvalues of A, all >= min n_c.
    """
    n = _counts(counts)
    num = len(n)
    # an orthonormal basis of the vectors orthogonal to 1: the last C-1 columns of a QR of
    # [1, I]
    basis = np.linalg.qr(np.column_stack([np.ones(num), np.eye(num)[:, :num - 1]]))[0][:, 1:]
    values, vectors = np.linalg.eigh(basis.T @ (n[:, None] * basis))
    frame = basis @ vectors
    root = (frame * np.sqrt(values)) @ frame.T
    inverse_root = (frame / np.sqrt(values)) @ frame.T
    return root / np.linalg.norm(root), inverse_root / np.linalg.norm(inverse_root)


def _gram_distance(gram: np.ndarray, target: np.ndarray, what: str) -> float:
    norm = np.linalg.norm(gram)
    if norm == 0:
        raise NCInputError(f"{what} is zero: its distance to the SELI geometry is undefined")
    return float(np.linalg.norm(gram / norm - target))


def seli_distance_weights(weight: Any, counts: Any) -> float:
    """‖G/‖G‖_F − S_W‖_F with G = W W^T and S_W the SELI Gram of :func:`seli_grams`.

    With equal counts this is ``etf_error_weights`` (§1).
    """
    w = _rows(weight, "weight")
    target = seli_grams(counts)[0]
    if len(target) != len(w):
        raise NCInputError(f"weight has {len(w)} rows but there are {len(target)} counts")
    return _gram_distance(w @ w.T, target, "W W^T")


def seli_distance_means(means: Any, counts: Any) -> float:
    """‖G/‖G‖_F − S_M‖_F with G = M~ M~^T (centred means) and S_M of :func:`seli_grams`.

    With equal counts this is ``etf_error_means`` (§1).
    """
    centred = centred_means(means)
    target = seli_grams(counts)[1]
    if len(target) != len(centred):
        raise NCInputError(f"means has {len(centred)} rows but there are {len(target)} counts")
    return _gram_distance(centred @ centred.T, target, "M~ M~^T")


def group_accuracies(per_class_accuracy: Any, minority: Sequence[int]) -> tuple[float, float]:
    """(majority, minority) accuracy: the mean per-class accuracy of each group.

    Parameters
    ----------
    per_class_accuracy : array of shape (C,)
        The accuracy of each class (fractions of its samples).
    minority : sequence of int
        The minority classes; every other class is the majority. Each group needs a class.
    """
    accuracy = np.asarray(per_class_accuracy, dtype=np.float64)
    if accuracy.ndim != 1:
        raise NCInputError(f"per_class_accuracy must be (C,); got shape {accuracy.shape}")
    index = np.asarray(list(minority), dtype=np.int64)
    if len(index) == 0 or len(index) >= len(accuracy) or index.min() < 0 \
            or index.max() >= len(accuracy):
        raise NCInputError(f"the minority classes {index.tolist()} must be a proper, nonempty "
                           f"subset of 0..{len(accuracy) - 1}")
    is_minority = np.zeros(len(accuracy), dtype=bool)
    is_minority[index] = True
    return float(accuracy[~is_minority].mean()), float(accuracy[is_minority].mean())


def imbalance_metrics(weight: Any, means: Any, counts: Any, minority: Sequence[int],
                      per_class_accuracy: Any = None) -> dict[str, float | None]:
    """Every number of §12 in one dict (None where undefined: fewer than two minority
    classes, a zero row or a zero Gram matrix; shapes that disagree are an error)."""
    rows = {"weight": len(_rows(weight, "weight")), "means": len(_rows(means, "means")),
            "counts": len(_counts(counts))}
    if len(set(rows.values())) != 1:
        raise NCInputError("weight, means and counts must have one entry per class; got "
                           + ", ".join(f"{key} {value}" for key, value in rows.items()))
    values: dict[str, float | None] = {}
    for key, compute in (
            ("minority_collapse_weights", lambda: minority_collapse_weights(weight, minority)),
            ("minority_collapse_means", lambda: minority_collapse_means(means, minority)),
            ("seli_distance_weights", lambda: seli_distance_weights(weight, counts)),
            ("seli_distance_means", lambda: seli_distance_means(means, counts))):
        try:
            values[key] = compute()
        except NCInputError:
            values[key] = None
    if per_class_accuracy is not None:
        majority, minor = group_accuracies(per_class_accuracy, minority)
        values.update(majority_accuracy=majority, minority_accuracy=minor)
    return {key: None if value is None or not math.isfinite(value) else value
            for key, value in values.items()}
