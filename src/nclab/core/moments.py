"""The moments engine: per-group counts, means and squared spread, and the pooled scatter.

For vectors x_i in R^d with group labels g_i in 0..G-1, :class:`Moments` holds, in
float64 on the data's device,

    counts (G,), means mu_g (G, d), spread_g = sum_{g_i = g} ||x_i - mu_g||^2 (G,),
    scatter = sum_i (x_i - mu_{g_i})(x_i - mu_{g_i})^T (d, d),

and is a :class:`~nclab.core.streaming.StatePart`: a statistic declares it, and its
fields are saved, loaded, merged and synced from that declaration.

How a batch is added (the hot path, at the pace of the batch product):

- each group has a fixed reference point r_g near its data (its first sample, then its
  mean after every finalize), in the features' dtype and on their device;
- rows are staged into blocks of ``BLOCK_ROWS``; a full block costs one gather and one
  subtraction of the references, the row norms, the per-group residual sums over the
  groups *present* in the block, and one batch product of the residuals, added into a
  float64 Gram. Nothing per block is proportional to G, and every buffer is allocated
  once;
- the pending residual sums are kept in the working dtype, like the block products: a
  group whose pending rows would pass ``BLOCK_ROWS`` is first folded into the centred
  state (below), so no float32 sum holds more rows than one block's Gram product does,
  and no row is widened to float64 on the hot path;
- on read (any accessor, ``merge``, ``all_reduce``, ``read``) the pending sums are
  finalized once: mean_g = r_g + s_g / n_g, spread_g = q_g - n_g ||s_g / n_g||^2 and
  scatter = Gram - sum_g n_g (s_g / n_g)(s_g / n_g)^T, folded into the centred state with
  the pairwise update of Chan, Golub & LeVeque::

      scatter = scatter_a + scatter_b + sum_g (n_a,g n_b,g / n_g) delta_g delta_g^T,

  after which the references move to the means, so no precision is lost however the
  data drift.

Residuals about a point of their own group are small, so a float32 product of them
loses nothing to the size of the means (means of norm 1e3 with a spread of 1e-4 keep
their float64 accuracy).

Float range: the state is kept in units of ``2**exponent`` times the data, a power of two
chosen from the data's largest magnitude when it leaves a safe band of the working dtype
(float32: 2^-30 .. 2^40, float64: 2^-400 .. 2^400) and lowered, exactly, when a later
batch would overflow. Powers of two scale without rounding, so squares never overflow or
underflow and the scale-free metrics are the same at every scale.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from nclab.core import distributed
from nclab.core.errors import NCInputError
from nclab.core.streaming import StatePart, check_total
from nclab.core.validation import ensure_finite

#: Largest |exponent| a state may declare (float64 spans 2^-1074 .. 2^1024).
MAX_STATE_EXPONENT = 2200


# ---------------------------------------------------------------------------- float range
@dataclass(frozen=True)
class _Band:
    """Magnitudes a working dtype holds without over- or underflow in its squares."""

    low: float
    high: float
    max_exponent: int
    overflow: float  # larger magnitudes leave the dtype's range in a difference of rows


_BANDS = {
    dtype: _Band(low, high, max_exponent, torch.finfo(dtype).max / 4)
    for dtype, low, high, max_exponent in ((torch.float32, 2.0**-30, 2.0**40, 120),
                                           (torch.float64, 2.0**-400, 2.0**400, 1000))
}
_NO_EXPONENT = 1 << 20  # stands for "no data" in the all-reduce of exponents
_GRAM_LEAF = 64  # narrowest diagonal block of the Gram computed as one product


def times_power_of_two(t: torch.Tensor, power: int) -> torch.Tensor:
    """``t * 2**power`` (a new tensor unless ``power`` is 0), exact barring over/underflow.

    Applied in steps so that ``2**power`` itself need not be a representable float.
    """
    while power:
        step = max(-1000, min(1000, power))
        t = t * math.ldexp(1.0, step)
        power -= step
    return t


def normalizing_exponent(magnitude: float) -> int:
    """k with ``magnitude * 2**-k`` in [0.5, 1) (0 for a magnitude of 0)."""
    return math.frexp(magnitude)[1] if magnitude > 0 else 0


def _exact_peak(x: torch.Tensor, name: str) -> float:
    """max |x|; NCInputError naming the first row with NaN or inf."""
    peak = max(float(x.amax()), -float(x.amin()))
    if not math.isfinite(peak):
        ensure_finite(x, name)
        raise NCInputError(f"{name} contain NaN or inf")  # amax saw one that isfinite missed
    return peak


def _magnitude(x: torch.Tensor, name: str) -> tuple[float, float]:
    """(lower, upper) bounds of max |x| from one pass; NCInputError on NaN or inf.

    The Frobenius norm bounds the largest entry from above and sqrt(numel) times it from
    below; only when it over- or underflows is the exact maximum read.
    """
    norm = float(torch.linalg.vector_norm(x))
    if math.isnan(norm):
        ensure_finite(x, name)
    if 0 < norm < math.inf:
        return norm / math.sqrt(x.numel()), norm
    peak = _exact_peak(x, name)
    return peak, peak


# ---------------------------------------------------------------------------- hot path
def _upper_blocks(lo: int, hi: int, leaf: int) -> list[tuple[int, int, int, int]]:
    """Blocks (r0, r1, c0, c1) covering the upper block triangle of columns lo..hi.

    The diagonal halves recurse and the off-diagonal block is one product, so the Gram of
    d columns costs about (1/2 + leaf / 2d) of the full product, as a symmetric rank-k
    update does, in large products that run at the GEMM's pace.
    """
    if hi - lo <= leaf:
        return [(lo, hi, lo, hi)]
    mid = lo + -(-(hi - lo) // 32) * 16  # the half, rounded to 16 columns
    return [*_upper_blocks(lo, mid, leaf), (lo, mid, mid, hi), *_upper_blocks(mid, hi, leaf)]


@functools.lru_cache(maxsize=64)
def _gram_plan(dim: int) -> tuple[tuple[slice, slice, float], ...]:
    """(rows, columns, weight) of the upper block triangle of a d x d Gram; off-diagonal
    blocks weigh 2, so that (G + G^T) / 2 of the blocks' sum is the whole Gram.

    Two levels of halving (7 products, 5/8 of the flops) from d = 256 on; narrower
    diagonal blocks than 64 columns would run below the GEMM's pace.
    """
    leaf = max(_GRAM_LEAF, -(-dim // 64) * 16)
    return tuple((slice(r0, r1), slice(c0, c1), 1.0 if r0 == c0 else 2.0)
                 for r0, r1, c0, c1 in _upper_blocks(0, dim, leaf))


def host_syrk_applies(z: torch.Tensor) -> bool:
    """Whether z^T z runs as the host BLAS's symmetric rank-k update on z's own memory:
    a plain, row-major float32 or float64 tensor in CPU memory (views of other devices,
    strided views, autograd or lazy tensors take torch's products), with torch on one
    thread. With more, OpenBLAS's threads and torch's OpenMP ones contend for the cores:
    on two threads the pass measured no faster than with torch's products alone
    (docs/performance.md)."""
    return (torch.get_num_threads() == 1 and type(z) is torch.Tensor
            and z.device.type == "cpu" and z.layout == torch.strided
            and z.dtype in (torch.float32, torch.float64) and z.is_contiguous()
            and not (z.requires_grad or z.is_neg() or z.is_conj()))


@functools.cache
def _host_blas() -> Any:
    """threadpoolctl's handle on the BLAS libraries loaded in the process (numpy's)."""
    from threadpoolctl import ThreadpoolController  # here: `import nclab` stays light

    return ThreadpoolController().select(user_api="blas")


def host_gram(z: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = z^T z, whole and symmetric, in z's dtype (``out`` (d, d) contiguous).

    numpy's matmul runs ``a.T @ a`` as BLAS syrk: half the flops, measured at about 0.5x
    of torch's (MKL) GEMM against 0.7x for the upper blocks; torch exposes no syrk on
    the CPU. It runs on one thread, as torch does (OpenBLAS would take every core).
    """
    import numpy as np

    rows = z.numpy()
    with _host_blas().limit(limits=1):
        np.matmul(rows.T, rows, out=out.numpy())
    return out


def _add_upper_gram(target: torch.Tensor, z: torch.Tensor, alpha: float = 1.0,
                    scratch: torch.Tensor | None = None) -> bool:
    """target += alpha z^T z in upper-block form, in float64: the host's syrk into
    ``scratch`` (d, d) float64 (allocated when None) where it applies, else the upper
    blocks' products (no temporaries). Returns whether the Gram was added whole (the
    syrk), so that ``target`` stays symmetric if it was."""
    if host_syrk_applies(z) and z.dtype == torch.float64:
        dim = z.shape[1]
        wide = torch.empty(dim, dim, dtype=torch.float64) if scratch is None else scratch
        target.add_(host_gram(z, wide), alpha=alpha)
        return True
    for rows, columns, weight in _gram_plan(z.shape[1]):
        target[rows, columns].addmm_(z[:, rows].T, z[:, columns], alpha=alpha * weight)
    return False


def _row_squares(x: torch.Tensor) -> torch.Tensor:
    """||x_i||^2 of each row, without an x-sized temporary."""
    return torch.linalg.vector_norm(x, dim=1).square_()


def _add_symmetrized(target: torch.Tensor, upper: torch.Tensor) -> None:
    """target += (upper + upper^T) / 2: the whole Gram from its upper-block form."""
    target.add_(upper, alpha=0.5).add_(upper.T, alpha=0.5)


#: Size of the buffers through which rows pass chunk by chunk (float32 rows widened to
#: float64, the references gathered for a block): ones that stay in cache cost no memory
#: traffic per chunk, and fewer fresh pages (a page fault each) than block-sized ones
#: that every new object would touch; smaller chunks would cost more in per-call
#: overhead, which grows with torch's threads.
_WIDE_BYTES = 1 << 20


def _zeros(*shape: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """torch.zeros, which on the CPU takes zeroed pages from the system (numpy's calloc):
    their memory is touched only where it is written, so a large buffer costs no pass of
    zeros, and one that a short-lived object never writes no page faults either."""
    if device.type != "cpu":
        return torch.zeros(*shape, dtype=dtype, device=device)
    import numpy as np  # the host's calloc; numpy is loaded with torch

    return torch.from_numpy(np.zeros(shape, dtype=torch.empty((), dtype=dtype).numpy().dtype))


class _Pending:
    """The hot-path state of :class:`Moments`: references, residual sums, staged rows.

    ``counts``, ``sums`` (working dtype), ``squares`` (float64) and ``gram`` (float64) are
    the moments of the residuals x - ref_g of the rows folded since the last finalize
    (``gram`` also holds the corrections of groups folded out since: see
    :meth:`Moments._fold_out`). With float32 rows no group holds more than
    ``fold_limit`` pending rows.
    """

    def __init__(self, groups: int, dim: int, dtype: torch.dtype, device: torch.device,
                 rows: int) -> None:
        work: dict[str, Any] = {"dtype": dtype, "device": device}
        wide: dict[str, Any] = {"dtype": torch.float64, "device": device}
        self.dtype, self.device = dtype, device
        self.ref = torch.zeros(groups, dim, **work)
        self.has_ref = torch.zeros(groups, dtype=torch.bool, device=device)
        self.position = torch.zeros(groups, dtype=torch.int64, device=device)
        self.counts = torch.zeros(groups, dtype=torch.int64, device=device)
        self.sums = torch.zeros(groups, dim, **work)
        self.squares = torch.zeros(groups, **wide)
        self.gram = _zeros(dim, dim, **wide)
        self.whole = True  # gram holds whole Grams only (symmetric): no symmetrizing
        self.rows = 0  # rows folded into the sums above
        self.stage = torch.empty(rows, dim, **work)  # staged rows, then their residuals
        self.stage_groups = torch.empty(rows, dtype=torch.int64, device=device)
        self.staged = 0
        # the references of a chunk of a block's rows
        chunk = max(1, min(rows, _WIDE_BYTES // (self.stage.element_size() * dim)))
        self.gather = torch.empty(chunk, dim, **work)
        narrow = dtype != torch.float64
        host = device.type == "cpu"
        # float32 products of the Gram (the host's syrk, or torch's products of its upper
        # blocks), added into the float64 Gram widened chunk by chunk (a mixed-dtype add_
        # is 10x slower); float64 ones on the host through a float64 copy
        self.square = torch.empty(dim, dim, **work) if narrow and host else None
        self.products = [torch.empty(r.stop - r.start, c.stop - c.start, **work)
                         for r, c, _ in _gram_plan(dim)] if narrow else []
        self.scratch = torch.empty(dim, dim, **wide) if host and not narrow else None
        # float32 sums hold at most a block's rows per group (float64 ones need no limit)
        self.fold_limit = rows if narrow else None
        # float32 rows widened to float64 in chunks, without a C x d temporary
        chunk = max(1, _WIDE_BYTES // (8 * dim))
        self.wide = torch.empty(chunk, dim, **wide) if narrow else None

    def overfull(self, present: torch.Tensor, counts: torch.Tensor) -> torch.Tensor | None:
        """The groups among ``present`` whose pending sums would pass ``fold_limit`` rows
        with ``counts`` more (None when none would)."""
        if self.fold_limit is None:
            return None
        over = self.counts[present] + counts > self.fold_limit
        return present[over] if bool(over.any()) else None

    def add_widened(self, target: torch.Tensor, source: torch.Tensor,
                    alpha: float = 1.0) -> torch.Tensor:
        """target (k, m) float64 += alpha source (k, m) in the working dtype, m <= d (a
        mixed-dtype add_ is 7x slower than widening through a buffer first); returns
        target."""
        if self.wide is None:
            return target.add_(source, alpha=alpha)
        step = max(1, self.wide.numel() // source.shape[1])
        for start in range(0, len(source), step):
            part = source[start : start + step]
            wide = self.wide.view(-1)[: part.numel()].view(part.shape)
            target[start : start + step].add_(wide.copy_(part), alpha=alpha)
        return target

    def add_gram(self, residual: torch.Tensor, alpha: float = 1.0) -> None:
        """gram += alpha residual^T residual, in upper-block form (about half the
        products), the products in the working dtype (``residual`` is converted to it
        through the stage: only when no rows are staged)."""
        if self.dtype == torch.float64:
            self.whole &= _add_upper_gram(self.gram, residual, alpha, self.scratch)
            return
        if residual.dtype != self.dtype:  # converted block by block through the stage
            block = len(self.stage)
            for start in range(0, len(residual), block):
                part = residual[start : start + block]
                self.add_gram(self.stage[: len(part)].copy_(part), alpha)
            return
        if self.square is not None and host_syrk_applies(residual):
            self.add_widened(self.gram, host_gram(residual, self.square), alpha)
            return
        self.whole = False
        plan = _gram_plan(residual.shape[1])
        for (rows, columns, weight), product in zip(plan, self.products, strict=True):
            torch.mm(residual[:, rows].T, residual[:, columns], out=product)
            self.add_widened(self.gram[rows, columns], product, alpha * weight)


class Moments(StatePart):
    """Per-group counts, means and squared spread, and the pooled within-group scatter.

    Parameters
    ----------
    num_groups : int
        G; group labels lie in ``0..G-1``.
    dim : int
        d, the length of the vectors.

    Notes
    -----
    Values are held in units of ``2**exponent`` times the data (``exponent`` is 0 for
    data of ordinary magnitude). :meth:`moments` returns them in those units; the
    callers convert.
    """

    BLOCK_ROWS = 4096

    def __init__(self, num_groups: int, dim: int) -> None:
        self.num_groups, self.dim = num_groups, dim
        self._pending: _Pending | None = None
        self._clear(torch.device("cpu"))

    def _clear(self, device: torch.device) -> None:
        wide: dict[str, Any] = {"dtype": torch.float64, "device": device}
        self._counts = torch.zeros(self.num_groups, dtype=torch.int64, device=device)
        self._means = torch.zeros(self.num_groups, self.dim, **wide)
        self._spread = torch.zeros(self.num_groups, **wide)
        self._scatter = _zeros(self.dim, self.dim, **wide)
        self.exponent = 0
        self.rows = 0  # every row added, pending ones included
        self._signal = False  # a nonzero value was seen: the exponent is fixed by it
        # changes whenever the finalized state does (never repeats: views cache on it)
        self.version = getattr(self, "version", -1) + 1

    def reset(self) -> None:
        """Forget everything, including the workspace."""
        self._pending = None
        self._clear(self._means.device)

    @property
    def device(self) -> torch.device:
        return self._means.device

    # ------------------------------------------------------------------ accumulation
    def update(self, x: torch.Tensor, groups: torch.Tensor | None = None,
               name: str = "features") -> None:
        """Add rows ``x`` (n, d), float32 or float64, with ``groups`` (n,) int64 on the
        same device (None: every row in group 0). NaN or inf is refused before anything
        is written."""
        if x.shape[0] == 0:
            return
        lower, upper = _magnitude(x, name)
        self._refuse_overflow(x, upper, name)
        self._ensure_workspace(x.dtype, x.device)
        self._fit_exponent(x, lower, upper, name)
        self._stage_rows(x, groups)
        self.rows += x.shape[0]

    @staticmethod
    def _refuse_overflow(x: torch.Tensor, upper: float, name: str) -> None:
        limit = _BANDS[x.dtype].overflow
        if upper > limit and (peak := _exact_peak(x, name)) > limit:
            advice = "pass them as float64" if x.dtype != torch.float64 else "rescale them"
            raise NCInputError(
                f"{name} reach magnitude {peak:.3g}, too close to the largest {x.dtype} "
                f"({torch.finfo(x.dtype).max:.3g}) to take their differences: {advice}"
            )

    def _ensure_workspace(self, dtype: torch.dtype, device: torch.device) -> None:
        p = self._pending
        if p is not None and p.dtype == dtype and p.device == device:
            return
        ref = None
        if p is not None:
            self._finalize()
            ref, has_ref = p.ref, p.has_ref
        self._move_state(device)
        p = self._pending = _Pending(self.num_groups, self.dim, dtype, device, self.BLOCK_ROWS)
        if ref is not None:
            p.ref.copy_(ref)
            p.has_ref.copy_(has_ref)

    def _move_state(self, device: torch.device) -> None:
        if self._means.device != device:
            for key in ("_counts", "_means", "_spread", "_scatter"):
                setattr(self, key, getattr(self, key).to(device))

    def _fit_exponent(self, x: torch.Tensor, lower: float, upper: float, name: str) -> None:
        band = _BANDS[x.dtype]
        if not self._signal:  # the state is all zeros: any exponent fits it
            if upper == 0:
                return
            self._signal = True
            if lower >= band.low and upper <= band.high:
                self._set_exponent(0)
            else:
                peak = _exact_peak(x, name)
                inside = band.low <= peak <= band.high
                self._set_exponent(0 if inside else self._exponent_for(peak, band))
            return
        if upper * math.ldexp(1.0, self.exponent) <= band.high:
            return
        peak = _exact_peak(x, name)
        if peak * math.ldexp(1.0, self.exponent) > band.high:
            self._rescale(min(self.exponent, self._exponent_for(peak, band)))

    @staticmethod
    def _exponent_for(peak: float, band: _Band) -> int:
        exponent = -normalizing_exponent(peak)
        return max(-band.max_exponent, min(band.max_exponent, exponent))

    def _set_exponent(self, exponent: int) -> None:
        """Change units of an all-zero state (nothing to convert but the references)."""
        if self._pending is not None and exponent != self.exponent:
            self._finalize()
            p = self._pending
            p.ref.copy_(times_power_of_two(p.ref, exponent - self.exponent))
        self.exponent = exponent

    def _rescale(self, exponent: int) -> None:
        """Express the state in units of 2**exponent, exactly (powers of two)."""
        if exponent == self.exponent:
            return
        self._finalize()
        shift = exponent - self.exponent
        self._means = times_power_of_two(self._means, shift)
        self._spread = times_power_of_two(self._spread, 2 * shift)
        self._scatter = times_power_of_two(self._scatter, 2 * shift)
        if self._pending is not None:
            p = self._pending
            p.ref.copy_(times_power_of_two(p.ref, shift))
        self.exponent = exponent
        self.version += 1

    def _stage_rows(self, x: torch.Tensor, groups: torch.Tensor | None) -> None:
        """Fold full blocks straight from ``x``; stage the rest (scaled when needed)."""
        p = self._pending
        assert p is not None
        scale = math.ldexp(1.0, self.exponent)
        block, start, n = len(p.stage), 0, x.shape[0]
        while start < n:
            if p.staged == 0 and n - start >= block and scale == 1.0:
                rows = slice(start, start + block)
                self._fold(x[rows], None if groups is None else groups[rows])
                start += block
                continue
            take = min(block - p.staged, n - start)
            target = p.stage[p.staged : p.staged + take]
            if scale == 1.0:
                target.copy_(x[start : start + take])
            else:
                torch.mul(x[start : start + take], scale, out=target)
            if groups is not None:
                p.stage_groups[p.staged : p.staged + take].copy_(groups[start : start + take])
            p.staged += take
            start += take
            if p.staged == block:
                self._flush_stage(groups is not None)

    def _flush_stage(self, grouped: bool = True) -> None:
        p = self._pending
        assert p is not None
        rows, p.staged = p.staged, 0
        self._fold(p.stage[:rows], p.stage_groups[:rows] if grouped else None)

    def _fold(self, x: torch.Tensor, groups: torch.Tensor | None) -> None:
        """Add a block of rows (in the state's units) to the pending residual moments."""
        p = self._pending
        assert p is not None
        residual = p.stage[: len(x)]
        if groups is None or self.num_groups == 1:
            self._fold_one_group(x, residual)
        else:
            self._fold_groups(x, groups, residual)
        p.add_gram(residual)
        p.rows += len(x)

    def _fold_one_group(self, x: torch.Tensor, residual: torch.Tensor) -> None:
        p = self._pending
        assert p is not None
        if not bool(p.has_ref[0]):
            p.ref[0] = x[0]
            p.has_ref[0] = True
        first = torch.zeros(1, dtype=torch.int64, device=x.device)
        if (full := p.overfull(first, torch.full_like(first, len(x)))) is not None:
            self._fold_out(full)
        torch.sub(x, p.ref[0], out=residual)
        p.counts[0] += len(x)
        p.sums[0] += residual.sum(dim=0)
        p.squares[0] += torch.linalg.vector_norm(residual).square()

    def _fold_groups(self, x: torch.Tensor, groups: torch.Tensor,
                     residual: torch.Tensor) -> None:
        p = self._pending
        assert p is not None
        counts = torch.bincount(groups, minlength=self.num_groups)  # O(G) integers only
        present = counts.nonzero().squeeze(1)
        p.position[present] = torch.arange(len(present), device=groups.device)
        inverse = p.position[groups]  # each row's place among the present groups
        counts = counts[present]
        if (full := p.overfull(present, counts)) is not None:
            self._fold_out(full)
        self._adopt_references(x, present, inverse)
        step = len(p.gather)
        for start in range(0, len(x), step):
            rows = slice(start, start + step)
            chunk = groups[rows]
            gathered = torch.index_select(p.ref, 0, chunk, out=p.gather[: len(chunk)])
            torch.sub(x[rows], gathered, out=residual[rows])
        p.sums.index_add_(0, groups, residual)
        squares = torch.linalg.vector_norm(residual, dim=1).square_()
        p.squares.index_add_(0, groups, squares.to(torch.float64))
        p.counts.index_add_(0, present, counts)

    def _adopt_references(self, x: torch.Tensor, present: torch.Tensor,
                          inverse: torch.Tensor) -> None:
        """Groups seen for the first time take their first row of the block as reference."""
        p = self._pending
        assert p is not None
        fresh = ~p.has_ref[present]
        if not bool(fresh.any()):
            return
        rows = len(x)
        first = torch.full((len(present),), rows, dtype=torch.int64, device=x.device)
        first.scatter_reduce_(0, inverse, torch.arange(rows, device=x.device), reduce="amin")
        chosen = fresh.nonzero().squeeze(1)
        new = present[chosen]
        p.ref[new] = x[first[chosen]]
        p.has_ref[new] = True

    # ------------------------------------------------------------------ finalize and merge
    def _finalize(self) -> None:
        """Fold the pending residual moments into the centred state (once per read)."""
        p = self._pending
        if p is None:
            return
        if p.staged:
            self._flush_stage(self.num_groups > 1)
        if p.rows == 0:
            return
        groups = p.counts.nonzero().squeeze(1)
        # every group (views, no gathers) when most are pending; else the pending ones.
        # Groups without pending rows then have zero counts, sums and squares: they add
        # nothing, and keep their reference (their mean, or 0 when never seen).
        if len(groups):
            self._fold_out(slice(None) if 2 * len(groups) >= self.num_groups else groups)
        if p.whole and self.rows == p.rows:
            # every row seen is pending, so the scatter is still the zeros of _clear (no
            # merge, load or earlier finalize wrote it): the Gram becomes the scatter and
            # those zeros, never touched, the next pending Gram
            self._scatter, p.gram = p.gram, self._scatter
        else:
            if p.whole:
                self._scatter.add_(p.gram)
            else:
                _add_symmetrized(self._scatter, p.gram)
            p.gram.zero_()
        p.whole = True
        p.rows = 0
        self.version += 1

    def _fold_out(self, rows: slice | torch.Tensor) -> None:
        """Move the pending counts, means and spread of the groups ``rows`` into the
        centred state and re-centre their references on the means; their share of the
        scatter (the pending Gram, less the Gram of their residual sums, plus Chan's cross
        terms) stays in the pending Gram, which the finalize adds to the scatter."""
        p = self._pending
        assert p is not None
        counts = p.counts[rows].clone()
        weights = counts.to(torch.float64)
        # in place on the pending sums where possible: no C x d temporaries but the means
        offset = p.sums[rows].div_(weights.clamp(min=1)[:, None].to(p.dtype))  # cleared below
        means = p.add_widened(self._means_buffer(rows).copy_(p.ref[rows]), offset)
        spread = p.squares[rows] - weights * _row_squares(offset).to(torch.float64)
        # the residual sums' Gram, in the precision of the residuals' own: it is no larger
        # (n_g o_g o_g^T <= the sum of r r^T over group g), so its rounding is no larger
        p.add_gram(offset.mul_(weights.sqrt()[:, None].to(p.dtype)), alpha=-1.0)
        p.whole &= self._merge_groups(rows, counts, means, spread.clamp_(min=0), p.gram)
        for buffer in (p.sums, p.squares, p.counts):
            buffer[rows] = 0
        if isinstance(rows, slice):  # re-centre on the means
            p.ref.copy_(self._means)
        else:
            p.ref[rows] = self._means[rows].to(p.dtype)

    def _means_buffer(self, rows: slice | torch.Tensor) -> torch.Tensor:
        """Where the finalize writes the pending means: the state's own (all-zero) means
        when every group is new, else a new tensor (the merge reads both). A fresh C x d
        float64 tensor costs as much as the rest of the finalize in first-touch page
        faults."""
        if isinstance(rows, slice) and not bool((self._counts > 0).any()):
            return self._means
        return torch.empty(self._means[rows].shape, dtype=torch.float64, device=self.device)

    def _merge_groups(self, rows: slice | torch.Tensor, counts: torch.Tensor,
                      means: torch.Tensor, spread: torch.Tensor, upper: torch.Tensor) -> bool:
        """Chan's pairwise merge of centred moments of the groups ``rows`` into the state;
        the cross terms of the scatter are added into ``upper`` (upper-block form: any
        symmetric matrix is one), which the caller adds to the scatter. ``means`` is used
        as scratch. Returns whether the cross terms went into ``upper`` whole (or there
        were none)."""
        whole = True
        n_a = self._counts[rows]
        if not bool((n_a > 0).any()):  # groups seen for the first time: no cross term
            if isinstance(rows, slice):
                self._counts, self._means, self._spread = counts, means, spread
            else:
                self._counts[rows], self._means[rows], self._spread[rows] = counts, means, spread
        else:
            n_a, n_b = n_a.to(torch.float64), counts.to(torch.float64)
            total = (n_a + n_b).clamp(min=1)  # groups in neither part stay as they are
            delta = means.sub_(self._means[rows])
            weight = n_a * n_b / total
            if isinstance(rows, slice):
                self._means.addcmul_(delta, (n_b / total)[:, None])
            else:
                self._means[rows] += delta * (n_b / total)[:, None]
            self._spread[rows] += spread + weight * _row_squares(delta)
            whole = _add_upper_gram(upper, delta.mul_(weight.sqrt()[:, None]))
            self._counts[rows] += counts
        self.version += 1
        return whole

    def moments(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(counts, means, spread, scatter), finalized, in units of 2**exponent (do not
        modify them)."""
        self._finalize()
        return self._counts, self._means, self._spread, self._scatter

    def merge(self, other: Moments) -> None:
        """Fold ``other`` (same G and d) into these moments, exactly."""
        other._finalize()
        if other.rows == 0:
            return
        self._finalize()
        exponent = self._common_exponent(other)
        self._rescale(exponent)
        shift, device = exponent - other.exponent, self.device
        groups = other._counts.nonzero().squeeze(1)
        scatter = times_power_of_two(other._scatter, 2 * shift).to(device=device, copy=True)
        self._merge_groups(
            groups.to(device), other._counts[groups].to(device),
            times_power_of_two(other._means[groups], shift).to(device),
            times_power_of_two(other._spread[groups], 2 * shift).to(device), scatter,
        )
        _add_symmetrized(self._scatter, scatter)
        self.rows += other.rows
        self._signal = self._signal or other._signal

    def _common_exponent(self, other: Moments) -> int:
        if not other._signal:
            return self.exponent
        if not self._signal:
            self._set_exponent(other.exponent)
            return other.exponent
        return min(self.exponent, other.exponent)

    def all_reduce(self) -> None:
        """Replace these moments by those of every rank together (a collective call).

        Each rank sends its moments about the global group means: the exact pairwise
        merge of all ranks at once, in two rounds (plus one for the common units).
        """
        self._finalize()
        mine = self.exponent if self._signal else _NO_EXPONENT
        exponent = -int(distributed.reduce_on_device(torch.tensor([-mine]), op="max"))
        if exponent != _NO_EXPONENT:
            if self._signal:
                self._rescale(exponent)
            else:
                self._set_exponent(exponent)
            self._signal = True
        local = self._counts.to(torch.float64)
        first = distributed.reduce_on_device(
            torch.cat([local, (self._means * local[:, None]).ravel()]))
        counts, sums = first[: self.num_groups], first[self.num_groups :]
        means = sums.reshape(self.num_groups, self.dim) / counts.clamp(min=1)[:, None]
        delta = torch.where((local > 0)[:, None], self._means - means, 0.0)
        spread = self._spread + local * (delta * delta).sum(dim=1)
        scatter = torch.addmm(self._scatter, (delta * local[:, None]).T, delta)
        second = distributed.reduce_on_device(torch.cat([spread, scatter.ravel()]))
        self._counts = torch.round(counts).to(torch.int64)
        self._means, self._spread = means, second[: self.num_groups]
        self._scatter = second[self.num_groups :].reshape(self.dim, self.dim)
        self.rows = int(self._counts.sum())
        self.version += 1
        if self._pending is not None:
            seen = self._counts > 0
            self._pending.ref[seen] = self._means[seen].to(self._pending.dtype)
            self._pending.has_ref |= seen

    # ------------------------------------------------------------------ the state part
    ROLES = ("counts", "means", "spread", "scatter", "exponent")

    def field_specs(self) -> dict[str, dict[str, Any]]:
        G, d = self.num_groups, self.dim
        return {"counts": {"shape": (G,), "integer": True, "nonnegative": True},
                "means": {"shape": (G, d)},
                "spread": {"shape": (G,), "nonnegative": True},
                "scatter": {"shape": (d, d), "scatter": True},
                "exponent": {"shape": (), "integer": True, "bound": MAX_STATE_EXPONENT}}

    def read(self) -> dict[str, torch.Tensor]:
        counts, means, spread, scatter = self.moments()
        return {"counts": counts, "means": means, "spread": spread, "scatter": scatter,
                "exponent": torch.tensor(self.exponent)}

    def check(self, values: Mapping[str, torch.Tensor], keys: Mapping[str, str]) -> None:
        """Counts sum to fewer than 2**53; a group without samples has zero sums."""
        total = check_total(values["counts"], keys["counts"])
        empty = values["counts"] == 0
        for role in ("means", "spread"):
            rows = values[role][empty]
            if bool((rows != 0).any()):
                groups = empty.nonzero().squeeze(1)[(rows != 0).reshape(len(rows), -1).any(1)]
                raise NCInputError(
                    f"state entry '{keys[role]}' is nonzero for group(s) "
                    f"{groups.tolist()[:5]} whose count is 0"
                )
        if total == 0 and bool((values["scatter"] != 0).any()):
            raise NCInputError(f"state entry '{keys['scatter']}' is nonzero with no samples")

    def load(self, values: Mapping[str, torch.Tensor]) -> None:
        """Replace the state by checked tensors (in units of 2**exponent)."""
        device = self.device
        self._pending = None
        self._clear(device)
        self._counts = values["counts"].to(device=device, dtype=torch.int64).clone()
        self._means = values["means"].to(device=device, dtype=torch.float64).clone()
        self._spread = values["spread"].to(device=device, dtype=torch.float64).clone()
        self._scatter = values["scatter"].to(device=device, dtype=torch.float64).clone()
        self.exponent = int(values["exponent"])
        self.rows = int(self._counts.sum())
        self._signal = bool((self._means != 0).any() or (self._spread != 0).any())
        self.version += 1
