"""Kernel view of Neural Collapse (definitions §3): NNGP, NTK and the adaptive kernel.

- ``closed_form``: infinite-width kernels of a two-layer network, one formula each;
- ``kernel_nc1``: Tr Sigma_W, Tr Sigma_B and NC1 from a Gram matrix;
- ``adaptive_kernel``: the equations of state of Seroussi, Naveh & Ringel;
- ``data``: D1 (definitions §3) and Gaussian classes of set separation and spread;
- ``train_network``: the finite two-layer network trained by full-batch gradient descent;
- ``torch_threads``: a block of code on at most so many torch threads.

The Kothapalli & Tirer sweep behind ``nclab kernel`` is ``nclab.studies.kernel_sweep``.
"""

from nclab.kernels._arrays import torch_threads
from nclab.kernels.adaptive import (
    AdaptiveKernelResult,
    EquationsOfState,
    adaptive_kernel,
    adaptive_q,
    eos_gradient,
)
from nclab.kernels.closed_form import (
    ACTIVATIONS,
    KERNEL_NAMES,
    DualActivation,
    erf_dvar,
    erf_kact,
    erf_kdot,
    get_activation,
    input_kernel,
    nngp,
    nngp_hidden,
    ntk,
    relu_dvar,
    relu_kact,
    relu_kdot,
    two_layer_kernels,
)
from nclab.kernels.data import GaussianClasses, class_targets, d1, separated_classes
from nclab.kernels.nc1 import KernelNC1, feature_nc1, kernel_nc1
from nclab.kernels.network import TrainingResult, TwoLayerNetwork, train_network

__all__ = [
    "ACTIVATIONS",
    "KERNEL_NAMES",
    "AdaptiveKernelResult",
    "DualActivation",
    "EquationsOfState",
    "GaussianClasses",
    "KernelNC1",
    "TrainingResult",
    "TwoLayerNetwork",
    "adaptive_kernel",
    "adaptive_q",
    "class_targets",
    "d1",
    "eos_gradient",
    "erf_dvar",
    "erf_kact",
    "erf_kdot",
    "feature_nc1",
    "get_activation",
    "input_kernel",
    "kernel_nc1",
    "nngp",
    "nngp_hidden",
    "ntk",
    "relu_dvar",
    "relu_kact",
    "relu_kdot",
    "separated_classes",
    "torch_threads",
    "train_network",
    "two_layer_kernels",
]
