"""The adaptive kernel of Seroussi, Naveh & Ringel (2023): equations of state (definitions §3).

A two-layer network f(x) = sum_c a_c phi(w_c . x), with priors w_c ~ N(0, sigma_w^2/d0 I)
and a_c ~ N(0, sigma_a^2/h), fitted to targets y with noise sigma^2. Integrating out the
read-out and treating each w_c as Gaussian with covariance Sigma gives the kernel

    Q(Sigma)(x, x') = sigma_a^2 Kact(x^T Sigma x', x^T Sigma x, x'^T Sigma x')

and the self-consistency ("equations of state")

    t = (Qbar + sigma^2 I)^-1 y,       A = t t^T - k (Qbar + sigma^2 I)^-1
    Sigma^-1 = (d0/sigma_w^2) I - (1/h) d/dSigma Tr[A Q(Sigma)]

with Qbar = Q(Sigma) held fixed in the derivative and k the number of outputs (columns
of y). As h -> infinity, Sigma -> sigma_w^2 I/d0 and Q is the NNGP. (An optional
first-layer bias is the weight of a constant input: x gets a column of ones and the
prior a sigma_b^2 entry; the definitions' equations are the case sigma_b = 0.) The labels enter
only through t, so permuting them changes the solution.

The gradient is analytic. With s_ij = x_i^T Sigma x_j and Price's theorem
(dKact/dk12 = Kdot, dKact/dk11 = ``dvar``):

    d/dSigma Tr[A Q] = sigma_a^2 X^T (A o Kdot + diag(2 (A o Dvar) 1)) X

for erf and ReLU alike. ``adaptive_kernel`` solves the equations by Newton-Krylov on
Sigma P Sigma - Sigma (P the right-hand side above), which has the roots and, at a root,
the Jacobian of Sigma - F(Sigma) without inverting P at every trial point.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.validation import as_labels, positive_number
from nclab.kernels._arrays import as_inputs, like_input, torch_threads
from nclab.kernels.closed_form import DualActivation, get_activation
from nclab.kernels.data import class_targets

Tensor = torch.Tensor


#: Read-out prior scale of Kothapalli & Tirer's experiments: sigma_a^2 = 1/128.
DEFAULT_SIGMA_A = 128**-0.5
# Residual returned where a trial Sigma has no kernel (not positive semi-definite).
_FAR = 1e30
# Below this many samples the solver runs on one thread (see torch_threads).
_THREADED_SIZE = 512


class Diverged(ArithmeticError):
    """The equations of state have no positive-definite Sigma at this width."""


# ----------------------------------------------------------------------------- formulas
def pre_activation_covariance(x: Tensor, sigma: Tensor) -> Tensor:
    """S = X Sigma X^T, (N, N): the covariance of w.x_i and w.x_j for w ~ N(0, Sigma)."""
    return (x @ sigma) @ x.T


def adaptive_q(x: Tensor, sigma: Tensor, dual: DualActivation, sigma_a: float = 1.0) -> Tensor:
    """Q(Sigma): sigma_a^2 Kact of the pre-activation covariance X Sigma X^T, (N, N)."""
    return _q_of(pre_activation_covariance(x, sigma), dual, sigma_a)


def eos_gradient(
    x: Tensor, sigma: Tensor, a: Tensor, dual: DualActivation, sigma_a: float = 1.0
) -> Tensor:
    """d/dSigma Tr[A Q(Sigma)] for a symmetric A, shape (d0, d0).

    Parameters
    ----------
    x : tensor of shape (N, d0)
    sigma : tensor of shape (d0, d0), symmetric positive definite
    a : tensor of shape (N, N), symmetric
    dual : DualActivation
    sigma_a : float
    """
    return _gradient_of(x, pre_activation_covariance(x, sigma), a, dual, sigma_a)


def _q_of(s: Tensor, dual: DualActivation, sigma_a: float) -> Tensor:
    var = torch.diagonal(s)
    return sigma_a**2 * dual.kact(s, var[:, None], var[None, :])


def _gradient_of(x: Tensor, s: Tensor, a: Tensor, dual: DualActivation, sigma_a: float) -> Tensor:
    var = torch.diagonal(s)
    k11, k22 = var[:, None], var[None, :]
    # d s_ij / d Sigma = x_i x_j^T; s_ii enters Q_ij through both variances, hence the 2.
    kdot, dvar = dual.partials(s, k11, k22)
    diagonal = 2 * (dvar.mul_(a)).sum(dim=1)
    weights = kdot.mul_(a)
    weights.diagonal().add_(diagonal)
    return sigma_a**2 * (x.T @ (weights @ x))


@dataclass(frozen=True)
class EquationsOfState:
    """The fixed-point map Sigma -> F(Sigma) of the adaptive kernel at one data set.

    Attributes
    ----------
    x : tensor of shape (N, d0), float64
    targets : tensor of shape (N, k), float64
    dual : DualActivation
    sigma_w, sigma_a : float
        Prior scales of the first-layer weights (variance sigma_w^2/d0) and of the
        read-out (variance sigma_a^2/h).
    noise : float
        sigma^2, the ridge / observation noise of the Gaussian process.
    sigma_b : float
        Prior scale of a first-layer bias (0: none, as in the definitions). A bias is the weight of
        a constant input: the inputs get a column of ones, Sigma an extra row and column,
        and the prior variance of that weight is sigma_b^2.
    """

    x: Tensor
    targets: Tensor
    dual: DualActivation
    sigma_w: float = 1.0
    sigma_a: float = 1.0
    noise: float = 1e-2
    sigma_b: float = 0.0
    inputs: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        inputs = self.x
        if self.sigma_b > 0:
            inputs = torch.cat([inputs, torch.ones_like(inputs[:, :1])], dim=1)
        object.__setattr__(self, "inputs", inputs)

    @property
    def dim(self) -> int:
        """d0, the input dimension (without the bias column)."""
        return self.x.shape[1]

    @property
    def prior_variances(self) -> Tensor:
        """Diagonal of the prior covariance: sigma_w^2/d0 per input (and sigma_b^2)."""
        variances = torch.full((self.inputs.shape[1],), self.sigma_w**2 / self.dim,
                               dtype=torch.float64)
        if self.sigma_b > 0:
            variances[-1] = self.sigma_b**2
        return variances

    @property
    def prior(self) -> Tensor:
        """Sigma of the NNGP limit: sigma_w^2 I / d0 (bordered by sigma_b^2)."""
        return torch.diag(self.prior_variances)

    def kernel(self, sigma: Tensor) -> Tensor:
        """Q(Sigma), (N, N)."""
        return adaptive_q(self.inputs, sigma, self.dual, self.sigma_a)

    def source(self, sigma: Tensor) -> Tensor:
        """A = t t^T - k (Q + sigma^2 I)^-1 at Qbar = Q(Sigma), (N, N)."""
        return self._source_of(self.kernel(sigma))

    def _source_of(self, q: Tensor) -> Tensor:
        q.diagonal().add_(self.noise)
        chol, info = torch.linalg.cholesky_ex(q)
        if int(info):
            raise Diverged("Q + sigma^2 I is not positive definite")
        inverse = torch.cholesky_inverse(chol)
        t = inverse @ self.targets
        # t t^T - k R, built in place on R: N x N temporaries cost as much as the algebra
        return inverse.mul_(-self.targets.shape[1]).addmm_(t, t.T)

    def precision(self, sigma: Tensor, width: float) -> Tensor:
        """(d0/sigma_w^2) I - (1/h) d/dSigma Tr(A Q(Sigma)): the right side for Sigma^-1."""
        s = pre_activation_covariance(self.inputs, sigma)
        a = self._source_of(_q_of(s, self.dual, self.sigma_a))
        gradient = _gradient_of(self.inputs, s, a, self.dual, self.sigma_a)
        precision = torch.diag(1 / self.prior_variances) - gradient / width
        return (precision + precision.T) / 2

    def update(self, sigma: Tensor, width: float) -> Tensor:
        """F(Sigma) = [(d0/sigma_w^2) I - (1/h) d/dSigma Tr(A Q(Sigma))]^-1.

        Raises Diverged when the bracket is not positive definite.
        """
        chol, info = torch.linalg.cholesky_ex(self.precision(sigma, width))
        if int(info) or not bool(torch.isfinite(chol).all()):
            raise Diverged(f"Sigma^-1 is not positive definite at width {width:.4g}")
        return torch.cholesky_inverse(chol)

    def residual(self, sigma: Tensor, width: float) -> Tensor:
        """Sigma - F(Sigma) in units of the prior: entry ij divided by sqrt(p_i p_j)."""
        sigma = (sigma + sigma.T) / 2
        return (sigma - self.update(sigma, width)) * self._unit

    def stationarity(self, sigma: Tensor, width: float) -> Tensor:
        """Sigma P(Sigma) Sigma - Sigma, in prior units, with P = ``precision``.

        It is Sigma P (Sigma - F(Sigma)): the same roots as ``residual`` (for a positive-
        definite Sigma) and the same Jacobian at a root, since P Sigma = I there. Unlike
        the residual it needs no inverse, so it is defined where the bracket is not
        positive definite: a Newton trial step that wanders there is pulled back by the
        line search instead of ending the solve.
        """
        sigma = (sigma + sigma.T) / 2
        return (sigma @ self.precision(sigma, width) @ sigma - sigma) * self._unit

    @property
    def _unit(self) -> Tensor:
        scale = torch.rsqrt(self.prior_variances)
        return torch.outer(scale, scale)


# ----------------------------------------------------------------------------- solver
@dataclass
class AdaptiveKernelResult:
    """Solution of the equations of state, with how it was reached.

    Attributes
    ----------
    status : {'converged', 'diverged', 'not_converged'}
        'diverged': no positive-definite Sigma exists along the annealing path (the
        equations of state blow up); 'not_converged': Newton-Krylov stopped without
        reaching the tolerance. ``sigma`` and ``kernel`` then hold the last converged
        width's solution and ``width_reached`` says which width that was.
    sigma : ndarray or tensor of shape (d0, d0), or (d0 + 1, d0 + 1) with a bias
    kernel : ndarray or tensor of shape (N, N)
        Q(Sigma) at ``width_reached``.
    width : float
        Target width h.
    width_reached : float
        Smallest width solved (inf when not even the first annealing step converged).
    residual : float
        Max-abs of Sigma - F(Sigma) at the last solve, in prior units (sigma_w^2/d0).
    evaluations : int
        Evaluations of the equations of state in total (each costs one Cholesky
        factorization and inverse of an N x N matrix).
    path : list of dict
        One entry per annealing step: width, status, residual, evaluations.
    message : str
    """

    status: str
    sigma: Any
    kernel: Any
    width: float
    width_reached: float
    residual: float
    evaluations: int
    path: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""

    @property
    def converged(self) -> bool:
        return self.status == "converged"


def adaptive_kernel(
    x: Any,
    labels: Any = None,
    *,
    targets: Any = None,
    width: float = 500.0,
    activation: str = "erf",
    sigma_w: float = 1.0,
    sigma_a: float = DEFAULT_SIGMA_A,
    noise: float = 1e-6,
    sigma_b: float = 0.0,
    start_width: float | None = None,
    anneal_steps: int = 2,
    max_refinements: int = 8,
    tol: float = 1e-5,
    max_iter: int = 8,
) -> AdaptiveKernelResult:
    """Solve the equations of state by Newton-Krylov, annealing h down to ``width``.

    The path starts at the NNGP solution Sigma = sigma_w^2 I/d0 (h = infinity) and
    solves at ``anneal_steps`` widths geometrically spaced from ``start_width`` down to
    ``width``, each from a guess extrapolated linearly in 1/h from the two previous
    solutions. A width that fails (Sigma^-1 not positive definite, or no convergence)
    is retried through the geometric middle of it and the last solved width.

    Parameters
    ----------
    x : array or tensor of shape (N, d0)
    labels : array or tensor of shape (N,), optional
        Integer classes; the targets are +-1 for two classes, one-hot otherwise.
    targets : array or tensor of shape (N,) or (N, k), optional
        Regression targets instead of ``labels``.
    width : float
        Hidden width h of the target network.
    activation : {'erf', 'relu'}
    sigma_w, sigma_a : float
        Prior scales of the first layer (variance sigma_w^2/d0) and of the read-out
        (variance sigma_a^2/h). Defaults: 1 and 1/sqrt(128), as in Kothapalli & Tirer.
    noise : float
        sigma^2 of the Gaussian process (default 1e-6).
    sigma_b : float
        Prior scale of a first-layer bias; 0 (the default, the definitions' equations) means none.
        With a bias, ``sigma`` has an extra last row and column for it, and the NNGP
        limit is ``nngp_hidden(x, sigma_w=sigma_w, sigma_b=sigma_b)`` times sigma_a^2.
    start_width : float, optional
        First width of the annealing path; default 10 * width.
    anneal_steps : int
        Widths on the planned path, ``width`` included.
    max_refinements : int
        Extra widths inserted after failures, at most.
    tol : float
        Max-abs residual, in units of sigma_w^2/d0, that counts as converged.
    max_iter : int
        Newton iterations per width.

    Returns
    -------
    AdaptiveKernelResult
        ``status`` is 'converged' only when the target width itself was solved.
    """
    system, as_numpy = _system(x, labels, targets, activation, sigma_w, sigma_a, noise, sigma_b)
    width = positive_number(width, "width")
    start = positive_number(start_width if start_width is not None else 10 * width, "start_width")
    if start < width:
        raise NCInputError(f"start_width ({start}) must be >= width ({width})")
    if int(anneal_steps) < 1 or int(max_refinements) < 0 or int(max_iter) < 1:
        raise NCInputError("anneal_steps and max_iter must be >= 1, max_refinements >= 0")
    with torch_threads(1 if system.x.shape[0] < _THREADED_SIZE else torch.get_num_threads()):
        return _anneal(system, as_numpy, width, start, int(anneal_steps), int(max_refinements),
                       tol, int(max_iter))


def _anneal(
    system: EquationsOfState, as_numpy: bool, width: float, start: float, anneal_steps: int,
    max_refinements: int, tol: float, max_iter: int,
) -> AdaptiveKernelResult:
    pending = [float(w) for w in np.geomspace(width, start, anneal_steps)]
    solved: list[tuple[float, Tensor]] = [(math.inf, system.prior)]
    path: list[dict[str, Any]] = []
    status, message, residual, refinements = "converged", "", 0.0, 0
    while pending:
        target = pending[-1]
        step = _newton_krylov(system, _extrapolate(solved, target), target, tol, max_iter)
        if step["status"] == "diverged" and step["evaluations"] == 1 and len(solved) > 1:
            # the extrapolated guess left the domain: start from the last solution instead
            step = _newton_krylov(system, solved[-1][1], target, tol, max_iter)
        path.append({k: v for k, v in step.items() if k != "sigma"})
        if step["status"] == "converged":
            solved.append((target, step["sigma"]))
            residual = step["residual"]
            pending.pop()
            continue
        if refinements >= max_refinements:
            status, message, residual = step["status"], step["message"], step["residual"]
            break
        refinements += 1
        last = solved[-1][0]
        pending.append(math.sqrt(last * target) if math.isfinite(last) else 10 * target)
    reached, sigma = solved[-1]
    return AdaptiveKernelResult(
        status, like_input(sigma, as_numpy), like_input(system.kernel(sigma), as_numpy),
        width, reached, float(residual), sum(p["evaluations"] for p in path), path, message,
    )


def _extrapolate(solved: list[tuple[float, Tensor]], width: float) -> Tensor:
    """Sigma at ``width`` extrapolated linearly in 1/h from the last two solutions."""
    if len(solved) < 2:
        return solved[-1][1]
    (w1, s1), (w2, s2) = solved[-2], solved[-1]
    u1, u2, u = 1 / w1, 1 / w2, 1 / width
    guess = s2 + (s2 - s1) * ((u - u2) / (u2 - u1))
    if float(torch.linalg.eigvalsh(guess)[0]) <= 0:
        return s2
    return guess


def _system(
    x: Any, labels: Any, targets: Any, activation: str, sigma_w: float, sigma_a: float,
    noise: float, sigma_b: float = 0.0,
) -> tuple[EquationsOfState, bool]:
    xt, as_numpy = as_inputs(x, "x")
    if (labels is None) == (targets is None):
        raise NCInputError("give exactly one of labels and targets")
    if targets is None:
        y = as_labels(labels, xt.shape[0], None)
        num_classes = int(y.max()) + 1
        if num_classes < 2:
            raise NCInputError("labels hold a single class: there is nothing to fit")
        targets = class_targets(y.numpy(), num_classes)
    tt = targets.detach() if torch.is_tensor(targets) else torch.from_numpy(np.asarray(targets))
    tt = tt.to(torch.float64)
    tt = tt[:, None] if tt.ndim == 1 else tt
    if tt.ndim != 2 or tt.shape[0] != xt.shape[0] or not bool(torch.isfinite(tt).all()):
        raise NCInputError(f"targets must be finite with {xt.shape[0]} rows; got shape "
                           f"{tuple(tt.shape)}")
    system = EquationsOfState(
        xt.cpu(), tt.cpu(), get_activation(activation), positive_number(sigma_w, "sigma_w"),
        positive_number(sigma_a, "sigma_a"), positive_number(noise, "noise"),
        positive_number(sigma_b, "sigma_b", allow_zero=True),
    )
    return system, as_numpy


def _newton_krylov(
    system: EquationsOfState, sigma: Tensor, width: float, tol: float, max_iter: int
) -> dict[str, Any]:
    """One annealing step: Newton-Krylov on the equations of state from ``sigma``.

    The root finder runs on ``stationarity`` (Sigma - F(Sigma) preconditioned by Sigma P,
    defined everywhere); the solution is then checked on Sigma - F(Sigma) itself.
    """
    import scipy.optimize  # slow to import; only solving needs it

    calls = [0]

    def equations(flat: np.ndarray) -> np.ndarray:
        calls[0] += 1
        try:
            value = system.stationarity(torch.from_numpy(flat), width).numpy()
        except Diverged:  # Q + sigma^2 I singular: only at a Sigma far from positive
            value = np.full_like(flat, np.nan)
        # a trial Sigma that is not positive semi-definite has no kernel: push it back
        return value if np.isfinite(value).all() else np.full_like(value, _FAR)

    step: dict[str, Any] = {"width": width, "evaluations": 0, "residual": math.inf}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            solution = scipy.optimize.newton_krylov(
                equations, sigma.numpy(), f_tol=tol, maxiter=max_iter, method="lgmres",
                inner_maxiter=30,
            )
        candidate, failure = torch.from_numpy(np.asarray(solution)), None
    except scipy.optimize.NoConvergence as exc:
        candidate = torch.from_numpy(np.asarray(exc.args[0])) if exc.args else sigma
        failure = f"Newton-Krylov did not reach tol={tol:g} in {max_iter} iterations"
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        candidate, failure = sigma, f"Newton-Krylov failed: {exc}"
    step["evaluations"] = calls[0]
    candidate = (candidate + candidate.T) / 2
    try:
        residual = float(system.residual(candidate, width).abs().max())
    except Diverged as exc:
        step.update(status="diverged", message=f"{exc} (Newton-Krylov ended outside the "
                                               "positive-definite domain)")
        return step
    step["residual"] = residual
    if failure is not None or not residual <= 10 * tol:
        if float(torch.linalg.eigvalsh(candidate)[0]) <= 0:
            step.update(status="diverged", message=f"Sigma lost positive definiteness at "
                                                   f"width {width:.4g}")
        else:
            step.update(status="not_converged", message=f"{failure or 'no root'} at width "
                                                        f"{width:.4g} (residual {residual:.3g})")
        return step
    step.update(status="converged", sigma=candidate, message="")
    return step
