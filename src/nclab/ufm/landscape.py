"""The landscape of the sphere UFM: gradient, Hessian spectrum, and its critical points.

At a point x = (W, H) of the oblique manifold (every row on the unit sphere), with the
plain product metric of definitions §4:

    grad f    = P_x(nabla f),                      row by row,
    Hess f[xi] = P_x(nabla^2 f[xi]) - (x^T nabla f) xi,   row by row, for tangent xi.

Hessian-vector products are exact (torch autograd, reverse over reverse), on the CPU. In
an orthonormal basis of the tangent space the Riemannian Hessian is the symmetric matrix
U^T (nabla^2 f) U - diag(x_j^T nabla_j f), whose smallest eigenvalues are computed either
densely or with Lanczos (scipy ``eigsh``) for large problems.

Constructors of critical points, each a function of a :class:`SphereUFM` and an optional
rotation: :func:`etf_point` (the global minimizer), :func:`grouped_point` (classes share
vectors in groups: a smaller simplex) and :func:`flipped_point` (h_{k,i} = -w_k). The
last two are strict saddles (Yaras et al., 2022): gradient zero, a negative eigenvalue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh

from nclab.core.errors import NCInputError
from nclab.ufm.optim import one_thread_if_small
from nclab.ufm.sphere import SphereUFM, normalize_rows, project_tangent

#: Above this many tangent dimensions, ``method="auto"`` uses Lanczos.
DENSE_LIMIT = 4000


@dataclass(frozen=True)
class LandscapeProbe:
    """Gradient norm and Hessian spectrum of the sphere UFM at one point.

    Attributes
    ----------
    objective : float
    grad_norm : float
        ||grad f|| in the plain product metric.
    eigenvalues : ndarray of shape (k,)
        The k smallest eigenvalues of the Riemannian Hessian, ascending.
    dimension : int
        Dimension of the manifold, (K + N)(d - 1).
    symmetry_modes : int
        Zero eigenvalues forced by the rotation symmetry x -> Q x at this point
        (dimension of its O(d) orbit); a count from the point's span, not the spectrum.
    """

    objective: float
    grad_norm: float
    eigenvalues: np.ndarray
    dimension: int
    symmetry_modes: int

    @property
    def min_eigenvalue(self) -> float:
        """The smallest eigenvalue of the Riemannian Hessian."""
        return float(self.eigenvalues[0])

    def zero_modes(self, tol: float = 1e-8) -> int:
        """Number of computed eigenvalues with |lambda| <= tol."""
        return int(np.sum(np.abs(self.eigenvalues) <= tol))

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"objective": self.objective, "grad_norm": self.grad_norm,
                "min_eigenvalue": self.min_eigenvalue,
                "eigenvalues": self.eigenvalues.tolist(), "dimension": self.dimension,
                "symmetry_modes": self.symmetry_modes}


def symmetry_modes(weight: torch.Tensor, features: torch.Tensor, rtol: float = 1e-9) -> int:
    """Dimension of the O(d) orbit of (W, H): d(d-1)/2 - (d-r)(d-r-1)/2, r = rank.

    Rotations that fix the span of the rows (dimension r) pointwise leave the point
    where it is; every other infinitesimal rotation moves it along a level set of f.
    """
    rows = torch.cat([weight, features]).to(torch.float64)
    singular = torch.linalg.svdvals(rows)
    rank = int((singular > rtol * singular[0]).sum())
    dim = rows.shape[1]
    return dim * (dim - 1) // 2 - (dim - rank) * (dim - rank - 1) // 2


def tangent_basis(rows: torch.Tensor) -> torch.Tensor:
    """Orthonormal bases (R, d, d-1) of the tangent spaces x^perp of unit rows (R, d)."""
    q, _ = torch.linalg.qr(rows.unsqueeze(-1), mode="complete")
    return q[..., 1:]


class _RiemannianHessian:
    """Hess f at one point, as a symmetric operator on tangent coordinates (R (d-1),)."""

    def __init__(self, ufm: SphereUFM, weight: torch.Tensor, features: torch.Tensor) -> None:
        self.ufm = ufm
        self.num_classes = weight.shape[0]
        self.point = torch.cat([weight, features]).detach().to(torch.float64)
        self.basis = tangent_basis(self.point)
        x = self.point.clone().requires_grad_(True)
        value = self._objective(x)
        (grad,) = torch.autograd.grad(value, x)
        self.value = float(value.detach())
        self.grad = grad
        self.normal = torch.sum(self.point * grad, dim=-1)  # x_j^T nabla_j f
        self._grad_vjp = None

    def _objective(self, x: torch.Tensor) -> torch.Tensor:
        return self.ufm.objective(x[: self.num_classes], x[self.num_classes:])

    @property
    def size(self) -> int:
        return self.basis.shape[0] * self.basis.shape[2]

    def grad_norm(self) -> float:
        return float(torch.linalg.vector_norm(project_tangent(self.point, self.grad)))

    def _hvp(self, ambient: torch.Tensor) -> torch.Tensor:
        """nabla^2 f [v] for a batch of ambient directions (B, R, d), exact.

        Reverse over reverse: the vector-Jacobian product of the gradient map, which is
        the Hessian-vector product because the Hessian is symmetric.
        """
        if self._grad_vjp is None:
            _, self._grad_vjp = torch.func.vjp(torch.func.grad(self._objective), self.point)
        return torch.func.vmap(lambda v: self._grad_vjp(v)[0])(ambient)

    def matmat(self, coords: torch.Tensor) -> torch.Tensor:
        """Hess f applied to tangent coordinates (B, R (d-1)) -> (B, R (d-1))."""
        rows, dim, sub = self.basis.shape
        c = coords.reshape(-1, rows, sub)
        ambient = torch.einsum("rds,brs->brd", self.basis, c)
        out = torch.einsum("rds,brd->brs", self.basis, self._hvp(ambient))
        out = out - self.normal.view(1, -1, 1) * c
        return out.reshape(coords.shape)

    def dense(self, chunk: int = 256) -> torch.Tensor:
        eye = torch.eye(self.size, dtype=torch.float64)
        columns = [self.matmat(eye[i: i + chunk]) for i in range(0, self.size, chunk)]
        matrix = torch.cat(columns)
        return (matrix + matrix.T) / 2


def riemannian_hessian(ufm: SphereUFM, weight: torch.Tensor, features: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The Riemannian Hessian at (W, H) as a dense matrix in tangent coordinates.

    Returns
    -------
    matrix : Tensor of shape (m, m), m = (K + N)(d - 1)
        Symmetric; coordinate block j (length d - 1) belongs to row j of [W; H].
    basis : Tensor of shape (K + N, d, d - 1)
        Orthonormal tangent bases: the tangent vector with coordinates c is
        xi_j = basis[j] @ c_j.
    """
    weight, features = _check_point(ufm, weight, features)
    with one_thread_if_small(weight.numel() + features.numel()):
        hessian = _RiemannianHessian(ufm, weight, features)
        return hessian.dense(), hessian.basis


def probe(ufm: SphereUFM, weight: torch.Tensor, features: torch.Tensor, *, k: int = 20,
          method: str = "auto") -> LandscapeProbe:
    """Riemannian gradient norm and the k smallest Hessian eigenvalues at (W, H).

    Parameters
    ----------
    ufm : SphereUFM
    weight : Tensor of shape (K, d)
        Unit rows (they are checked, not renormalized).
    features : Tensor of shape (N, d)
        Unit rows, sorted by class as ``ufm.labels()``.
    k : int
        How many of the smallest eigenvalues to return (all of them if k exceeds the
        manifold dimension).
    method : {"auto", "dense", "lanczos"}
        "dense" builds the full Riemannian Hessian; "lanczos" uses ``eigsh`` on
        Hessian-vector products; "auto" picks dense up to DENSE_LIMIT dimensions.

    Returns
    -------
    LandscapeProbe
    """
    weight, features = _check_point(ufm, weight, features)
    with one_thread_if_small(weight.numel() + features.numel()):
        return _probe(ufm, weight, features, k, method)


def _probe(ufm: SphereUFM, weight: torch.Tensor, features: torch.Tensor, k: int, method: str
           ) -> LandscapeProbe:
    hessian = _RiemannianHessian(ufm, weight, features)
    k = min(int(k), hessian.size)
    if method == "auto":
        method = "dense" if hessian.size <= DENSE_LIMIT else "lanczos"
    if method == "lanczos" and k >= hessian.size - 1:
        method = "dense"  # eigsh needs k < dimension; the full spectrum is dense anyway
    if method == "dense":
        eigenvalues = torch.linalg.eigvalsh(hessian.dense())[:k].numpy()
    elif method == "lanczos":
        operator = LinearOperator(
            (hessian.size, hessian.size), dtype=np.float64,
            matvec=lambda v: hessian.matmat(torch.from_numpy(np.ascontiguousarray(v))
                                            .reshape(1, -1)).reshape(-1).numpy())
        eigenvalues = np.sort(eigsh(operator, k=k, which="SA", return_eigenvectors=False))
    else:
        raise NCInputError(f"method must be auto, dense or lanczos; got {method!r}")
    return LandscapeProbe(objective=hessian.value, grad_norm=hessian.grad_norm(),
                          eigenvalues=eigenvalues, dimension=hessian.size,
                          symmetry_modes=symmetry_modes(weight, features))


def _check_point(ufm: SphereUFM, weight, features) -> tuple[torch.Tensor, torch.Tensor]:
    weight = torch.as_tensor(weight, dtype=torch.float64).detach().cpu()
    features = torch.as_tensor(features, dtype=torch.float64).detach().cpu()
    expected = ((ufm.num_classes, ufm.dim), (ufm.num_samples, ufm.dim))
    for name, x, shape in (("weight", weight, expected[0]), ("features", features, expected[1])):
        if tuple(x.shape) != shape:
            raise NCInputError(f"{name} must have shape {shape}; got {tuple(x.shape)}")
        norms = torch.linalg.vector_norm(x, dim=1)
        if not bool(torch.isfinite(x).all()) or float((norms - 1).abs().max()) > 1e-10:
            raise NCInputError(f"{name} rows must be finite unit vectors (max | ||row|| - 1 | "
                               f"= {float((norms - 1).abs().max()):.3g})")
    return weight, features


# ---------------------------------------------------------------- critical points


def simplex_etf(count: int, dim: int) -> torch.Tensor:
    """``count`` unit vectors in R^dim with pairwise cosine -1/(count-1): (count, dim).

    They span the first count-1 coordinates. Needs dim >= count - 1; count = 1 gives e_1.
    """
    if dim < count - 1:
        raise NCInputError(f"a simplex ETF of {count} vectors needs dim >= {count - 1}; "
                           f"got dim={dim}")
    if count == 1:
        return torch.eye(1, dim, dtype=torch.float64)
    centred = torch.eye(count, dtype=torch.float64) - 1.0 / count
    # Orthonormal basis of 1^perp: eigenvectors of the centring matrix with eigenvalue 1.
    basis = torch.linalg.eigh(centred).eigenvectors[:, 1:]
    coords = centred @ basis * (count / (count - 1)) ** 0.5
    return torch.nn.functional.pad(coords, (0, dim - count + 1))


def random_rotation(dim: int, seed: int) -> torch.Tensor:
    """A Haar-random orthogonal matrix (dim, dim)."""
    gauss = torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
    q, r = torch.linalg.qr(gauss)
    return q * torch.sign(torch.diagonal(r))


def _place(ufm: SphereUFM, class_vectors: torch.Tensor, feature_sign: float,
           rotation: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    weight = class_vectors if rotation is None else class_vectors @ rotation.T
    weight = normalize_rows(weight)
    features = feature_sign * weight.repeat_interleave(ufm.per_class, dim=0)
    return weight, features


def etf_point(ufm: SphereUFM, rotation: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The global minimizer: W a simplex ETF, h_{k,i} = w_k (d >= K - 1)."""
    return _place(ufm, simplex_etf(ufm.num_classes, ufm.dim), 1.0, rotation)


def flipped_point(ufm: SphereUFM, rotation: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """W a simplex ETF and every feature opposite its classifier: h_{k,i} = -w_k.

    Critical: the Euclidean gradient of each row is parallel to the row. Each sample's
    own logit is the lowest one, so turning any feature towards its w_k lowers f.
    """
    return _place(ufm, simplex_etf(ufm.num_classes, ufm.dim), -1.0, rotation)


def grouped_point(ufm: SphereUFM, groups: int, rotation: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Classes in ``groups`` equal groups; a group shares one vector (for w and h).

    The G group vectors form a simplex ETF (a smaller simplex, d >= G - 1), classes
    k = g m, ..., g m + m - 1 (m = K/G) belong to group g. Critical because within a
    group the classes are symmetric and the other groups are equally far; splitting a
    group lowers f.

    Parameters
    ----------
    ufm : SphereUFM
    groups : int
        G, with 1 <= G < K and G dividing K.
    rotation : Tensor (d, d), optional
    """
    k = ufm.num_classes
    if int(groups) != groups or not 1 <= groups < k or k % groups:
        raise NCInputError(f"groups must divide K={k} and lie in 1..{k - 1}; got {groups}")
    groups = int(groups)
    vectors = simplex_etf(groups, ufm.dim).repeat_interleave(k // groups, dim=0)
    return _place(ufm, vectors, 1.0, rotation)

