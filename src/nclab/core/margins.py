"""One-vs-rest distances of unit vectors: the geometry past the simplex (definitions §10).

For unit rows v_1..v_C the one-vs-rest distance of row c is its Euclidean distance to the
convex hull of the other rows (Jiang et al., ICML 2024, "Generalized Neural Collapse for a
Large Number of Classes", Definition 2.1):

    dist_c = min { ||v_c - sum_{j != c} a_j v_j|| : a_j >= 0, sum_j a_j = 1 }

and the margin is min_c dist_c. A configuration maximizing the margin is their *softmax
code* (:mod:`nclab.ufm.softmax_code`); for C <= d + 1 it is the simplex ETF, whose margin
is C / (C - 1).

How each distance is solved exactly (``_solve_rows``): on a candidate set S of rows (the
nearest by cosine), the QP is the non-negative least squares problem

    min_{l >= 0} ||Q^T l||^2 + (1^T l - 1)^2,    Q = rows v_c - v_j, j in S,

whose solution is l* = a* / (1 + dist^2) (for a fixed sum s = 1^T l the first term is
s^2 dist^2; minimizing s^2 m + (s - 1)^2 gives s = 1 / (1 + m)); it is solved by
Lawson and Hanson's active-set method, which is finite. The hull point p = V_S^T a gives
the upper bound ||v_c - p|| and the direction u = v_c - p a dual certificate over ALL
rows: every point x of the hull has <u, x> <= max_j <u, v_j>, so

    dist_c >= (<u, v_c> - max_{j != c} <u, v_j>) / ||u||.

Rows violating it join S and the QP is solved again (column generation), until the two
bounds agree to ``ATOL + RTOL * dist`` (a rounding-level tolerance).

Speed. Lawson-Hanson frees one coordinate per step, so a support of 50 rows costs 50
solves; the rows of a chunk first get a guess of their supports together, from a few
accelerated projected-gradient steps on the same QP over the simplex, vectorized over
the rows (``_guess_supports``), and the exact method starts from it (a wrong guess costs
steps, never exactness). For the margin alone, :func:`screen_bounds` first bounds every
row from cheap hull points improved together, one C x C x d product a round; only the
rows whose lower bound falls below the smallest upper bound are then solved exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.validation import to_numpy64

__all__ = [
    "MarginBracket",
    "margin_metrics",
    "nearest_cosines",
    "ovr_distances",
    "ovr_margin",
    "ovr_margin_bracket",
    "packing_chord_bound",
    "screen_bounds",
    "softmax_code_bounds",
    "unit_rows",
]

#: A distance is certified when its upper and lower bounds differ by at most this...
ATOL = 1e-12
#: ... plus this times the distance.
RTOL = 1e-10
#: Tile sides of the pass over pairs: for d below ``WIDE_DIM`` the two reductions that
#: follow a tile's product dominate, and a 256 x 256 float64 tile stays in cache for
#: them; from ``WIDE_DIM`` on the product dominates, and BLAS runs faster on 1,024.
PASS_BLOCK, WIDE_PASS_BLOCK, WIDE_DIM = 256, 1024, 256
#: Rows whose QPs are solved together (one C x R product per round of certificates).
CHUNK = 256
#: Candidates a row's QP starts from (its nearest rows by cosine), and rows added per
#: round for each row whose certificate fails.
START_CANDIDATES, ADDED_PER_ROUND = 48, 24
#: Entries of each row a screening round keeps (:func:`screen_bounds`), and the rounds
#: the exact margin screens with.
SCREEN_WIDTH, SCREEN_ROUNDS = 64, 3
#: Accelerated projected-gradient steps that guess each support before the exact solve,
#: and the tries at repairing a guess (see ``_nnls_gram``).
GUESS_STEPS, START_TRIES = 20, 4
#: Rows whose candidate Grams are formed in one batched product (memory rows x k x d).
GRAM_BATCH = 32


def unit_rows(vectors: Any, name: str = "vectors") -> np.ndarray:
    """The rows of a (C, d) array scaled to unit norm, in float64.

    Raises NCInputError (one line) for fewer than 2 rows, a non-2-D or non-finite array,
    or a zero row (it has no direction).
    """
    array = to_numpy64(vectors, name)
    if array.ndim != 2 or array.shape[0] < 2 or array.shape[1] < 1:
        raise NCInputError(f"{name} must be a (C, d) array with C >= 2 rows and d >= 1; "
                           f"got shape {array.shape}")
    if not np.isfinite(array).all():
        raise NCInputError(f"{name} contains NaN or inf")
    peak = np.abs(array).max(axis=1)
    zero = np.flatnonzero(peak == 0)
    if zero.size:
        raise NCInputError(f"{name} has a zero row ({int(zero[0])}): it has no direction")
    # each row times its own power of two (exact), so that its norm neither over- nor
    # underflows whatever the scales of the other rows
    array = np.ldexp(array, -np.frexp(peak)[1][:, None])
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def nearest_cosines(unit: np.ndarray, block: int | None = None) -> np.ndarray:
    """max_{j != c} cos(v_c, v_j) of every unit row, (C,), in one pass over the pairs.

    Square tiles of the upper triangle of V V^T (C^2 d / 2 multiply-adds, O(block^2)
    extra memory); each tile gives the maxima of its rows and of its columns. ``block``
    None: ``PASS_BLOCK`` for d < ``WIDE_DIM``, else ``WIDE_PASS_BLOCK``.
    """
    count = unit.shape[0]
    if block is None:
        block = PASS_BLOCK if unit.shape[1] < WIDE_DIM else WIDE_PASS_BLOCK
    best = np.full(count, -np.inf)
    for i0 in range(0, count, block):
        rows = slice(i0, min(i0 + block, count))
        for j0 in range(i0, count, block):
            cols = slice(j0, min(j0 + block, count))
            tile = unit[rows] @ unit[cols].T
            if i0 == j0:
                np.fill_diagonal(tile, -np.inf)
            np.maximum(best[rows], tile.max(axis=1), out=best[rows])
            np.maximum(best[cols], tile.max(axis=0), out=best[cols])
    return np.minimum(best, 1.0)


def _nnls_gram(gram: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """argmin_{l >= 0} l^T M l - 2 1^T l for a PSD M (k, k): Lawson-Hanson, Gram form.

    Each outer step frees the coordinate of largest positive w = 1 - M l and solves the
    free block; a negative entry moves back to the boundary (the inner loop), so every
    iterate stays feasible and the method ends after finitely many steps (4k + 20 bound
    them against rounding cycles). ``start``, a boolean mask (k,), is a free set to begin
    from (a guessed support): the entries its solution makes non-positive are dropped, up
    to ``START_TRIES`` times, and the method goes on from the first positive solution (any
    feasible start ends at the same optimum).
    """
    size = gram.shape[0]
    values, free = np.zeros(size), np.zeros(size, dtype=bool)
    index = np.flatnonzero(start) if start is not None else np.zeros(0, dtype=int)
    for _ in range(START_TRIES):  # a guessed support: drop its non-positive entries
        if index.size == 0:
            break
        trial = _free_solution(gram, index)
        if (trial > 0).all():
            free[index], values[index] = True, trial
            break
        index = index[trial > 0]
    tolerance = 1e-13 * max(1.0, float(np.abs(gram).max()))
    for _ in range(4 * size + 20):
        w = 1.0 - gram @ values
        w[free] = -np.inf
        j = int(np.argmax(w))
        if w[j] <= tolerance:
            break
        free[j] = True
        while free.any():
            index = np.flatnonzero(free)
            trial = _free_solution(gram, index)
            if (trial > 0).all():
                values[:] = 0.0
                values[index] = trial
                break
            old = values[index]
            falling = trial <= 0
            step = np.min(old[falling] / (old[falling] - trial[falling]))
            values[index] = old + step * (trial - old)
            free[index[values[index] <= 0]] = False
            values[~free] = 0.0
    return values


def _free_solution(gram: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Solution of M_FF l_F = 1 on the free set F (least squares if M_FF is singular)."""
    block = gram[index[:, None], index]
    ones = np.ones(index.size)
    try:
        return np.linalg.solve(block, ones)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(block, ones, rcond=None)[0]


def _candidate_grams(unit: np.ndarray, rows: np.ndarray, candidates: list[np.ndarray]
                     ) -> np.ndarray:
    """M = Q Q^T + 1 1^T of each row's NNLS, Q = v_c - v_j for j in its candidates,
    padded to the largest set, (R, k, k): a set of k_r < k is padded by repeating its
    first candidate (a repeated point leaves the hull unchanged), so M[r, :k_r, :k_r] is
    the row's own. Batched products, ``GRAM_BATCH`` rows at a time (memory R k d)."""
    largest = max(indices.size for indices in candidates)
    index = np.stack([np.concatenate([indices, np.full(largest - indices.size, indices[0])])
                      for indices in candidates])
    grams = np.empty((rows.size, largest, largest))
    for start in range(0, rows.size, GRAM_BATCH):
        part = slice(start, start + GRAM_BATCH)
        # Q explicit: no cancellation near v_c
        differences = unit[rows[part], None, :] - unit[index[part]]
        np.matmul(differences, differences.transpose(0, 2, 1), out=grams[part])
    return grams + 1.0


def _hull_point(unit: np.ndarray, candidates: np.ndarray, gram: np.ndarray,
                start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(the nearest point of conv(v_j, j in candidates) to v_c, its weights), from the
    row's ``gram`` (:func:`_candidate_grams`); ``start`` a guessed support (a mask)."""
    weights = _nnls_gram(gram, start)
    total = weights.sum()
    weights = weights / total if total > 0 else np.full(candidates.size, 1.0 / candidates.size)
    return weights @ unit[candidates], weights


def _project_simplex(points: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row of ``points`` (R, k) onto the unit simplex."""
    ordered = -np.sort(-points, axis=1)
    excess = np.cumsum(ordered, axis=1) - 1.0
    count = np.count_nonzero(ordered * np.arange(1, points.shape[1] + 1) > excess, axis=1)
    shift = excess[np.arange(points.shape[0]), count - 1] / count
    return np.maximum(points - shift[:, None], 0.0)


def _guess_supports(grams: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Approximate minimizers over the simplex of a^T H a, H = M - 1 1^T, for a batch of
    rows at once: ``grams`` (R, k, k) the M of :func:`_candidate_grams`, ``start`` (R, k)
    points of the simplex to begin from. Returns (R, k) weights on the simplex.

    Accelerated projected gradient (FISTA), GUESS_STEPS steps of 1 / L, L the largest
    eigenvalue of H on the simplex's tangent space (1^T x = 0; power iteration, times a
    safety factor). Only a guess: the exact solve (``_nnls_gram``) starts from its support
    and corrects it, so its accuracy changes the time, never the result.
    """
    hessian = grams - 1.0
    size = hessian.shape[1]
    probe = np.random.default_rng(0).normal(size=(hessian.shape[0], size))
    for _ in range(10):  # power iteration on P H P, P = I - 1 1^T / k
        probe -= probe.mean(axis=1, keepdims=True)
        probe = (hessian @ probe[:, :, None])[:, :, 0]
        probe -= probe.mean(axis=1, keepdims=True)
        probe /= np.maximum(np.linalg.norm(probe, axis=1, keepdims=True), 1e-300)
    rayleigh = np.einsum("ri,rij,rj->r", probe, hessian, probe)
    step = 1.0 / np.maximum(1.5 * rayleigh, 1e-12)[:, None]
    weights, momentum, t = start, start, 1.0
    for _ in range(GUESS_STEPS):
        gradient = (hessian @ momentum[:, :, None])[:, :, 0]
        new = _project_simplex(momentum - step * gradient)
        t_next = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        momentum = new + ((t - 1.0) / t_next) * (new - weights)
        weights, t = new, t_next
    return weights


@dataclass
class _Row:
    """The state of one row's column generation."""

    candidates: np.ndarray
    upper: float = np.inf
    lower: float = -np.inf
    direction: np.ndarray | None = None
    weights: np.ndarray | None = None
    stalled: bool = False  # the bounds disagree only by the QP's own rounding

    @property
    def done(self) -> bool:
        return self.stalled or bool(self.upper - self.lower <= ATOL + RTOL * self.upper
                                    < np.inf)


def _start_candidates(cosines: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` largest entries of each row of ``cosines`` (R, C), as indices."""
    if count >= cosines.shape[1]:
        return np.tile(np.arange(cosines.shape[1]), (cosines.shape[0], 1))
    return _top_indices(cosines, count)


def _top_indices(scores: np.ndarray, count: int) -> np.ndarray:
    """Indices (R, count) of the ``count`` largest entries of each row of ``scores`` (R, C),
    in no particular order. torch.topk: several times faster than np.argpartition here."""
    return torch.topk(torch.from_numpy(scores), count, dim=1, sorted=False).indices.numpy()


def _solve_rows(unit: np.ndarray, rows: np.ndarray, max_rounds: int = 200
                ) -> tuple[np.ndarray, np.ndarray]:
    """(upper, lower) bounds (R,) on the one-vs-rest distances of ``rows``, certified
    to ATOL + RTOL * dist (see the module's notes)."""
    count = unit.shape[0]
    cosines = unit[rows] @ unit.T
    cosines[np.arange(rows.size), rows] = -np.inf  # a row is not its own candidate
    start = _start_candidates(cosines, min(START_CANDIDATES, count - 1))
    states = [_Row(np.setdiff1d(start[i], [row])) for i, row in enumerate(rows)]
    for _ in range(max_rounds):
        open_rows = [i for i, state in enumerate(states) if not state.done]
        if not open_rows:
            break
        grams = _candidate_grams(unit, rows[open_rows],
                                 [states[i].candidates for i in open_rows])
        sizes = np.array([states[i].candidates.size for i in open_rows])
        guesses = _batched_guesses(grams, sizes, [states[i].weights for i in open_rows])
        directions = []
        for i, gram, guess in zip(open_rows, grams, guesses, strict=True):
            state = states[i]
            size = state.candidates.size
            point, state.weights = _hull_point(unit, state.candidates, gram[:size, :size],
                                               guess[:size] > 0)
            direction = unit[rows[i]] - point
            state.direction = direction
            state.upper = min(state.upper, float(np.linalg.norm(direction)))
            directions.append(direction)
        support = np.stack(directions) @ unit.T  # <u, v_j> for every j: the certificates
        for position, i in enumerate(open_rows):
            _certify(states[i], support[position], unit[rows[i]], int(rows[i]))
    return (np.array([state.upper for state in states]),
            np.array([max(state.lower, 0.0) for state in states]))


def _batched_guesses(grams: np.ndarray, sizes: np.ndarray,
                     previous: list[np.ndarray | None]) -> np.ndarray:
    """:func:`_guess_supports` of padded grams (:func:`_candidate_grams`; row r's own
    candidates are its first ``sizes[r]``), (R, k): each row starts from its previous
    round's weights where there are some (zeros for the candidates added since and for
    the padding), else uniform on its own candidates. The weight a guess gives to the
    padding (copies of the first candidate) is folded back onto that candidate."""
    start = np.zeros(grams.shape[:2])
    for r, (size, weights) in enumerate(zip(sizes, previous, strict=True)):
        if weights is None:
            start[r, :size] = 1.0 / size
        else:
            start[r, :weights.size] = weights
    found = _guess_supports(grams, start)
    padding = np.arange(grams.shape[1])[None, :] >= sizes[:, None]
    found[:, 0] += np.where(padding, found, 0.0).sum(axis=1)
    found[padding] = 0.0
    return found


def _certify(state: _Row, support: np.ndarray, vector: np.ndarray, row: int) -> None:
    """Update the row's lower bound from <u, v_j> (C,) and add the rows violating it."""
    assert state.direction is not None
    length = float(np.linalg.norm(state.direction))
    if length == 0.0:  # v_c lies in the hull of the others
        state.lower = state.upper = 0.0
        return
    support[row] = -np.inf
    own = float(state.direction @ vector)
    state.lower = max(state.lower, (own - float(support.max())) / length)
    if state.done:
        return
    level = own - length * length  # <u, p>: no hull point lies beyond it at the optimum
    violating = np.flatnonzero(support > level)
    violating = np.setdiff1d(violating, state.candidates)
    if violating.size == 0:  # only candidates violate: the QP's rounding, not a row
        state.stalled = True
        return
    worst = violating[np.argsort(-support[violating])[:ADDED_PER_ROUND]]
    state.candidates = np.concatenate([state.candidates, worst])


def screen_bounds(unit: np.ndarray, rounds: int = 3, block: int = CHUNK
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(upper, lower) bounds (C,) on every one-vs-rest distance of unit rows, from cheap
    hull points improved together: no QP per row.

    Each row c starts from the projection onto the simplex of its cosines to the other
    rows (the exact hull point if the rows were orthonormal), restricted to its
    ``SCREEN_WIDTH`` largest. Every round multiplies the directions u_c = v_c - p_c of a
    block of rows by all rows (one block x C x d product): it gives the certificate
    dist_c >= (<u_c, v_c> - max_{j != c} <u_c, v_j>) / ||u_c|| (module notes), the upper
    bound ||u_c||, and the gradient of ||v_c - p||^2 / 2 in the hull weights, -<u_c, v_j>.
    A projected-gradient step (on the ``SCREEN_WIDTH`` largest entries of a + eta <u_c, v>)
    and an exact line search towards it give the next point. Any point of the hull and
    any direction give valid bounds, so the approximations only loosen them. A row stops
    being refined once its lower bound reaches the smallest upper bound found so far:
    it cannot be the smallest distance, which is all the margin needs.

    Cost: rounds + 1 products of C x C x d (in blocks of ``block`` rows) and a few passes
    over the same entries. ``rounds = 0`` gives the bound 1 - max cos of u_c = v_c alone.

    Parameters
    ----------
    unit : ndarray of shape (C, d)
        Rows of unit norm, float64 (:func:`unit_rows`).
    rounds : int
        Certificate rounds after the first pass (0: that pass alone).
    block : int
        Rows per block (memory: a few block x C float64 arrays).

    Returns
    -------
    upper, lower : ndarray of shape (C,)
        lower <= dist_c <= upper for every row (upper is inf when ``rounds`` is 0); the
        bounds of rows ruled out early are not refined further.
    """
    count = unit.shape[0]
    upper, lower = np.empty(count), np.empty(count)
    ceiling = np.inf
    for start in range(0, count, block):
        rows = np.arange(start, min(start + block, count))
        upper[rows], lower[rows] = _screen_block(unit, rows, rounds, ceiling)
        ceiling = min(ceiling, float(upper[rows].min()))
    return upper, lower


def _screen_block(unit: np.ndarray, rows: np.ndarray, rounds: int, ceiling: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`screen_bounds` of one block of rows. A row stops being refined once its
    lower bound reaches ``ceiling`` (the smallest upper bound of the blocks before) or the
    smallest upper bound of its block: no row is needed beyond that to fix the margin."""
    vectors = unit[rows]
    products = vectors @ unit.T  # cosines first, then <u_c, v_j>
    products[np.arange(rows.size), rows] = -np.inf
    lower = 1.0 - np.minimum(products.max(axis=1), 1.0)
    upper = np.full(rows.size, np.inf)
    if rounds <= 0:
        return upper, lower
    active = np.arange(rows.size)  # the rows still refined, as positions in the block
    weights = np.zeros_like(products)  # the hull weights of each row's point, dense
    top, values = _top_simplex(products)
    weights[active[:, None], top] = values
    point = _combine(unit, top, values)
    step = np.ones(rows.size)
    for round_ in range(rounds):
        ordinal, own_column = np.arange(active.size), rows[active]
        direction = vectors - point
        length = np.linalg.norm(direction, axis=1)
        products = direction @ unit.T
        own = products[ordinal, own_column].copy()
        products[ordinal, own_column] = -np.inf
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero direction: dist 0
            certified = np.where(length > 0, (own - products.max(axis=1)) / length, 0.0)
        lower[active] = np.maximum(lower[active], certified)
        upper[active] = np.minimum(upper[active], length)
        ceiling = min(ceiling, float(upper.min()))
        keep = lower[active] < ceiling
        if round_ == rounds - 1 or not keep.any():
            break
        if not keep.all():
            active, products, vectors, point, weights, step, direction = (
                array[keep] for array in (active, products, vectors, point, weights, step,
                                          direction))
            ordinal = np.arange(active.size)
        products *= step[:, None]  # a + eta <u_c, v_j>: a gradient step in the weights
        products += weights
        top, values = _top_simplex(products)
        change = _combine(unit, top, values) - point
        squared = np.einsum("rd,rd->r", change, change)
        with np.errstate(divide="ignore", invalid="ignore"):  # exact line search
            move = np.clip(np.einsum("rd,rd->r", direction, change) / squared, 0.0, 1.0)
        move[~(squared > 0)] = 0.0
        weights *= 1.0 - move[:, None]
        weights[ordinal[:, None], top] += move[:, None] * values
        point += move[:, None] * change
        # a full step asks for a longer one, a short step for a shorter one
        step *= np.where(move > 0.99, 2.0, np.where(move < 0.5, 0.5, 1.0))
    return upper, np.maximum(lower, 0.0)


def _top_simplex(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), each (R, w): each row's w = ``SCREEN_WIDTH`` largest
    ``scores`` (R, C) projected onto the simplex (a row's own column holds -inf)."""
    width = min(SCREEN_WIDTH, scores.shape[1] - 1)
    top = _top_indices(scores, width)
    return top, _project_simplex(np.take_along_axis(scores, top, axis=1))


def _combine(unit: np.ndarray, indices: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_k weights[r, k] unit[indices[r, k]] for every r: (R, d), as a sparse product."""
    from scipy.sparse import csr_matrix  # here: importing nclab stays free of scipy

    count, width = indices.shape
    matrix = csr_matrix((weights.ravel(), indices.ravel(),
                         np.arange(0, count * width + 1, width)),
                        shape=(count, unit.shape[0]))
    return np.asarray(matrix @ unit)


def ovr_distances(vectors: Any) -> np.ndarray:
    """The one-vs-rest distance of every normalized row (definitions §10), (C,).

    Parameters
    ----------
    vectors : array of shape (C, d)
        Rows v_c (normalized here; a zero row is refused).

    Returns
    -------
    ndarray of shape (C,)
        dist_c = distance of v_c / ||v_c|| to the convex hull of the other normalized
        rows: the distance to a point of the hull found by the QP, certified by a dual
        bound to within 1e-12 + 1e-10 dist_c of the exact value.

    Notes
    -----
    Cost: one C x C x d product in tiles of ``CHUNK`` rows for the candidates and one
    more per round of certificates, plus a small QP per row; meant for C up to about
    10,000. For the smallest distance alone :func:`ovr_margin` solves far fewer rows.
    """
    unit = unit_rows(vectors)
    upper = np.empty(unit.shape[0])
    for start in range(0, unit.shape[0], CHUNK):
        rows = np.arange(start, min(start + CHUNK, unit.shape[0]))
        upper[rows], _ = _solve_rows(unit, rows)
    return upper


@dataclass(frozen=True)
class MarginBracket:
    """The one-vs-rest margin min_c dist_c, or certified bounds on it.

    Attributes
    ----------
    lower, upper : float
        lower <= margin <= upper; equal (to 1e-12 + 1e-10 margin) when ``exact``.
    exact : bool
    rows_solved : int
        Rows whose QP was solved exactly (the others were ruled out by their screened
        lower bounds).
    row : int
        A row attaining ``upper``.
    """

    lower: float
    upper: float
    exact: bool
    rows_solved: int
    row: int

    @property
    def value(self) -> float:
        """The margin when exact, else the upper bound (a distance some row attains)."""
        return self.upper


def ovr_margin_bracket(vectors: Any, *, max_rows: int | None = None,
                       block: int | None = None, screen_rounds: int | None = None,
                       nearest: Any = None) -> MarginBracket:
    """Bounds on min_c dist_c: exact unless ``max_rows`` stops the search first.

    Every row first gets a lower bound and (after a screening round) an upper bound from
    :func:`screen_bounds`; with no round it is the bound 1 - max_{j != c} cos(v_c, v_j)
    of one pass over the pairs. Rows are then solved exactly in the order of their lower
    bounds until the next lower bound reaches the smallest distance found, which is then
    the margin. With ``max_rows``, at most that many rows are solved and the result is
    the bracket [min of the lower bounds, min of the upper bounds].

    Parameters
    ----------
    vectors : array of shape (C, d)
    max_rows : int, optional
        Budget of exact row solves (None: as many as needed; the result is exact).
    block : int, optional
        Tile side of the pass over pairs (``screen_rounds = 0``; None: by d, see
        :func:`nearest_cosines`).
    screen_rounds : int, optional
        Rounds of :func:`screen_bounds` (each one more C x C x d product); None:
        ``SCREEN_ROUNDS`` for an exact margin (``max_rows`` None), else 0.
    nearest : array of shape (C,), optional
        max_{j != c} cos(v_c, v_j) of every row, already computed in float64 (the pair
        pass of :func:`nclab.core.geometry.pair_sums` gives them): used instead of
        :func:`nearest_cosines` when no screening round runs, so that no second pass over
        the pairs is made. Cosines rounded differently (a few 1e-16) move the bounds as
        much.

    Returns
    -------
    MarginBracket
    """
    unit = unit_rows(vectors)
    rounds = (SCREEN_ROUNDS if max_rows is None else 0) if screen_rounds is None else max(
        0, int(screen_rounds))
    if rounds:
        upper, lower = screen_bounds(unit, rounds)
    else:
        if nearest is None:
            nearest = nearest_cosines(unit, block)
        upper, lower = np.full(unit.shape[0], np.inf), 1.0 - _nearest_vector(nearest, unit)
    order = np.argsort(lower, kind="stable")
    stop = order.size if max_rows is None else min(order.size, max(1, int(max_rows)))
    solved = 0
    while solved < stop and lower[order[solved]] < upper.min():
        rows = order[solved:min(solved + CHUNK, stop)]
        rows = rows[lower[rows] < upper.min()]  # a prefix: the bounds ascend
        exact_upper, exact_lower = _solve_rows(unit, rows)
        upper[rows] = np.minimum(upper[rows], exact_upper)
        lower[rows] = np.maximum(lower[rows], exact_lower)
        solved += rows.size
    best_row = int(np.argmin(upper)) if np.isfinite(upper).any() else int(order[0])
    best, margin_lower = float(upper[best_row]), max(float(lower.min()), 0.0)
    return MarginBracket(lower=margin_lower, upper=best,
                         exact=best - margin_lower <= ATOL + RTOL * best,
                         rows_solved=solved, row=best_row)


def _nearest_vector(nearest: Any, unit: np.ndarray) -> np.ndarray:
    """``nearest`` as a float64 vector (C,) of cosines, or NCInputError (one line)."""
    array = to_numpy64(nearest, "nearest")
    if array.shape != (unit.shape[0],):
        raise NCInputError(f"nearest must have shape ({unit.shape[0]},), one cosine a row; "
                           f"got {array.shape}")
    if not (np.abs(array) <= 1.0).all():
        raise NCInputError("nearest must hold cosines in [-1, 1], no NaN")
    return array


def ovr_margin(vectors: Any) -> float:
    """min_c dist_c of the normalized rows of ``vectors`` (C, d): exact (see
    :func:`ovr_margin_bracket`). A simplex ETF of C <= d + 1 rows gives C / (C - 1)."""
    return ovr_margin_bracket(vectors).value


#: Exact row solves per margin in :func:`margin_metrics` (see benchmarks/margins_scale.py).
METRIC_ROWS = 8


def margin_metrics(centred_means: Any, weight: Any = None, *,
                   max_rows: int | None = METRIC_ROWS, nearest_means: Any = None,
                   nearest_weights: Any = None) -> dict[str, Any]:
    """``ovr_margin_means`` and ``ovr_margin_weights`` with their lower bounds and the
    best achievable margin of C unit vectors in d dimensions (definitions §10).

    Parameters
    ----------
    centred_means : array of shape (C, d)
        mu_c - mu_G.
    weight : array of shape (C, d), optional
        Classifier rows.
    max_rows : int, optional
        Budget of exact row solves per margin (see :func:`ovr_margin_bracket`); None
        solves as many as exactness needs. The default keeps the cost near one pass over
        the class pairs (docs/geometry_past_simplex.md).
    nearest_means, nearest_weights : array of shape (C,), optional
        Each row's largest cosine to another row, when a float64 pass over the pairs
        already gave them (``AngleSums.nearest`` of :func:`nclab.core.geometry.pair_sums`);
        see :func:`ovr_margin_bracket`.

    Returns
    -------
    dict
        ``ovr_margin_means`` (the margin; the upper end of the bracket when the budget
        stopped the search), ``ovr_margin_means_lower`` (equal when exact), the same two
        for ``weights`` (None without a classifier), and ``softmax_code_lower`` /
        ``softmax_code_upper``: the best achievable margin for this C and d when it is
        known in closed form (both equal), else proven bounds (lower None).
    """
    count, dim = np.shape(centred_means)[:2] if np.ndim(centred_means) == 2 else (0, 0)
    values: dict[str, Any] = {}
    for name, vectors, nearest in (("means", centred_means, nearest_means),
                                   ("weights", weight, nearest_weights)):
        if vectors is None:
            values[f"ovr_margin_{name}"] = values[f"ovr_margin_{name}_lower"] = None
            continue
        found = ovr_margin_bracket(vectors, max_rows=max_rows, nearest=nearest)
        values[f"ovr_margin_{name}"], values[f"ovr_margin_{name}_lower"] = (
            found.upper, found.lower)
    lower, upper = softmax_code_bounds(count, dim)
    values["softmax_code_lower"], values["softmax_code_upper"] = lower, upper
    return values


def softmax_code_bounds(num_classes: int, dim: int) -> tuple[float | None, float]:
    """(lower, upper) bounds on the largest margin of C unit vectors in R^d.

    Exact (lower = upper) where it is known (definitions §10):

    - C <= d + 1: the simplex ETF, C / (C - 1) (the mean of ||v_c - g_c||^2 over c, with
      g_c the centroid of the others, is (C/(C-1))^2 (1 - ||mean||^2): no configuration
      does better in any d);
    - d = 1, C >= 3: 0 (two of the rows coincide);
    - d = 2: the regular C-gon, 2 sin^2(pi / C) = 1 - cos(2 pi / C);
    - d + 2 <= C <= 2d: 1 (Radon's theorem bounds every configuration by 1; orthogonal
      sums of simplices reach it).

    Otherwise lower is None (:func:`nclab.ufm.softmax_code.softmax_code` finds a
    configuration) and upper is min(1, the largest minimum chord of C points on the
    sphere allowed by the cap-packing bound): dist_c <= ||v_c - v_j|| for every j.
    """
    count, dim = int(num_classes), int(dim)
    if count < 2 or dim < 1:
        raise NCInputError(f"need C >= 2 and d >= 1; got C={count}, d={dim}")
    if count <= dim + 1:
        value = count / (count - 1)
    elif dim == 1:
        value = 0.0
    elif dim == 2:
        value = 2.0 * np.sin(np.pi / count) ** 2
    elif count <= 2 * dim:
        value = 1.0
    else:
        return None, min(1.0, packing_chord_bound(count, dim))
    return float(value), float(value)


def packing_chord_bound(num_classes: int, dim: int) -> float:
    """An upper bound on the smallest chord ||v_c - v_j|| of C unit vectors in R^d.

    The caps of angular radius theta / 2 around the points (theta their smallest angle)
    are disjoint, so C times the normalized area of one, I_{sin^2(theta/2)}((d-1)/2,
    1/2) / 2, is at most 1; theta is the largest angle allowed (bisection, 100 halvings).
    Returns 2 sin(theta / 2).
    """
    from scipy.special import betainc

    def area(half_angle: float) -> float:
        return 0.5 * float(betainc((dim - 1) / 2, 0.5, np.sin(half_angle) ** 2))

    low, high = 0.0, np.pi / 2  # caps of half-angle pi/2 are hemispheres: C >= 3 fails
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if num_classes * area(middle) <= 1 else (low, middle)
    return float(2 * np.sin(high))
