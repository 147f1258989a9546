"""What the classification UFMs share: sizes, labels, random starts, the solve loop, results."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.measure import measure
from nclab.core.metrics import CollapseMetrics
from nclab.core.validation import check_scalar, positive_number
from nclab.ufm.optim import DescentTrace, Params, descend, one_thread_if_small


def check_sizes(num_classes: int, dim: int, per_class: int) -> tuple[int, int, int]:
    """Validate K >= 2, d >= 1, n >= 1 and return them as ints."""
    return (check_scalar(num_classes, "num_classes", int, min_val=2),
            check_scalar(dim, "dim", int, min_val=1),
            check_scalar(per_class, "per_class", int, min_val=1))


def class_labels(num_classes: int, per_class: int, device: torch.device | str = "cpu"
                 ) -> torch.Tensor:
    """Labels (N,) of a balanced UFM, N = K n, sorted by class: 0,..,0, 1,..,1, ..."""
    return torch.arange(num_classes, device=device).repeat_interleave(per_class)


def own_class_entries(values: torch.Tensor, per_class: int) -> torch.Tensor:
    """View (..., n, K) of the entries (i, y_i) of a (..., N, K) array with class-sorted rows.

    The labels of a UFM are 0,..,0, 1,..,1, ...: entry (k n + i, k) is the diagonal of
    the (K, n, K) reshape, so no index tensor is needed (and the view can be written to).
    """
    num_classes = values.shape[-1]
    blocks = values.view(*values.shape[:-2], num_classes, per_class, num_classes)
    return blocks.diagonal(dim1=-3, dim2=-1)


def cross_entropy_value(logits: torch.Tensor, per_class: int) -> torch.Tensor:
    """Mean cross-entropy of logits (..., N, K) with class-sorted labels -> (...)."""
    own = own_class_entries(torch.log_softmax(logits, dim=-1), per_class)
    return -own.sum(dim=(-2, -1)) / logits.shape[-2]


def cross_entropy(logits: torch.Tensor, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and its gradient with respect to the logits.

    Parameters
    ----------
    logits : Tensor of shape (..., N, K), contiguous
        Rows sorted by class, ``per_class`` rows each (see :func:`class_labels`).
    per_class : int

    Returns
    -------
    value : Tensor of shape (...)
    dlogits : Tensor of shape (..., N, K)
        (softmax - one_hot) / N.
    """
    num = logits.shape[-2]
    log_p = torch.log_softmax(logits, dim=-1)
    value = -own_class_entries(log_p, per_class).sum(dim=(-2, -1)) / num
    dlogits = log_p.exp_()
    own_class_entries(dlogits, per_class).sub_(1.0)
    return value, dlogits.div_(num)


def random_normal(seeds: Sequence[int], shape: tuple[int, ...], dtype: torch.dtype,
                  device: torch.device | str) -> torch.Tensor:
    """Standard normal draws (S, *shape), seed by seed on the CPU.

    Drawing on the CPU makes a seed's start the same on every device and for every S.
    """
    draws = [torch.randn(shape, generator=torch.Generator().manual_seed(int(s)), dtype=dtype)
             for s in seeds]
    return torch.stack(draws).to(device)


@dataclass
class UFMSolution:
    """The end points of S runs of one unconstrained features model.

    Attributes
    ----------
    weight : Tensor of shape (S, K, d)
        Classifier W of each run; row k is w_k.
    features : Tensor of shape (S, N, d)
        Features H of each run, sorted by class (see ``labels``).
    bias : Tensor of shape (S, K) or None
    labels : Tensor of shape (N,)
    seeds : list of int
    objective : Tensor of shape (S,)
    grad_norm : Tensor of shape (S,)
        Norm of the (Riemannian) gradient at the end point.
    optimal_value : float or None
        The known global minimum f*, where theory gives one.
    trace : DescentTrace
        Objective and gradient norm after every iteration.
    """

    weight: torch.Tensor
    features: torch.Tensor
    bias: torch.Tensor | None
    labels: torch.Tensor
    seeds: list[int]
    objective: torch.Tensor
    grad_norm: torch.Tensor
    optimal_value: float | None
    trace: DescentTrace

    @property
    def gap(self) -> torch.Tensor | None:
        """objective - f* (S,), or None when f* is not known."""
        if self.optimal_value is None:
            return None
        return self.objective - self.optimal_value

    def iterations_to(self, tol: float, reference: float | None = None) -> list[int | None]:
        """First iteration at which each run's objective is within ``tol`` of ``reference``.

        ``reference`` defaults to f*; None for a run that never got there.
        """
        reference = self.optimal_value if reference is None else reference
        if reference is None:
            raise NCInputError("no known optimum: pass a reference value")
        within = (self.trace.objective - reference) <= tol
        first = torch.where(within.any(dim=0), within.to(torch.int8).argmax(dim=0), -1)
        return [None if int(i) < 0 else int(i) for i in first]

    def metrics(self, run: int = 0) -> CollapseMetrics:
        """Collapse metrics (definitions §1) of one run's features and classifier."""
        bias = None if self.bias is None else self.bias[run].cpu()
        # With exactly collapsed classes the pair pass of cdnv can divide 0 by 0 on the diagonal of
        # its pair tiles, entries it then masks out: silence that spurious warning only.
        with np.errstate(invalid="ignore"), one_thread_if_small(self.features[run].numel()):
            return measure(self.features[run].cpu(), self.labels.cpu(), self.weight[run].cpu(),
                           bias)


def solve(problem, start: Params, seeds: Sequence[int], labels: torch.Tensor, *, steps: int,
          lr: float, grad_tol: float, optimal_value: float | None,
          callback: Callable[[int], None] | None = None) -> UFMSolution:
    """Run :func:`nclab.ufm.optim.descend` and package the result."""
    steps = check_scalar(steps, "steps", int, min_val=0)
    positive_number(lr, "lr")
    positive_number(grad_tol, "grad_tol", allow_zero=True)
    params, trace = descend(problem, start, steps=steps, lr=lr, grad_tol=grad_tol,
                            callback=callback)
    bias = params[2] if len(params) > 2 else None
    return UFMSolution(
        weight=params[0], features=params[1], bias=bias, labels=labels, seeds=list(seeds),
        objective=trace.objective[-1], grad_norm=trace.grad_norm[-1],
        optimal_value=optimal_value, trace=trace)
