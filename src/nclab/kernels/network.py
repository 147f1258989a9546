"""Trained two-layer networks, the finite counterpart of the kernels (definitions §3).

The network is the one whose infinite-width kernels ``closed_form`` computes, in the
'ntk' parameterization (every weight and bias N(0, 1) at initialization):

    z = sigma_w W1 x / sqrt(d0) + sigma_b b1,    f(x) = sigma_w W2 phi(z) / sqrt(h) + sigma_b b2

It is trained on the mean squared error (1/2N) sum_i ||f(x_i) - y_i||^2 by full-batch
gradient descent (torch's SGD update on the whole training set) with weight decay, and the NC1
of its hidden features phi(z) (``feature_nc1``, equal to ``nc1_trace`` of
``nclab.measure``) is recorded along the
way at logarithmically spaced steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.validation import as_labels, positive_number
from nclab.kernels._arrays import as_inputs, torch_threads
from nclab.kernels.data import class_targets
from nclab.kernels.nc1 import feature_nc1

_ACTIVATIONS = {"erf": torch.erf, "relu": torch.relu}
# Below this many hidden activations (N x h) a step runs on one thread (see torch_threads).
_THREADED_SIZE = 1 << 18


class TwoLayerNetwork(torch.nn.Module):
    """Two-layer fully connected network in the 'ntk' parameterization.

    Parameters
    ----------
    d0 : int
        Input dimension.
    width : int
        Hidden width h.
    outputs : int
    activation : {'erf', 'relu'}
    sigma_w, sigma_b : float
        Weight and bias scales, as in ``two_layer_kernels``.
    generator : torch.Generator, optional
        Source of the N(0, 1) initialization.
    """

    def __init__(
        self, d0: int, width: int, outputs: int = 1, activation: str = "erf",
        sigma_w: float = 1.0, sigma_b: float = 0.0, generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise NCInputError(f"unknown activation '{activation}'; choose from: "
                               f"{', '.join(_ACTIVATIONS)}")
        if int(width) < 1 or int(d0) < 1 or int(outputs) < 1:
            raise NCInputError(f"d0, width and outputs must be >= 1; got {d0}, {width}, {outputs}")
        self.activation = activation
        self.sigma_w = positive_number(sigma_w, "sigma_w")
        self.sigma_b = positive_number(sigma_b, "sigma_b", allow_zero=True)

        def normal(*shape: int) -> torch.nn.Parameter:
            return torch.nn.Parameter(torch.randn(*shape, generator=generator))

        self.w1, self.b1 = normal(int(width), int(d0)), normal(int(width))
        self.w2, self.b2 = normal(int(outputs), int(width)), normal(int(outputs))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """phi(z): the hidden-layer features, (N, h)."""
        # one fused multiply-add per layer: the scalings cost a pass over N x h each
        z = torch.addmm(self.sigma_b * self.b1, x, self.w1.T,
                        alpha=self.sigma_w / math.sqrt(self.w1.shape[1]))
        return _ACTIVATIONS[self.activation](z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.sigma_b * self.b2, self.hidden(x), self.w2.T,
                           alpha=self.sigma_w / math.sqrt(self.w2.shape[1]))


@dataclass
class TrainingResult:
    """A trained network's hidden-layer NC1 and how it got there.

    Attributes
    ----------
    nc1 : float
        Hidden-layer NC1 (trace form) at the end of training.
    nc1_init : float
        The same at initialization.
    loss : float
        Final training loss (1/2N) sum ||f - y||^2.
    accuracy : float
        Final training accuracy (sign of f for two classes, argmax otherwise).
    diverged : bool
        The loss became non-finite; training stopped there and ``nc1`` is NaN.
    history : dict of lists
        'step', 'loss', 'nc1' at logarithmically spaced steps (0 and the last included).
    """

    nc1: float
    nc1_init: float
    loss: float
    accuracy: float
    diverged: bool = False
    history: dict[str, list[float]] = field(default_factory=dict)


def train_network(
    x: Any,
    labels: Any,
    *,
    width: int = 500,
    activation: str = "erf",
    sigma_w: float = 1.0,
    sigma_b: float = 0.0,
    lr: float = 1.0,
    steps: int = 1000,
    weight_decay: float = 1e-4,
    records: int = 20,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> TrainingResult:
    """Train a two-layer network by full-batch gradient descent on the MSE.

    Parameters
    ----------
    x : array or tensor of shape (N, d0)
    labels : array or tensor of shape (N,)
        Integer classes; targets are +-1 for two classes (one output), one-hot otherwise.
    width : int
        Hidden width h.
    activation : {'erf', 'relu'}
    sigma_w, sigma_b : float
    lr : float
        Learning rate of full-batch SGD (no momentum).
    steps : int
        Gradient steps (= epochs, the batch being the whole set).
    weight_decay : float
        L2 penalty on every parameter, as torch's SGD applies it.
    records : int
        About this many logarithmically spaced steps at which NC1 and the loss are recorded.
    seed : int
        Seed of the initialization.
    dtype : torch dtype
        Precision of training; NC1 is always accumulated in float64.

    Returns
    -------
    TrainingResult
    """
    xt, _ = as_inputs(x, "x")
    y = as_labels(labels, xt.shape[0], None)
    num_classes = int(y.max()) + 1
    if num_classes < 2:
        raise NCInputError("labels hold a single class: there is nothing to fit")
    if int(steps) < 1 or int(records) < 1:
        raise NCInputError(f"steps and records must be >= 1; got {steps}, {records}")
    positive_number(lr, "lr")
    positive_number(weight_decay, "weight_decay", allow_zero=True)
    targets = torch.from_numpy(class_targets(y.numpy(), num_classes)).to(dtype)
    targets = targets[:, None] if targets.ndim == 1 else targets
    xt = xt.to(dtype)
    generator = torch.Generator().manual_seed(int(seed))
    net = TwoLayerNetwork(xt.shape[1], width, targets.shape[1], activation, sigma_w, sigma_b,
                          generator).to(dtype)
    small = xt.shape[0] * int(width) < _THREADED_SIZE
    with torch_threads(1 if small else torch.get_num_threads()):
        return _train(net, xt, y, targets, int(steps), int(records), lr, weight_decay)


def _train(net: TwoLayerNetwork, xt: torch.Tensor, y: torch.Tensor, targets: torch.Tensor,
           steps: int, records: int, lr: float, weight_decay: float) -> TrainingResult:
    marks = set(np.unique(np.geomspace(1, steps, records).round().astype(int)).tolist())
    history: dict[str, list[float]] = {"step": [], "loss": [], "nc1": []}
    diverged = False
    for step in range(steps + 1):
        net.zero_grad(set_to_none=True)
        loss = 0.5 * ((net(xt) - targets) ** 2).sum(dim=1).mean()
        value = loss.item()
        if not math.isfinite(value):
            diverged = True
            _record(history, step, value, math.nan)
            break
        if step == 0 or step in marks:
            _record(history, step, value, _hidden_nc1(net, xt, y))
        if step == steps:
            break
        loss.backward()
        _descend(net, lr, weight_decay)
    with torch.no_grad():
        accuracy = _accuracy(net(xt), y)
    return TrainingResult(history["nc1"][-1], history["nc1"][0], history["loss"][-1], accuracy,
                          diverged, history)


@torch.no_grad()
def _descend(net: TwoLayerNetwork, lr: float, weight_decay: float) -> None:
    """One step of torch's SGD without momentum: p -= lr (grad + weight_decay p).

    Written out because constructing torch.optim.SGD imports torch._dynamo, which costs
    seconds in every fresh worker process.
    """
    for param in net.parameters():
        param.add_(param.grad + weight_decay * param, alpha=-lr)


def _record(history: dict[str, list[float]], step: int, loss: float, nc1: float) -> None:
    history["step"].append(step)
    history["loss"].append(loss)
    history["nc1"].append(nc1)


def _hidden_nc1(net: TwoLayerNetwork, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return feature_nc1(net.hidden(x), y).nc1


def _accuracy(out: torch.Tensor, y: torch.Tensor) -> float:
    predicted = (out[:, 0] > 0).long() if out.shape[1] == 1 else out.argmax(dim=1)
    return float((predicted == y).double().mean())
