"""Unconstrained features models (UFM): where Neural Collapse is the optimum.

- :class:`RegularizedUFM`: cross-entropy or squared error with weight decay on W, H and b
  (Zhu et al., 2021; Zhou et al., 2022), full-batch gradient descent.
- :class:`LayerPeeledUFM`: cross-entropy with norm budgets on W and H, no bias (the
  Layer-Peeled Model of Fang et al., 2021; minority collapse), Riemannian gradient descent.
- :class:`SphereUFM`: unit-norm features and classifiers with inverse temperature tau
  (Yaras et al., 2022; definitions §4), Riemannian gradient descent.
- :func:`probe`: Riemannian gradient norm and Hessian spectrum of the sphere model at any
  point; :func:`etf_point`, :func:`grouped_point`, :func:`flipped_point` construct its
  critical points.

Everything runs in float64, batched over random starts, on the CPU or a GPU.
"""

from nclab.ufm._base import UFMSolution
from nclab.ufm.classification import RegularizedUFM
from nclab.ufm.landscape import (
    LandscapeProbe,
    etf_point,
    flipped_point,
    grouped_point,
    probe,
    simplex_etf,
)
from nclab.ufm.layer_peeled import LayerPeeledUFM
from nclab.ufm.sphere import SphereUFM

__all__ = [
    "LandscapeProbe",
    "LayerPeeledUFM",
    "RegularizedUFM",
    "SphereUFM",
    "UFMSolution",
    "etf_point",
    "flipped_point",
    "grouped_point",
    "probe",
    "simplex_etf",
]
