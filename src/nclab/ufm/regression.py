"""The regression unconstrained features model (definitions §5): closed form and solver.

Targets Y (M x n, one row per sample), free features H (M x d, one row per sample), a
linear head W (n x d) and bias b (n):

    L(H, W, b) = (1/2M) ||H W^T + 1 b^T - Y||_F^2 + (lambda_H/2M) ||H||_F^2
                 + (lambda_W/2) ||W||_F^2

(the definitions write H as d x M; here it is its transpose, like every feature array in nclab.)
With c = lambda_H lambda_W and Sigma = Q diag(lambda) Q^T the target covariance,
eliminating H and b leaves a spectral problem in W W^T, solved direction by direction:

    W W^T = sqrt(lambda_H/lambda_W) Q diag((sqrt(lambda_j) - sqrt(c))_+) Q^T,  b = ybar,
    H^T   = (W^T W + lambda_H I)^-1 W^T (Y - Ybar)^T,
    L*    = sum_{j active} (sqrt(c lambda_j) - c/2) + sum_{j inactive} lambda_j / 2.

A direction is active when lambda_j > c; when d < n only the d largest such can be (each
active direction lowers the loss by (sqrt(lambda_j) - sqrt(c))^2 / 2, which grows with
lambda_j). Regimes: "collapse" (c < lambda_min, every direction active; the definitions' formula),
"partial" (lambda_min <= c < lambda_max), "zero" (c >= lambda_max: W = 0, H = 0) and
"none" (lambda_H = lambda_W = 0: every full-rank interpolating W is optimal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nclab.core.errors import NCInputError
from nclab.core.measure import measure_regression
from nclab.core.regression_metrics import RegressionMetrics
from nclab.core.validation import (
    as_targets,
    check_memory,
    positive_int,
    positive_number,
    to_numpy64,
)

REGIMES = ("collapse", "partial", "zero", "none")
#: Arrays the solver holds at once: copies of the features H (M x d) and of W (n x d) (the
#: point, the previous one, the look-ahead, the candidate and their gradients), and of
#: the targets' size (M x n: the targets and the residuals).
SOLVE_FEATURE_COPIES, SOLVE_TARGET_COPIES = 8, 4


# ---------------------------------------------------------------------------- the model
def target_moments(targets: Any) -> tuple[np.ndarray, np.ndarray]:
    """(ybar (n,), Sigma (n, n)) of targets (M, n) or (M,), in float64."""
    y = _as_targets(targets)
    mean = y.mean(axis=0)
    centred = y - mean
    return mean, centred.T @ centred / len(y)


def regime(c: float, eigenvalues: np.ndarray, penalties: tuple[float, float] = (1, 1)) -> str:
    """Which regime c = lambda_H lambda_W is in, for Sigma's eigenvalues."""
    if penalties[0] == 0 and penalties[1] == 0:
        return "none"
    if c < np.min(eigenvalues):
        return "collapse"
    return "partial" if c < np.max(eigenvalues) else "zero"


def active_directions(eigenvalues: np.ndarray, c: float, dim: int) -> np.ndarray:
    """Indices of the directions of Sigma that survive: lambda_j > c, at most ``dim`` largest."""
    order = np.argsort(eigenvalues)[::-1]
    return np.sort(order[eigenvalues[order] > c][:dim])


def ufm_loss(
    targets: Any, features: np.ndarray, weight: np.ndarray, bias: np.ndarray,
    lambda_H: float, lambda_W: float,
) -> float:
    """L(H, W, b) for features (M, d), weight (n, d), bias (n,)."""
    y = _as_targets(targets)
    m = len(y)
    residual = features @ weight.T + bias - y
    return float(
        (np.sum(residual**2) + lambda_H * np.sum(features**2)) / (2 * m)
        + lambda_W / 2 * np.sum(weight**2)
    )


def optimal_loss(targets: Any, lambda_H: float, lambda_W: float, dim: int) -> float:
    """L*, the minimum of the UFM loss (the definitions' formula in the collapse regime)."""
    _check_penalties(lambda_H, lambda_W)
    _, sigma = target_moments(targets)
    eigenvalues = np.clip(np.linalg.eigvalsh(sigma), 0, None)
    c = lambda_H * lambda_W
    active = np.zeros(len(eigenvalues), dtype=bool)
    active[active_directions(eigenvalues, c, _check_dim(dim))] = True
    if lambda_H == 0 or lambda_W == 0:  # c = 0: active directions are fitted exactly
        return float(eigenvalues[~active].sum() / 2)
    kept = math.sqrt(c) * np.sqrt(eigenvalues[active]) - c / 2
    return float(kept.sum() + eigenvalues[~active].sum() / 2)


@dataclass(frozen=True)
class RegressionUFMSolution:
    """A point (W, H, b) of the regression UFM and how it was obtained.

    Attributes
    ----------
    weight : ndarray (n, d)
    features : ndarray (M, d)
    bias : ndarray (n,)
    loss : float
    c : float
        lambda_H lambda_W.
    regime : str
        One of ``REGIMES``.
    steps : int
        Gradient steps taken (0 for the closed form).
    converged : bool
        The solver met its gradient tolerance (always True for the closed form).
    history : tuple of float
        Loss every ``record_every`` steps of the solver.
    """

    weight: np.ndarray
    features: np.ndarray
    bias: np.ndarray
    loss: float
    c: float
    regime: str
    steps: int = 0
    converged: bool = True
    history: tuple[float, ...] = field(default=(), repr=False)

    @property
    def gram(self) -> np.ndarray:
        """W W^T, shape (n, n): the invariant part of W (W is unique up to W -> W V)."""
        return self.weight @ self.weight.T

    def metrics(self, targets: Any, gamma: float | str | None = "search") -> RegressionMetrics:
        """NRC1-NRC3 and the fit of this solution on its targets."""
        return measure_regression(self.features, targets, self.weight, self.bias, gamma=gamma)


def targets_with_spectrum(samples: int, eigenvalues: Any, seed: int = 0) -> np.ndarray:
    """Gaussian targets (M, n) whose sample covariance has exactly these eigenvalues.

    Parameters
    ----------
    samples : int
        M, more than n = len(eigenvalues).
    eigenvalues : array (n,)
        Positive eigenvalues of the target covariance.
    seed : int
        Seed of the draw, of the eigenvectors and of the mean.
    """
    eigenvalues = np.asarray(eigenvalues, dtype=float)
    if samples <= len(eigenvalues):
        raise NCInputError(f"--samples must exceed --target-dim={len(eigenvalues)}; "
                           f"got {samples}")
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(samples, len(eigenvalues)))
    raw -= raw.mean(axis=0)
    values, vectors = np.linalg.eigh(raw.T @ raw / samples)
    rotation, _ = np.linalg.qr(rng.normal(size=(len(eigenvalues),) * 2))
    white = raw @ (vectors / np.sqrt(values)) @ vectors.T
    offset = rng.normal(size=len(eigenvalues))
    return white @ (rotation * np.sqrt(eigenvalues)) @ rotation.T + offset


def gram_error(solution: RegressionUFMSolution, targets: Any, lambda_H: float,
               lambda_W: float, dim: int) -> float | None:
    """||W W^T - closed form||_F / ||closed form||_F of ``solution`` (absolute when the
    closed form is W* = 0); None when a penalty is 0 (no closed form)."""
    if lambda_H <= 0 or lambda_W <= 0:
        return None
    reference = closed_form(targets, lambda_H, lambda_W, dim).gram
    if not reference.any():
        return float(np.linalg.norm(solution.gram))
    return float(np.linalg.norm(solution.gram - reference) / np.linalg.norm(reference))


def closed_form(
    targets: Any, lambda_H: float, lambda_W: float, dim: int, basis: np.ndarray | None = None
) -> RegressionUFMSolution:
    """The global minimizer of the regression UFM, in every regime with c > 0.

    Parameters
    ----------
    targets : array (M, n) or (M,)
    lambda_H, lambda_W : float
        Both > 0 (with c = 0 the minimizer is not unique, or not attained).
    dim : int
        Feature dimension d.
    basis : array (d, d), optional
        Orthogonal matrix whose first columns carry W's row space; the identity when
        omitted. Every orthogonal choice gives a minimizer (W -> W V leaves L unchanged).

    Returns
    -------
    RegressionUFMSolution
    """
    _check_penalties(lambda_H, lambda_W)
    if lambda_H == 0 or lambda_W == 0:
        raise NCInputError(
            "closed form needs lambda_H > 0 and lambda_W > 0: with c = 0 the minimizer is not "
            "unique (both 0: any full-rank W with H = W^+ Y + (I - W^+ W) Z) or not attained"
        )
    y = _as_targets(targets)
    d = _check_dim(dim)
    mean, sigma = target_moments(y)
    eigenvalues, vectors = np.linalg.eigh(sigma)
    eigenvalues = np.clip(eigenvalues, 0, None)
    c = lambda_H * lambda_W
    active = active_directions(eigenvalues, c, d)
    basis = np.eye(d) if basis is None else _check_basis(basis, d)
    scale = np.sqrt(math.sqrt(lambda_H / lambda_W) * (np.sqrt(eigenvalues[active]) - math.sqrt(c)))
    weight = (vectors[:, active] * scale) @ basis[:, : len(active)].T
    features = optimal_features(y - mean, weight, lambda_H)
    return RegressionUFMSolution(
        weight=weight, features=features, bias=mean,
        loss=ufm_loss(y, features, weight, mean, lambda_H, lambda_W),
        c=c, regime=regime(c, eigenvalues, (lambda_H, lambda_W)),
    )


def optimal_features(
    centred_targets: np.ndarray, weight: np.ndarray, lambda_H: float
) -> np.ndarray:
    """argmin_H for fixed W and b = ybar: H = (Y - Ybar) W (W^T W + lambda_H I)^-1, (M, d)."""
    d = weight.shape[1]
    return np.linalg.solve(weight.T @ weight + lambda_H * np.eye(d), weight.T @ centred_targets.T).T


# ---------------------------------------------------------------------------- the solver
def solve(
    targets: Any,
    lambda_H: float,
    lambda_W: float,
    dim: int,
    *,
    seed: int = 0,
    steps: int = 50_000,
    tol: float = 1e-12,
    init_scale: float = 1.0,
    record_every: int = 100,
    progress: Any = None,
) -> RegressionUFMSolution:
    """Minimize the UFM loss by accelerated gradient descent from a random start, in float64.

    Each feature h_i is a per-sample parameter whose loss term carries a 1/M: its step is
    M times larger (gradient descent on the per-sample loss), so that W and H move at the
    same pace whatever M is. Nesterov momentum with adaptive restart (the momentum is
    dropped whenever the loss goes up) keeps it a descent method; the step is 1/L for a
    local Lipschitz bound L recomputed every step.

    Parameters
    ----------
    targets : array (M, n) or (M,)
    lambda_H, lambda_W : float
        Penalties, >= 0. With both 0 nothing pulls H out of W's null space: no collapse.
    dim : int
        Feature dimension d.
    seed : int
        Seed of the random start (W, H entries N(0, init_scale^2 / d), b = 0).
    steps : int
        Most gradient steps.
    tol : float
        Stop when the norm of the (scaled) gradient is below tol times its norm at the start.
    record_every : int
        Record the loss every this many steps in ``history``.
    progress : callable, optional
        Called as ``progress(step, loss)`` every ``record_every`` steps.

    Returns
    -------
    RegressionUFMSolution
    """
    _check_penalties(lambda_H, lambda_W)
    y = _as_targets(targets)
    d, (m, n) = _check_dim(dim), y.shape
    check_memory(solve_bytes(m, n, d), "cpu", f"the regression UFM with M={m}, n={n}, d={d}")
    rng = np.random.default_rng(seed)
    point = [rng.normal(0, init_scale / math.sqrt(d), size=(n, d)),
             rng.normal(0, init_scale / math.sqrt(d), size=(m, d)), np.zeros(n)]
    loss, grad = _loss_and_scaled_gradient(y, *point, lambda_H, lambda_W)
    start_norm = _norm(grad)
    previous = [p.copy() for p in point]
    momentum, history, converged, step = 0.0, [loss], start_norm == 0, 0
    for step in range(1, steps + 1):
        if converged:
            step -= 1
            break
        # Nesterov: look ahead along the last move, then take a gradient step from there
        beta = momentum / (momentum + 3)
        ahead = [p + beta * (p - q) for p, q in zip(point, previous, strict=True)]
        _, grad_ahead = _loss_and_scaled_gradient(y, *ahead, lambda_H, lambda_W)
        rate = 1 / _lipschitz(ahead[0], ahead[1], lambda_H, lambda_W)
        candidate = [a - rate * g for a, g in zip(ahead, grad_ahead, strict=True)]
        new_loss, new_grad = _loss_and_scaled_gradient(y, *candidate, lambda_H, lambda_W)
        if new_loss > loss and momentum > 0:  # adaptive restart: drop the momentum
            momentum = 0.0
            continue
        previous, point, loss, grad = point, candidate, new_loss, new_grad
        momentum += 1
        converged = _norm(grad) <= tol * start_norm
        if step % record_every == 0:
            history.append(loss)
            if progress is not None:
                progress(step, loss)
    weight, features, bias = point
    c = lambda_H * lambda_W
    eigenvalues = np.linalg.eigvalsh(target_moments(y)[1])
    return RegressionUFMSolution(
        weight=weight, features=features, bias=bias, loss=loss, c=c,
        regime=regime(c, eigenvalues, (lambda_H, lambda_W)), steps=step,
        converged=bool(converged), history=tuple(history),
    )


def solve_bytes(samples: int, target_dim: int, dim: int) -> int:
    """Memory of one :func:`solve` (float64), in bytes, for M samples, n targets, d dims."""
    return 8 * (SOLVE_FEATURE_COPIES * (samples + target_dim) * dim
                + SOLVE_TARGET_COPIES * samples * target_dim)


def _loss_and_scaled_gradient(
    y: np.ndarray, weight: np.ndarray, features: np.ndarray, bias: np.ndarray,
    lambda_H: float, lambda_W: float,
) -> tuple[float, list[np.ndarray]]:
    """L and (dL/dW, M dL/dH, dL/db): the features' gradient is per sample."""
    m = len(y)
    residual = features @ weight.T + bias - y
    loss = ((np.sum(residual**2) + lambda_H * np.sum(features**2)) / (2 * m)
            + lambda_W / 2 * np.sum(weight**2))
    grad_w = residual.T @ features / m + lambda_W * weight
    grad_h = residual @ weight + lambda_H * features
    return float(loss), [grad_w, grad_h, residual.mean(axis=0)]


def _lipschitz(weight: np.ndarray, features: np.ndarray, lambda_H: float, lambda_W: float) -> float:
    """A local bound on the curvature of the scaled problem (block diagonals + coupling)."""
    m = len(features)
    w2 = np.linalg.norm(weight, 2) ** 2
    h2 = np.linalg.norm(features, 2) ** 2 / m
    return 2 * max(w2 + lambda_H, h2 + lambda_W, 1.0) + 2 * math.sqrt(w2 * h2)


def _norm(parts: list[np.ndarray]) -> float:
    return math.sqrt(sum(float(np.sum(p * p)) for p in parts))


# ---------------------------------------------------------------------------- validation
def _as_targets(targets: Any) -> np.ndarray:
    y = to_numpy64(as_targets(targets, check_finite=True))
    if y.shape[0] < 2:
        raise NCInputError(f"targets must be (M, n) with M >= 2; got shape {np.shape(targets)}")
    return y


def _check_dim(dim: int) -> int:
    return positive_int(dim, "dim")


def _check_penalties(lambda_H: float, lambda_W: float) -> None:
    positive_number(lambda_H, "lambda_H", allow_zero=True)
    positive_number(lambda_W, "lambda_W", allow_zero=True)


def _check_basis(basis: np.ndarray, d: int) -> np.ndarray:
    v = np.asarray(basis, dtype=np.float64)
    if v.shape != (d, d) or not np.allclose(v.T @ v, np.eye(d), atol=1e-10):
        raise NCInputError(f"basis must be an orthogonal (d, d) = ({d}, {d}) matrix")
    return v
