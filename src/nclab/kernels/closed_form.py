"""Infinite-width kernels of a two-layer network (definitions §3), in closed form.

The network, in neural-tangents' 'ntk' parameterization (all weights and biases N(0, 1)):

    z(x) = sigma_w W1 x / sqrt(d0) + sigma_b b1,    f(x) = sigma_w W2 phi(z) / sqrt(h) + sigma_b b2

Its kernels are built from one formula each:

    K0    = sigma_b^2 + sigma_w^2 x.x'/d0                     input_kernel
    Kact  = E[phi(u) phi(v)],   (u, v) ~ N(0, K0)              erf_kact / relu_kact
    Kdot  = E[phi'(u) phi'(v)]                                 erf_kdot / relu_kdot
    K1    = sigma_b^2 + sigma_w^2 Kact                         output NNGP
    Theta = K1 + sigma_w^2 K0 o Kdot                           NTK

The dual maps (``*_kact``, ``*_kdot``, ``*_dvar``) are elementwise in (k12, k11, k22):
the covariance of the pair and the two variances, broadcast against each other (k11 as
a column, k22 as a row). ``*_dvar`` is dKact/dk11, used by the adaptive-kernel
gradient; by Price's theorem dKact/dk12 = Kdot.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nclab.core.errors import NCInputError
from nclab.core.validation import positive_number
from nclab.kernels._arrays import as_inputs, like_input

#: Names of the Gram matrices ``two_layer_kernels`` can return.
KERNEL_NAMES = ("nngp_hidden", "nngp", "ntk")
# Entries per block of rows: keeps each temporary near 32 MiB whatever N is.
_BLOCK_ENTRIES = 1 << 22

Tensor = torch.Tensor


# ----------------------------------------------------------------------------- erf
def erf_kact(k12: Tensor, k11: Tensor, k22: Tensor) -> Tensor:
    """E[erf(u) erf(v)] = (2/pi) arcsin(2 k12 / sqrt((1 + 2 k11)(1 + 2 k22)))."""
    # square roots of the variances (vectors), not of N x N products; one N x N buffer
    scaled = k12 * (2 * torch.rsqrt(1 + 2 * k11))
    return scaled.mul_(torch.rsqrt(1 + 2 * k22)).asin_().mul_(2 / math.pi)


def erf_kdot(k12: Tensor, k11: Tensor, k22: Tensor) -> Tensor:
    """E[erf'(u) erf'(v)] = (4/pi) [(1 + 2 k11)(1 + 2 k22) - 4 k12^2]^(-1/2)."""
    # built in one N x N buffer: these matrices are memory-bound, every pass counts
    bracket = ((1 + 2 * k11) * (1 + 2 * k22)).expand_as(k12).clone()
    return bracket.addcmul_(k12, k12, value=-4).rsqrt_().mul_(4 / math.pi)


def erf_dvar(k12: Tensor, k11: Tensor, k22: Tensor) -> Tensor:
    """dKact/dk11 for erf: -k12 Kdot / (1 + 2 k11)."""
    return erf_partials(k12, k11, k22)[1]


def erf_partials(k12: Tensor, k11: Tensor, k22: Tensor) -> tuple[Tensor, Tensor]:
    """(Kdot, dKact/dk11) for erf, sharing the one N x N inverse square root."""
    kdot = erf_kdot(k12, k11, k22)
    return kdot, kdot * k12 * (-1 / (1 + 2 * k11))


# ----------------------------------------------------------------------------- ReLU
#: Rounding steps within which a cosine counts as +-1 (see ``_relu_angle``).
_ROUNDING = 8

def _relu_angle(k12: Tensor, k11: Tensor, k22: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(sqrt(k11 k22), cos theta, theta); cos theta = 0 where a variance is zero."""
    norm = torch.sqrt(k11) * torch.sqrt(k22)
    cos = torch.where(norm > 0, k12 / torch.where(norm > 0, norm, 1.0), 0.0).clamp(-1.0, 1.0)
    # acos is ill-conditioned at +-1: a cosine one rounding step off +-1 (parallel inputs)
    # would give theta ~ 2e-8 instead of 0 and break the PSD-ness of Kdot at that size, so
    # cosines within a few rounding steps of +-1 are taken as exactly +-1
    cos = torch.where(1 - cos.abs() <= _ROUNDING * torch.finfo(cos.dtype).eps, cos.sign(), cos)
    return norm, cos, torch.acos(cos)


def relu_kact(k12: Tensor, k11: Tensor, k22: Tensor) -> Tensor:
    """E[relu(u) relu(v)] = sqrt(k11 k22) (sin theta + (pi - theta) cos theta) / (2 pi)."""
    norm, cos, theta = _relu_angle(k12, k11, k22)
    sin = torch.sqrt(1 - cos * cos)
    return norm * (sin + (math.pi - theta) * cos) / (2 * math.pi)


def relu_kdot(k12: Tensor, k11: Tensor, k22: Tensor) -> Tensor:
    """E[step(u) step(v)] = (pi - theta) / (2 pi); 0 where a variance is zero.

    (With a zero variance, u = 0 almost surely and relu'(0) = 0, as in torch.)
    """
    norm, _, theta = _relu_angle(k12, k11, k22)
    return torch.where(norm > 0, (math.pi - theta) / (2 * math.pi), 0.0)


def relu_dvar(k12: Tensor, k11: Tensor, k22: Tensor) -> Tensor:
    """dKact/dk11 for ReLU: sqrt(k22 / k11) sin theta / (4 pi); 0 where k11 = 0."""
    norm, cos, _ = _relu_angle(k12, k11, k22)
    sin = torch.sqrt(1 - cos * cos)
    ratio = torch.where(norm > 0, k22 / torch.where(norm > 0, norm, 1.0), 0.0)
    return ratio * sin / (4 * math.pi)


def relu_partials(k12: Tensor, k11: Tensor, k22: Tensor) -> tuple[Tensor, Tensor]:
    """(Kdot, dKact/dk11) for ReLU."""
    return relu_kdot(k12, k11, k22), relu_dvar(k12, k11, k22)


@dataclass(frozen=True)
class DualActivation:
    """The closed forms of one activation: Kact, Kdot, dKact/dk11, and the last two
    together (``partials``, sharing what they have in common)."""

    name: str
    kact: Callable[[Tensor, Tensor, Tensor], Tensor]
    kdot: Callable[[Tensor, Tensor, Tensor], Tensor]
    dvar: Callable[[Tensor, Tensor, Tensor], Tensor]
    partials: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


#: The activations with closed forms.
ACTIVATIONS: dict[str, DualActivation] = {
    "erf": DualActivation("erf", erf_kact, erf_kdot, erf_dvar, erf_partials),
    "relu": DualActivation("relu", relu_kact, relu_kdot, relu_dvar, relu_partials),
}


def get_activation(name: str) -> DualActivation:
    """The closed forms of activation ``name`` ('erf' or 'relu')."""
    if name not in ACTIVATIONS:
        raise NCInputError(f"unknown activation '{name}'; choose from: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


# ----------------------------------------------------------------------------- Gram matrices
def input_kernel(
    x1: Any, x2: Any = None, *, sigma_w: float = 1.0, sigma_b: float = 0.0
) -> Any:
    """K0(x, x') = sigma_b^2 + sigma_w^2 x.x'/d0.

    Parameters
    ----------
    x1 : array or tensor of shape (N1, d0)
    x2 : array or tensor of shape (N2, d0), optional
        Defaults to ``x1``.
    sigma_w, sigma_b : float

    Returns
    -------
    array or tensor of shape (N1, N2), float64, the kind of ``x1``.
    """
    a, b, as_numpy = _pair(x1, x2)
    sigma_w, sigma_b = _scales(sigma_w, sigma_b)
    return like_input(sigma_b**2 + sigma_w**2 * (a @ b.T) / a.shape[1], as_numpy)


def two_layer_kernels(
    x1: Any,
    x2: Any = None,
    *,
    activation: str = "erf",
    sigma_w: float = 1.0,
    sigma_b: float = 0.0,
    get: Sequence[str] = KERNEL_NAMES,
    block_size: int | None = None,
) -> dict[str, Any]:
    """Gram matrices of the two-layer network's infinite-width kernels.

    Parameters
    ----------
    x1 : array or tensor of shape (N1, d0)
    x2 : array or tensor of shape (N2, d0), optional
        Defaults to ``x1`` (a symmetric Gram matrix).
    activation : {'erf', 'relu'}
    sigma_w, sigma_b : float
        Weight and bias scales of both layers ('ntk' parameterization).
    get : sequence of str
        Which of ``KERNEL_NAMES``: 'nngp_hidden' (Kact, the hidden layer's NNGP),
        'nngp' (K1, the output's NNGP), 'ntk' (Theta).
    block_size : int, optional
        Rows computed at a time; by default about 4M entries per block, so temporaries
        stay near 32 MiB and only the outputs scale with N1 x N2.

    Returns
    -------
    dict name -> array or tensor of shape (N1, N2), float64, the kind of ``x1``.
    """
    a, b, as_numpy = _pair(x1, x2)
    sigma_w, sigma_b = _scales(sigma_w, sigma_b)
    dual = get_activation(activation)
    names = _check_names(get)
    if block_size is not None and block_size < 1:
        raise NCInputError(f"block_size must be >= 1; got {block_size}")
    rows = block_size or max(1, _BLOCK_ENTRIES // b.shape[0])
    scale = sigma_w**2 / a.shape[1]
    var_a = sigma_b**2 + scale * (a * a).sum(dim=1)
    var_b = var_a if x2 is None else sigma_b**2 + scale * (b * b).sum(dim=1)
    out = {name: torch.empty(a.shape[0], b.shape[0], dtype=torch.float64, device=a.device)
           for name in names}
    for start in range(0, a.shape[0], rows):
        block = slice(start, min(start + rows, a.shape[0]))
        k0 = (a[block] @ b.T).mul_(scale).add_(sigma_b**2)
        k11, k22 = var_a[block, None], var_b[None, :]
        kact = dual.kact(k0, k11, k22)
        if "nngp_hidden" in out:
            out["nngp_hidden"][block] = kact
        if "nngp" in out:
            torch.mul(kact, sigma_w**2, out=out["nngp"][block]).add_(sigma_b**2)
        if "ntk" in out:  # sigma_b^2 + sigma_w^2 (Kact + K0 o Kdot), in the output's rows
            theta = torch.addcmul(kact, k0, dual.kdot(k0, k11, k22), out=out["ntk"][block])
            theta.mul_(sigma_w**2).add_(sigma_b**2)
    return {name: like_input(value, as_numpy) for name, value in out.items()}


def nngp_hidden(x1: Any, x2: Any = None, **options: Any) -> Any:
    """Kact: the NNGP of the hidden layer's features; see ``two_layer_kernels``."""
    return two_layer_kernels(x1, x2, get=("nngp_hidden",), **options)["nngp_hidden"]


def nngp(x1: Any, x2: Any = None, **options: Any) -> Any:
    """K1 = sigma_b^2 + sigma_w^2 Kact: the output NNGP; see ``two_layer_kernels``."""
    return two_layer_kernels(x1, x2, get=("nngp",), **options)["nngp"]


def ntk(x1: Any, x2: Any = None, **options: Any) -> Any:
    """Theta = K1 + sigma_w^2 K0 o Kdot: the NTK; see ``two_layer_kernels``."""
    return two_layer_kernels(x1, x2, get=("ntk",), **options)["ntk"]


def _pair(x1: Any, x2: Any) -> tuple[Tensor, Tensor, bool]:
    a, as_numpy = as_inputs(x1, "x1")
    if x2 is None:
        return a, a, as_numpy
    b, _ = as_inputs(x2, "x2")
    if b.shape[1] != a.shape[1]:
        raise NCInputError(f"x1 has d0={a.shape[1]} columns but x2 has {b.shape[1]}")
    return a, b.to(a.device), as_numpy


def _scales(sigma_w: float, sigma_b: float) -> tuple[float, float]:
    return positive_number(sigma_w, "sigma_w"), positive_number(sigma_b, "sigma_b", allow_zero=True)


def _check_names(get: Sequence[str]) -> tuple[str, ...]:
    names = (get,) if isinstance(get, str) else tuple(get)
    unknown = [name for name in names if name not in KERNEL_NAMES]
    if unknown or not names:
        raise NCInputError(f"unknown kernel {unknown or '(none)'}; choose from: "
                           f"{', '.join(KERNEL_NAMES)}")
    return names
