"""Batched L-BFGS with a per-problem backtracking step, for the Euclidean models.

The same batch layout as :func:`nclab.ufm.optim.descend` (every tensor has a leading axis
S, one problem per seed) and the same :class:`~nclab.ufm.optim.Problem` (only its
``evaluate`` is used: the direction is the L-BFGS one, the retraction a plain step).
Each problem keeps its own history of the last ``memory`` pairs (s, y) and its own step:
the step 1 is tried first (the quasi-Newton direction carries its own scale), halved on
each rejection and reset to 1 after an accepted one. A step is accepted under the same
rule as in ``descend`` (Armijo, or, once changes of f are below its rounding, a smaller
gradient), so the objective never increases (up to rounding).

Why: gradient descent needs tens of thousands of steps on the deep UFM with four or more
layers (the product of L matrices is badly conditioned); L-BFGS reaches gradient norms
of 1e-9 in a few hundred to a few thousand iterations on the same problems.
"""

from __future__ import annotations

import torch

from nclab.ufm.optim import ARMIJO, DescentTrace, Params, Problem, one_thread_if_small

__all__ = ["MEMORY", "lbfgs"]

#: Pairs (s, y) kept per problem.
MEMORY = 20
#: A problem whose step falls below this restarts from the gradient direction (its
#: history dropped); one already without history has stalled (a kink) and stops moving.
MIN_STEP = 1e-12


def lbfgs(problem: Problem, params: Params, *, steps: int, grad_tol: float = 0.0,
          memory: int = MEMORY) -> tuple[Params, DescentTrace]:
    """Minimize a batch of S problems by L-BFGS.

    Parameters
    ----------
    problem : Problem
        Only ``problem.evaluate(params) -> (value (S,), grads)`` is called.
    params : tuple of Tensors, each of shape (S, ...)
        Starting point; not modified.
    steps : int
        Maximum number of iterations (one objective and gradient evaluation each).
    grad_tol : float
        Stop once every problem's gradient norm is at most this.
    memory : int
        Pairs kept per problem (>= 1).

    Returns
    -------
    params : tuple of Tensors
        The final point.
    trace : DescentTrace
        As for :func:`nclab.ufm.optim.descend`.
    """
    with one_thread_if_small(sum(p[0].numel() for p in params)):
        return _lbfgs(problem, params, int(steps), float(grad_tol), int(memory))


def _lbfgs(problem: Problem, params: Params, steps: int, grad_tol: float, memory: int
           ) -> tuple[Params, DescentTrace]:
    shapes = [p.shape for p in params]
    x = _flat(params)
    value, grads = problem.evaluate(params)
    g = _flat(grads)
    norm = g.norm(dim=1)
    history = _History(memory, x)
    step = torch.ones_like(value)
    values, norms = [value], [norm]
    iteration = 0
    stalled = torch.zeros_like(value, dtype=torch.bool)
    while iteration < steps and not bool(((norm <= grad_tol) | stalled).all()):
        iteration += 1
        direction = history.direction(g)
        slope = (direction * g).sum(dim=1)
        # a direction that is not downhill (rounding in the history): restart that problem
        uphill = slope >= 0
        if bool(uphill.any()):
            history.forget(uphill)
            direction = torch.where(uphill[:, None], -g, direction)
            slope = torch.where(uphill, -g.square().sum(dim=1), slope)
        trial = x + step[:, None] * direction
        trial_value, trial_grads = problem.evaluate(_unflat(trial, shapes))
        trial_g = _flat(trial_grads)
        trial_norm = trial_g.norm(dim=1)
        change = trial_value - value
        rounding = 64 * torch.finfo(value.dtype).eps * value.abs().clamp_min(1.0)
        accept = torch.where(change.abs() > rounding, change <= ARMIJO * step * slope,
                             trial_norm < norm)
        accept &= trial_value.isfinite()
        history.remember(accept, trial - x, trial_g - g)
        x = torch.where(accept[:, None], trial, x)
        g = torch.where(accept[:, None], trial_g, g)
        value = torch.where(accept, trial_value, value)
        norm = torch.where(accept, trial_norm, norm)
        step = torch.where(accept, torch.ones_like(step), step * 0.5)
        tiny = step < MIN_STEP
        stalled |= tiny & (history.count == 0)
        history.forget(tiny)
        step = torch.where(tiny & ~stalled, torch.ones_like(step), step)
        values.append(value)
        norms.append(norm)
    trace = DescentTrace(torch.stack(values), torch.stack(norms), step, iteration)
    return _unflat(x, shapes), trace


class _History:
    """The last ``memory`` pairs (s, y) of every problem, newest first: slot j holds the
    pair of age j of every problem (a problem's slots shift only when it stores one)."""

    def __init__(self, memory: int, x: torch.Tensor) -> None:
        size, dim = x.shape
        self.s = x.new_zeros(memory, size, dim)
        self.y = x.new_zeros(memory, size, dim)
        self.rho = x.new_zeros(memory, size)
        self.count = torch.zeros(size, dtype=torch.long, device=x.device)
        self.memory = memory

    def remember(self, accept: torch.Tensor, s: torch.Tensor, y: torch.Tensor) -> None:
        """Store the pair of every accepted problem whose curvature s.y is positive."""
        curvature = (s * y).sum(dim=1)
        keep = accept & (curvature > 1e-12 * s.norm(dim=1) * y.norm(dim=1))
        if not bool(keep.any()):
            return
        rho = 1.0 / curvature.where(keep, torch.ones_like(curvature))
        self.s = torch.where(keep[:, None], torch.cat([s[None], self.s[:-1]]), self.s)
        self.y = torch.where(keep[:, None], torch.cat([y[None], self.y[:-1]]), self.y)
        self.rho = torch.where(keep, torch.cat([rho[None], self.rho[:-1]]), self.rho)
        self.count = (self.count + keep.long()).clamp(max=self.memory)

    def forget(self, mask: torch.Tensor) -> None:
        self.count = torch.where(mask, torch.zeros_like(self.count), self.count)

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        """-H g by the two-loop recursion; -g for a problem with no pair yet."""
        ages = int(self.count.max())
        if ages == 0:
            return -g
        valid = torch.arange(ages, device=g.device)[:, None] < self.count  # (ages, S)
        rho = torch.where(valid, self.rho[:ages], torch.zeros_like(self.rho[:ages]))
        q, alphas = g, []
        for age in range(ages):
            alpha = rho[age] * (self.s[age] * q).sum(dim=1)
            q = q - alpha[:, None] * self.y[age]
            alphas.append(alpha)
        s, y = self.s[0], self.y[0]
        gamma = (s * y).sum(dim=1) / y.square().sum(dim=1).clamp_min(1e-300)
        q = q * torch.where(self.count > 0, gamma, torch.ones_like(gamma))[:, None]
        for age in reversed(range(ages)):
            beta = rho[age] * (self.y[age] * q).sum(dim=1)
            q = q + (alphas[age] - beta)[:, None] * self.s[age]
        return -q


def _flat(tensors: Params) -> torch.Tensor:
    """(S, P): every tensor of a batch flattened and joined per problem."""
    return torch.cat([t.reshape(t.shape[0], -1) for t in tensors], dim=1)


def _unflat(x: torch.Tensor, shapes: list[torch.Size]) -> Params:
    sizes = [int(torch.Size(s[1:]).numel()) for s in shapes]
    return tuple(part.reshape(shape) for part, shape in
                 zip(torch.split(x, sizes, dim=1), shapes, strict=True))
