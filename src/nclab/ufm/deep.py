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
distinct directions than classes). Solved by full-batch gradient descent from many
seeded random starts at once, in float64; gradients by autograd.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.measure import measure
from nclab.core.metrics import CollapseMetrics
from nclab.ufm._base import check_sizes, class_labels, random_normal
from nclab.ufm.optim import DescentTrace, Params, descend, one_thread_if_small

__all__ = [
    "DeepUFM",
    "DeepUFMSolution",
    "forward",
    "positive_decay",
]

ACTIVATIONS = ("relu", "linear")


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
    trace : DescentTrace
    activation : str
    """

    params: Params
    labels: torch.Tensor
    seeds: list[int]
    objective: torch.Tensor
    grad_norm: torch.Tensor
    trace: DescentTrace
    activation: str

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


def forward(params: Params, activation: str) -> list[torch.Tensor]:
    """[H_1, ..., H_L, outputs] for params (H_1, W_1, ..., W_L), batched (S, ...)."""
    layers = [params[0]]
    for index, weight in enumerate(params[1:]):
        out = layers[-1] @ weight.transpose(-1, -2)
        is_last = index == len(params) - 2
        layers.append(out if is_last or activation == "linear" else torch.relu(out))
    return layers


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

    def objective(self, params: Params) -> torch.Tensor:
        """f (S,) at params (H_1, W_1, ..., W_L), each with a leading batch axis S."""
        outputs = forward(params, self.activation)[-1]
        num = outputs.shape[-2]
        targets = torch.nn.functional.one_hot(self.labels(outputs.device),
                                              self.num_classes).to(outputs.dtype)
        value = (outputs - targets).square().sum(dim=(-2, -1)) / (2 * num)
        value = value + 0.5 * self.lambda_h * params[0].square().sum(dim=(-2, -1))
        return value + 0.5 * self.lambda_w * sum(w.square().sum(dim=(-2, -1))
                                                 for w in params[1:])

    def evaluate(self, params: Params) -> tuple[torch.Tensor, Params]:
        with torch.enable_grad():
            leaves = tuple(p.detach().requires_grad_(True) for p in params)
            value = self.objective(leaves)
            grads = torch.autograd.grad(value.sum(), leaves)
        return value.detach(), grads

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
              grad_tol: float = 1e-10, device: torch.device | str = "cpu") -> DeepUFMSolution:
        """Backtracking gradient descent from one random start per seed, batched."""
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise NCInputError("solve needs at least one seed")
        if int(steps) != steps or steps < 0:
            raise NCInputError(f"steps must be an integer >= 0; got {steps}")
        start = tuple(p.contiguous() for p in self.random_start(seeds, device))
        params, trace = descend(self, start, steps=int(steps), lr=lr, grad_tol=grad_tol)
        return DeepUFMSolution(params=params, labels=self.labels(device), seeds=seeds,
                               objective=trace.objective[-1], grad_norm=trace.grad_norm[-1],
                               trace=trace, activation=self.activation)
