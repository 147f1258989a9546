"""The deep unconstrained features model (Tirer & Bruna, ICML 2022; Sukenik, Mondelli &
Lampert, NeurIPS 2023), definitions §15.

    f(H_1, W_1, ..., W_L) = (1/(2N)) ||W_L H_L - Y||_F^2
                            + sum_l (lambda_W/2) ||W_l||_F^2 + (lambda_H/2) ||H_1||_F^2,
    H_{l+1} = sigma(W_l H_l),  l = 1, ..., L - 1,

with H_1 (d x N) free, W_1, ..., W_{L-1} (d x d), W_L (K x d), Y the one-hot labels,
sigma the identity (``linear``) or the ReLU, no biases, K classes of n samples each. In
code the features are rows: H_l is (N, d). Deep neural collapse (DNC) is NC1 at every
layer, the class means of the ReLU layers orthogonal and those of the linear last layers
a simplex ETF; Sukenik et al. (2023) prove it optimal for K = 2; their NeurIPS 2024 paper
shows that for K >= 3 low-rank solutions can have a lower objective (not DNC: fewer
distinct directions than classes; their candidates are in
:mod:`nclab.ufm.deep_lowrank`). Solved by full-batch gradient descent from many seeded
random starts at once, in float64; gradients by autograd.

The ReLU objective is not differentiable where a pre-activation is 0, and a plain descent
stalls on such kinks (its backtracking step underflows). With ``anneal=A`` stages the ReLU
model is first solved with the C^1 activation ``smooth_relu`` of widths 1e-1, ..., 1e-A
(each stage starting from the last), then polished at the true ReLU; every end is
reported with its gradient norm, its number of pre-activations at the kink and the
smallest slope of f along the positive side of those kinks (``kink_report``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.measure import measure
from nclab.core.metrics import CollapseMetrics
from nclab.ufm._base import check_sizes, class_labels, random_normal
from nclab.ufm.lbfgs import lbfgs
from nclab.ufm.optim import DescentTrace, Params, descend, one_thread_if_small

__all__ = [
    "DeepUFM",
    "DeepUFMSolution",
    "forward",
    "kink_report",
    "positive_decay",
    "smooth_relu",
]

ACTIVATIONS = ("relu", "linear")
#: Smoothing stages of a ReLU solve when none is given: widths 1e-1, 1e-2, 1e-3, 1e-4.
DEFAULT_ANNEAL = 4
#: The minimizers of :meth:`DeepUFM.solve`: L-BFGS (the default) or gradient descent.
METHODS = ("lbfgs", "descent")
DEFAULT_METHOD = "lbfgs"
#: The largest number of smoothing stages (widths below 1e-12 are below rounding).
MAX_ANNEAL = 12
#: A pre-activation is at the kink when |z| <= KINK_TOL * (largest |z| of its layer).
KINK_TOL = 1e-8


def smooth_relu(x: torch.Tensor, width: float) -> torch.Tensor:
    """The ReLU with its corner rounded over [0, width]: 0 for x <= 0, x^2 / (2 width) on
    [0, width], x - width / 2 above; continuously differentiable, within width / 2 of
    the ReLU, and exactly 0 where the ReLU is (so sparse features stay sparse)."""
    if width <= 0:
        return torch.relu(x)
    inner = x.clamp(0, width)
    return inner.square() / (2 * width) + (x - width).clamp_min(0)


def positive_decay(name: str, value: float) -> float:
    """A weight decay as a finite float > 0; one NCInputError line otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise NCInputError(f"{name} must be a number > 0; got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise NCInputError(f"{name} must be a finite number > 0; got {value!r}")
    return number


@dataclass
class DeepUFMSolution:
    """The end points of S runs of a :class:`DeepUFM`.

    Attributes
    ----------
    params : tuple of Tensors
        (H_1 (S, N, d), W_1 (S, d, d), ..., W_L (S, K, d)).
    labels : Tensor of shape (N,)
    seeds : list of int
    objective, grad_norm : Tensor of shape (S,)
        Of the true objective (relu'(0) = 0 where a pre-activation is at the kink).
    trace : DescentTrace
        All stages one after the other (the smoothed values, then the true ones).
    activation : str
    widths : list of float
        The smoothing widths of the stages before the true ReLU (empty: none).
    kinks, kink_slope : Tensor of shape (S,)
        Of :func:`kink_report` at the ends.
    stage_steps : list of int
        The iterations each stage ran (the smoothing stages, then the true activation).
    smoothed_grad_norm : Tensor of shape (S,) or None
        The gradient norm of the smoothed objective at the end of the last smoothing
        stage (width widths[-1]); None without smoothing.
    """

    params: Params
    labels: torch.Tensor
    seeds: list[int]
    objective: torch.Tensor
    grad_norm: torch.Tensor
    trace: DescentTrace
    activation: str
    widths: list[float] = field(default_factory=list)
    kinks: torch.Tensor | None = None
    kink_slope: torch.Tensor | None = None
    stage_steps: list[int] = field(default_factory=list)
    smoothed_grad_norm: torch.Tensor | None = None

    def certified(self, grad_tol: float = 1e-6, *, smoothed: bool = False) -> torch.Tensor:
        """(S,) bool: the gradient norm is at most grad_tol and no kink has a slope below
        -grad_tol (a first-order test: no single step off a kink nor a smooth step
        lowers f; not a proof of a minimum).

        With ``smoothed=True`` a run also passes when the last smoothing stage (width
        w = widths[-1]) ended with a gradient norm of at most grad_tol: a stationary
        point of f smoothed at width w, i.e. (as w -> 0) a Clarke stationary point of
        the ReLU objective, where a kink may need a derivative strictly between 0 and 1
        (which the test at the true ReLU, with relu'(0) = 0, cannot see).
        """
        slope = (torch.zeros_like(self.objective) if self.kink_slope is None
                 else self.kink_slope)
        passed = (self.grad_norm <= grad_tol) & (slope >= -grad_tol)
        if smoothed and self.smoothed_grad_norm is not None:
            passed |= self.smoothed_grad_norm <= grad_tol
        return passed

    @property
    def best(self) -> int:
        """The run with the lowest objective."""
        return int(self.objective.argmin())

    def layer_features(self, run: int) -> list[torch.Tensor]:
        """H_1, ..., H_L of one run, each (N, d)."""
        return [h[0] for h in forward(tuple(p[run:run + 1] for p in self.params),
                                        self.activation)[:-1]]

    def layer_metrics(self, run: int) -> list[CollapseMetrics]:
        """The collapse metrics (definitions §1) of H_1, ..., H_L of one run; the last
        layer's with its classifier W_L."""
        features = self.layer_features(run)
        last = self.params[-1][run]
        results = []
        for index, h in enumerate(features):
            weight = last.cpu() if index == len(features) - 1 else None
            with np.errstate(invalid="ignore"), one_thread_if_small(h.numel()):
                results.append(measure(h.cpu(), self.labels.cpu(), weight,
                                       num_classes=int(self.labels.max()) + 1))
        return results


def forward(params: Params, activation: str, width: float = 0.0) -> list[torch.Tensor]:
    """[H_1, ..., H_L, outputs] for params (H_1, W_1, ..., W_L), batched (S, ...); with
    width > 0 the ReLU is ``smooth_relu(., width)``."""
    return _forward(params, activation, width)[0]


def _forward(params: Params, activation: str, width: float = 0.0
             ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The layers of :func:`forward` and the pre-activations W_l H_l, l = 1..L-1."""
    layers, pre = [params[0]], []
    for index, weight in enumerate(params[1:]):
        out = layers[-1] @ weight.transpose(-1, -2)
        if index == len(params) - 2 or activation == "linear":
            layers.append(out)
        else:
            pre.append(out)
            layers.append(smooth_relu(out, width))
    return layers, pre


def _squared_error_objective(model: DeepUFM, params: Params, layers: list[torch.Tensor]
                             ) -> torch.Tensor:
    outputs = layers[-1]
    num = outputs.shape[-2]
    targets = torch.nn.functional.one_hot(model.labels(outputs.device),
                                          model.num_classes).to(outputs.dtype)
    value = (outputs - targets).square().sum(dim=(-2, -1)) / (2 * num)
    value = value + 0.5 * model.lambda_h * params[0].square().sum(dim=(-2, -1))
    return value + 0.5 * model.lambda_w * sum(w.square().sum(dim=(-2, -1))
                                              for w in params[1:])


def _value_and_grad(objective, params: Params) -> tuple[torch.Tensor, Params]:
    with torch.enable_grad():
        leaves = tuple(p.detach().requires_grad_(True) for p in params)
        value = objective(leaves)
        grads = torch.autograd.grad(value.sum(), leaves)
    return value.detach(), grads


def kink_report(model: DeepUFM, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
    """How each run sits on the kinks of the ReLU.

    Returns
    -------
    kinks : Tensor of shape (S,)
        The number of pre-activations z of the hidden layers with |z| <= KINK_TOL times
        the largest |z| of that layer and run (0 for the linear model).
    kink_slope : Tensor of shape (S,)
        The smallest dF/dh over those entries, h = relu(z) (the slope of f when such a
        z is pushed to the positive side with everything else fixed); 0 when there is
        no kink. A negative value means f decreases by leaving the kink: the end is
        not a minimum. Torch's gradient takes relu'(0) = 0, so the gradient norm alone
        does not see this.
    """
    num_runs = params[0].shape[0]
    kinks = torch.zeros(num_runs, dtype=torch.long, device=params[0].device)
    slope = torch.zeros(num_runs, dtype=params[0].dtype, device=params[0].device)
    if model.activation == "linear" or model.layers < 2:
        return kinks, slope
    with torch.enable_grad():
        leaves = tuple(p.detach().requires_grad_(True) for p in params)
        layers, pre = _forward(leaves, model.activation)
        hidden = layers[1:-1]
        grads = torch.autograd.grad(_squared_error_objective(model, leaves, layers).sum(),
                                    hidden)
    for z, g in zip(pre, grads, strict=True):
        scale = z.detach().abs().flatten(1).amax(dim=1).view(-1, 1, 1)
        at_kink = z.detach().abs() <= KINK_TOL * scale
        kinks += at_kink.flatten(1).sum(dim=1)
        masked = torch.where(at_kink, g, torch.zeros_like(g))
        slope = torch.minimum(slope, masked.flatten(1).amin(dim=1))
    return kinks, slope


class DeepUFM:
    """The deep UFM of L layers with squared error, weight decay on every W_l and on H_1.

    Parameters
    ----------
    num_classes : int
        K >= 2.
    dim : int
        d >= 1 (every hidden width).
    per_class : int
        n samples per class.
    layers : int
        L >= 1 weight matrices (L = 1 is the plain UFM without bias).
    activation : {"relu", "linear"}
    lambda_w, lambda_h : float
        Weight decays, > 0.
    """

    def __init__(self, num_classes: int, dim: int, per_class: int = 1, *, layers: int = 3,
                 activation: str = "relu", lambda_w: float = 5e-3, lambda_h: float = 5e-3
                 ) -> None:
        self.num_classes, self.dim, self.per_class = check_sizes(num_classes, dim, per_class)
        if isinstance(layers, bool) or int(layers) != layers or layers < 1:
            raise NCInputError(f"layers must be an integer >= 1; got {layers!r}")
        if activation not in ACTIVATIONS:
            raise NCInputError(f"activation must be one of {', '.join(ACTIVATIONS)}; got "
                               f"{activation!r}")
        self.layers, self.activation = int(layers), activation
        self.lambda_w = positive_decay("lambda_w", lambda_w)
        self.lambda_h = positive_decay("lambda_h", lambda_h)

    def __repr__(self) -> str:
        return (f"DeepUFM(num_classes={self.num_classes}, dim={self.dim}, per_class="
                f"{self.per_class}, layers={self.layers}, activation={self.activation!r}, "
                f"lambda_w={self.lambda_w:g}, lambda_h={self.lambda_h:g})")

    def labels(self, device: torch.device | str = "cpu") -> torch.Tensor:
        return class_labels(self.num_classes, self.per_class, device)

    def objective(self, params: Params, width: float = 0.0) -> torch.Tensor:
        """f (S,) at params (H_1, W_1, ..., W_L), each with a leading batch axis S; with
        width > 0 that of the ReLU smoothed by :func:`smooth_relu`."""
        return _squared_error_objective(self, params, forward(params, self.activation, width))

    def evaluate(self, params: Params) -> tuple[torch.Tensor, Params]:
        return _value_and_grad(self.objective, params)

    def direction(self, params: Params, grads: Params) -> Params:
        return tuple(-g for g in grads)

    def retract(self, params: Params, direction: Params, step: torch.Tensor) -> Params:
        return tuple(torch.addcmul(x, step.view(-1, *([1] * (x.ndim - 1))), v)
                     for x, v in zip(params, direction, strict=True))

    def random_start(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> Params:
        """Gaussian H_1 and W_l with rows of expected norm 1."""
        num, d, k = self.num_classes * self.per_class, self.dim, self.num_classes
        rows = num + d * (self.layers - 1) + k
        draws = random_normal(seeds, (rows, d), torch.float64, device) / math.sqrt(d)
        cuts = [num] + [d] * (self.layers - 1) + [k]
        return tuple(torch.split(draws, cuts, dim=1))

    def solve(self, seeds: Sequence[int] = (0,), *, steps: int = 5000, lr: float = 1.0,
              grad_tol: float = 1e-10, device: torch.device | str = "cpu",
              anneal: int | None = None, method: str = DEFAULT_METHOD) -> DeepUFMSolution:
        """Minimize f from one random start per seed, batched.

        ``method`` "lbfgs" (the default; :func:`nclab.ufm.lbfgs.lbfgs`) or "descent"
        (backtracking gradient descent from the step ``lr``), each with a per-run
        backtracking step. With the ReLU and ``anneal`` = A > 0 (default DEFAULT_ANNEAL;
        ignored for the linear model) the ``steps`` are shared by A + 1 stages: the
        activation ``smooth_relu`` of widths 1e-1, ..., 1e-A, then the true ReLU; each
        stage gets an equal share of the steps the earlier ones left (a stage stops once
        every run meets ``grad_tol`` or, for L-BFGS, has stalled). ``anneal=0`` is a
        single stage at the ReLU.
        """
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise NCInputError("solve needs at least one seed")
        start = tuple(p.contiguous() for p in self.random_start(seeds, device))
        return self.refine(start, seeds=seeds, steps=steps, lr=lr, grad_tol=grad_tol,
                           anneal=anneal, method=method)

    def refine(self, params: Params, *, seeds: Sequence[int] | None = None, steps: int = 5000,
               lr: float = 1.0, grad_tol: float = 1e-10, anneal: int | None = None,
               method: str = DEFAULT_METHOD) -> DeepUFMSolution:
        """The descent of :meth:`solve` from given params (S, ...) instead of random starts
        (``seeds`` only label the runs; default 0..S-1)."""
        if isinstance(steps, bool) or int(steps) != steps or steps < 0:
            raise NCInputError(f"steps must be an integer >= 0; got {steps!r}")
        if method not in METHODS:
            raise NCInputError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
        widths = self.smoothing_widths(anneal)
        seeds = list(range(params[0].shape[0])) if seeds is None else [int(s) for s in seeds]
        problems = [_Smoothed(self, width) for width in widths] + [self]
        traces, left = [], int(steps)
        for stage, problem in enumerate(problems):
            # each stage gets its share of what is left: steps a stage did not need (it
            # met grad_tol or stalled) pass on to the next ones
            budget = left // (len(problems) - stage)
            if method == "lbfgs":
                params, trace = lbfgs(problem, params, steps=budget, grad_tol=grad_tol)
            else:
                params, trace = descend(problem, params, steps=budget, lr=lr,
                                        grad_tol=grad_tol)
            traces.append(trace)
            left -= trace.iterations
        kinks, kink_slope = kink_report(self, params)
        return DeepUFMSolution(params=params, labels=self.labels(params[0].device),
                               seeds=seeds, objective=trace.objective[-1],
                               grad_norm=trace.grad_norm[-1], trace=_joined(traces),
                               activation=self.activation, widths=widths, kinks=kinks,
                               kink_slope=kink_slope,
                               stage_steps=[t.iterations for t in traces],
                               smoothed_grad_norm=(traces[-2].grad_norm[-1] if widths
                                                   else None))

    def smoothing_widths(self, anneal: int | None) -> list[float]:
        """The widths of the smoothing stages of :meth:`solve`; one NCInputError line for
        an ``anneal`` that is not an integer in [0, MAX_ANNEAL]."""
        if anneal is None:
            anneal = DEFAULT_ANNEAL
        if (isinstance(anneal, bool) or not isinstance(anneal, (int, np.integer))
                or not 0 <= anneal <= MAX_ANNEAL):
            raise NCInputError(f"anneal must be an integer in [0, {MAX_ANNEAL}]; got "
                               f"{anneal!r}")
        if self.activation == "linear":
            return []
        return [10.0 ** -(stage + 1) for stage in range(int(anneal))]


class _Smoothed:
    """The problem of :meth:`DeepUFM.solve` at one smoothing width (for :func:`descend`)."""

    def __init__(self, model: DeepUFM, width: float) -> None:
        self.model, self.width = model, width

    def evaluate(self, params: Params) -> tuple[torch.Tensor, Params]:
        return _value_and_grad(lambda p: self.model.objective(p, self.width), params)

    def direction(self, params: Params, grads: Params) -> Params:
        return self.model.direction(params, grads)

    def retract(self, params: Params, direction: Params, step: torch.Tensor) -> Params:
        return self.model.retract(params, direction, step)


def _joined(traces: list[DescentTrace]) -> DescentTrace:
    """One trace of consecutive stages (the first value of each later stage dropped)."""
    objective = torch.cat([traces[0].objective] + [t.objective[1:] for t in traces[1:]])
    grad_norm = torch.cat([traces[0].grad_norm] + [t.grad_norm[1:] for t in traces[1:]])
    return DescentTrace(objective, grad_norm, traces[-1].step,
                        sum(t.iterations for t in traces))
