"""Batched full-batch gradient descent with a per-problem backtracking step.

Every unconstrained features model of :mod:`nclab.ufm` is solved for many random starts
at once: the variables carry a leading batch axis S (one problem per seed), and each
problem keeps its own step size. A step is accepted when it satisfies the Armijo
condition (or, once changes of f are below its rounding, when it shrinks the gradient); a
rejected step leaves that problem where it was and halves its step, an accepted one lets
the step grow again. The objective never increases (up to rounding).

A model plugs in through the :class:`Problem` protocol, so that the same loop serves the
Euclidean models (a plain gradient step) and the sphere model (tangent projection and
normalization retraction).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch

Params = tuple[torch.Tensor, ...]

#: Armijo constant: a step must achieve this fraction of the first-order decrease.
ARMIJO = 1e-4
#: Accepted steps grow by this factor, rejected ones shrink by BACKTRACK.
GROW, BACKTRACK = 1.5, 0.5
#: Runs with fewer variables than this are solved on one CPU thread (see one_thread_if_small).
SMALL_RUN = 1 << 15


@contextmanager
def one_thread_if_small(size: int) -> Iterator[None]:
    """Use one torch CPU thread while handling a problem of ``size`` variables per run.

    A batched product of many tiny matrices opens an OpenMP region per call; on a busy
    CPU the threads spin-wait for each other, which made a K = 10, d = 16 descent 8 times
    slower with 2 threads than with 1 on a shared 2-core machine. Small runs gain
    nothing from threads, so they get one; the previous setting is restored.
    """
    before = torch.get_num_threads()
    if size >= SMALL_RUN or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Problem(Protocol):
    """What :func:`descend` needs of a model; every tensor has a leading batch axis S."""

    def evaluate(self, params: Params) -> tuple[torch.Tensor, Params]:
        """Objective (S,) and its gradient in the model's geometry (Riemannian on a manifold).

        Its norm, in the plain metric, is the stopping test and the reported gradient norm.
        """

    def direction(self, params: Params, grads: Params) -> Params:
        """The descent direction (minus the gradient, possibly preconditioned)."""

    def retract(self, params: Params, direction: Params, step: torch.Tensor) -> Params:
        """The point reached from ``params`` along ``direction`` scaled by ``step`` (S,)."""


@dataclass
class DescentTrace:
    """What happened during :func:`descend`.

    Attributes
    ----------
    objective : Tensor of shape (T + 1, S)
        Objective at the start and after every iteration (rejected steps repeat the value).
    grad_norm : Tensor of shape (T + 1, S)
    step : Tensor of shape (S,)
        The step size each problem ended with.
    iterations : int
        T, the number of iterations run.
    """

    objective: torch.Tensor
    grad_norm: torch.Tensor
    step: torch.Tensor
    iterations: int


def descend(
    problem: Problem,
    params: Params,
    *,
    steps: int,
    lr: float,
    grad_tol: float = 0.0,
    callback: Callable[[int], None] | None = None,
) -> tuple[Params, DescentTrace]:
    """Run backtracking gradient descent on a batch of S problems.

    Parameters
    ----------
    problem : Problem
    params : tuple of Tensors, each of shape (S, ...)
        Starting point; not modified.
    steps : int
        Maximum number of iterations.
    lr : float
        Initial step size of every problem.
    grad_tol : float
        Stop once every problem's gradient norm is at most this.
    callback : callable, optional
        Called with the iteration number after every iteration (for progress bars).

    Returns
    -------
    params : tuple of Tensors
        The final point.
    trace : DescentTrace
    """
    with one_thread_if_small(sum(p[0].numel() for p in params)):
        return _descend(problem, params, steps, float(lr), grad_tol, callback)


def _descend(problem: Problem, params: Params, steps: int, lr: float, grad_tol: float,
             callback: Callable[[int], None] | None) -> tuple[Params, DescentTrace]:
    value, grads = problem.evaluate(params)
    norm = _norm(grads)
    step = torch.full_like(value, lr)
    values, norms = [value], [norm]
    iteration = 0
    while iteration < steps and not bool((norm <= grad_tol).all()):
        iteration += 1
        direction = problem.direction(params, grads)
        slope = sum(torch.sum(d * g, dim=tuple(range(1, g.ndim))) for d, g in
                    zip(direction, grads, strict=True))
        trial = problem.retract(params, direction, step)
        trial_value, trial_grads = problem.evaluate(trial)
        trial_norm = _norm(trial_grads)
        # Once the change of f is below its rounding, the Armijo test is a coin toss:
        # a step is accepted there when it shrinks the gradient instead.
        change = trial_value - value
        rounding = 64 * torch.finfo(value.dtype).eps * value.abs().clamp_min(1.0)
        accept = torch.where(change.abs() > rounding, change <= ARMIJO * step * slope,
                             trial_norm < norm)
        accept &= trial_value.isfinite()
        if bool(accept.all()):
            params, grads = trial, trial_grads
        else:
            params = tuple(_where(accept, t, p) for t, p in zip(trial, params, strict=True))
            grads = tuple(_where(accept, t, g) for t, g in zip(trial_grads, grads, strict=True))
        value = torch.where(accept, trial_value, value)
        norm = torch.where(accept, trial_norm, norm)
        step = torch.where(accept, step * GROW, step * BACKTRACK)
        values.append(value)
        norms.append(norm)
        if callback is not None:
            callback(iteration)
    trace = DescentTrace(torch.stack(values), torch.stack(norms), step, iteration)
    return params, trace


def _norm(tensors: Params) -> torch.Tensor:
    """Plain norm (S,) of a tuple of batched tensors."""
    return sum(t.square().flatten(1).sum(dim=1) for t in tensors).sqrt()


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.view(-1, *([1] * (a.ndim - 1))), a, b)
