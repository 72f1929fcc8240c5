"""Matching algorithms on sorted arrays: no treated × control distance matrix is ever built.

Every algorithm works on the same prepared layout (:func:`search_layout`): the candidate controls
sorted by (stratum, distance value), and for each treated unit five positions in that sorted array:

* ``stratum_lo``/``stratum_hi`` — the slice of controls in its exact stratum;
* ``lo``/``hi`` — the sub-slice whose values lie inside its caliper interval;
* ``pos`` — the first control of its stratum whose value is >= the treated value.

Candidates of a treated unit are then the positions ``lo <= j < hi``; they get farther from the treated
value when moving left from ``pos - 1`` or right from ``pos``. Building this costs two stable sorts of
the pool and binary searches for the treated units (O(m log m + n log m)), whatever the number of strata.

Tie-breaking (deterministic): equal keys keep the input row order (stable sorts); between a left and a
right candidate at the same distance the left one (smaller value) wins; between treated units at the
same distance the earlier treated row wins.

Risk-set constraints (all optional): a *person* may own several control positions (one per period);
its capacity (how many matched sets it may serve) is shared by all of them. A control position may
be valid for some treated units only (``c_until[j] >= t_time[t]``: still at risk on the treated
unit's time zero). Greedy matching skips invalid candidates by moving the treated unit's own cursor;
optimal matching only builds valid edges (:func:`nearest_candidates` widens its scan until it has k
valid candidates per side).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import min_weight_full_bipartite_matching


@dataclass(frozen=True)
class SearchLayout:
    """Controls sorted by (stratum, value) and each treated unit's candidate window in that order."""

    values: np.ndarray  # sorted control values (float64)
    order: np.ndarray  # sorted position -> index into the control arrays given to search_layout
    pos: np.ndarray  # per treated: first position of its stratum with value >= treated value
    lo: np.ndarray  # per treated: first position inside the caliper
    hi: np.ndarray  # per treated: one past the last position inside the caliper
    stratum_lo: np.ndarray
    stratum_hi: np.ndarray


def search_layout(
    t_stratum: np.ndarray,
    t_value: np.ndarray,
    t_low: np.ndarray,
    t_high: np.ndarray,
    c_stratum: np.ndarray,
    c_value: np.ndarray,
) -> SearchLayout:
    """Sort controls by (stratum, value) and locate each treated unit's stratum and caliper window.

    ``t_low``/``t_high`` are the inclusive caliper bounds of each treated unit (-inf/+inf for none).
    Two stable sorts (value, then stratum — a linear-time radix sort when the stratum codes fit in 16
    bits) order the pool; each treated unit's stratum slice comes from ``np.searchsorted`` on the sorted
    codes, and its positions inside the slice from a vectorised binary search run on all treated units
    at once (about log2(largest stratum) numpy passes over the treated arrays).
    """
    c_stratum = np.asarray(c_stratum, dtype=np.int64)
    by_value = np.argsort(c_value, kind="stable")
    strata = c_stratum[by_value]
    narrow = strata.astype(np.int16) if len(strata) and 0 <= strata.min() and strata.max() < 2**15 else strata
    order = by_value[np.argsort(narrow, kind="stable")]
    values = np.asarray(c_value, dtype=np.float64)[order]
    sorted_strata = c_stratum[order]
    t_stratum = np.asarray(t_stratum, dtype=np.int64)
    stratum_lo = np.searchsorted(sorted_strata, t_stratum, side="left")
    stratum_hi = np.searchsorted(sorted_strata, t_stratum, side="right")
    pos = segmented_search(values, stratum_lo, stratum_hi, t_value)
    lo = segmented_search(values, stratum_lo, stratum_hi, t_low)
    hi = segmented_search(values, stratum_lo, stratum_hi, t_high, right=True)
    return SearchLayout(
        values=values,
        order=order,
        pos=pos,
        lo=np.minimum(lo, pos),
        hi=np.maximum(hi, pos),
        stratum_lo=stratum_lo,
        stratum_hi=stratum_hi,
    )


def segmented_search(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, target: np.ndarray,
                     right: bool = False) -> np.ndarray:
    """For each i, the first index j in [lo_i, hi_i) with values[j] >= target_i (> when ``right``),
    or hi_i; ``values`` is sorted within every [lo_i, hi_i). Like np.searchsorted per segment."""
    lo = np.asarray(lo, dtype=np.int64).copy()
    hi = np.asarray(hi, dtype=np.int64).copy()
    target = np.asarray(target, dtype=np.float64)
    if len(values) == 0:
        return lo
    active = np.flatnonzero(lo < hi)
    while len(active):
        a_lo, a_hi = lo[active], hi[active]
        mid = (a_lo + a_hi) // 2
        v = values[mid]
        go_right = v <= target[active] if right else v < target[active]
        lo[active] = np.where(go_right, mid + 1, a_lo)
        hi[active] = np.where(go_right, a_hi, mid)
        active = active[lo[active] < hi[active]]
    return lo


@dataclass
class Assignment:
    """Matched edges: treated index (into the treated arrays), sorted control position, distance."""

    treated: np.ndarray
    position: np.ndarray
    distance: np.ndarray


def concat_assignments(parts: list[Assignment]) -> Assignment:
    """The edges of several assignments, one after the other (an empty assignment for none)."""
    if not parts:
        return Assignment(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    return Assignment(*(np.concatenate([getattr(a, f) for a in parts]) for f in ("treated", "position", "distance")))


class _Availability:
    """Which sorted control positions are still available: two path-compressed 'next available' maps.

    Only removed positions are stored (dicts), so memory is O(removed), not O(pool size).
    """

    def __init__(self) -> None:
        self.right: dict[int, int] = {}
        self.left: dict[int, int] = {}

    def remove(self, j: int) -> None:
        self.right[j] = j + 1
        self.left[j] = j - 1

    def removed(self, j: int) -> bool:
        return j in self.right

    @staticmethod
    def _find(links: dict[int, int], i: int) -> int:
        path = []
        while i in links:
            path.append(i)
            i = links[i]
        for q in path:
            links[q] = i
        return i

    def next_right(self, i: int) -> int:
        return self._find(self.right, i)

    def next_left(self, i: int) -> int:
        return self._find(self.left, i)


def greedy_match(
    layout: SearchLayout,
    t_value: np.ndarray,
    ratio: int,
    capacity: int,
    sequence: np.ndarray | None,
    *,
    blocks: Sequence[np.ndarray] | None = None,
    person: np.ndarray | None = None,
    c_until: np.ndarray | None = None,
    t_time: np.ndarray | None = None,
    distinct_persons: bool = False,
) -> Assignment:
    """Greedy nearest-neighbour matching, exact, in ``ratio`` rounds.

    Round r gives an r-th control to every treated unit that received r - 1 so far: no unit gets a
    second control before every unit had its chance at a first one.

    * ``sequence is None`` — 'closest' order: within a round, the globally closest available
      (treated, control) pair is matched first. A heap holds, for each treated unit waiting, the
      distance to its nearest available candidate; when the popped candidate has been taken meanwhile,
      the unit's next candidate is looked up and pushed back (a stale key is a lower bound, so the first
      valid pop is the global minimum). Same result as sorting every within-caliper edge, without
      materialising them.
    * otherwise treated units are served in ``sequence`` order, each taking its nearest available.

    ``capacity`` = how many treated units one control *person* may serve (1 without replacement, 0
    unlimited). ``person`` gives the person code of each sorted position (None: every position is its
    own person); when a person reaches its capacity all of its positions become unavailable — lazily:
    a position of an exhausted person is removed the first time a cursor or a heap pop meets it.

    ``blocks`` = lists of treated indices matched one after the other (risk-set matching period by
    period); the availability of persons carries over from one block to the next. None = one block.

    Per-pair restrictions (``c_until``/``t_time``: position j is a candidate of treated t only if
    ``c_until[j] >= t_time[t]``; ``distinct_persons``: a treated unit never takes two positions of one
    person) never change over time for a given pair, so a treated unit simply moves its own cursor past
    a candidate that is not valid for it.

    Each treated unit keeps two cursors moving outward from its position, so it never takes the same
    control twice even when controls are reused.
    """
    n = len(t_value)
    values = layout.values
    lo = layout.lo.tolist()
    hi = layout.hi.tolist()
    left = (layout.pos - 1).tolist()
    right = layout.pos.tolist()
    tv = np.asarray(t_value, dtype=np.float64).tolist()
    avail = _Availability()
    uses: dict[int, int] = {}
    exhausted: set[int] = set()
    count = [0] * n
    out_t: list[int] = []
    out_c: list[int] = []
    out_d: list[float] = []
    by_person = person is not None and capacity != 0
    until = None if c_until is None else np.asarray(c_until, dtype=np.int64)
    tt = None if t_time is None else np.asarray(t_time, dtype=np.int64).tolist()
    taken: dict[int, set[int]] | None = {} if (distinct_persons and person is not None) else None
    checked = by_person or until is not None or taken is not None

    def valid(t: int, j: int) -> bool:
        if by_person and int(person[j]) in exhausted:
            avail.remove(j)  # lazily: the person's capacity was reached through another position
            return False
        if until is not None and until[j] < tt[t]:
            return False
        return taken is None or int(person[j]) not in taken.get(t, ())

    def nearest(t: int) -> tuple[float, int]:
        best_d, best_j = np.inf, -1
        j = avail.next_left(left[t])
        if checked:
            while j >= lo[t] and not valid(t, j):
                left[t] = j - 1  # never valid for t again: move its own cursor past it
                j = avail.next_left(j - 1)
        if j >= lo[t]:
            best_d, best_j = tv[t] - float(values[j]), j
        j = avail.next_right(right[t])
        if checked:
            while j < hi[t] and not valid(t, j):
                right[t] = j + 1
                j = avail.next_right(j + 1)
        if j < hi[t]:
            d = float(values[j]) - tv[t]
            if d < best_d:
                best_d, best_j = d, j
        return best_d, best_j

    def gone(j: int) -> bool:
        return avail.removed(j) or (by_person and int(person[j]) in exhausted)

    def assign(t: int, j: int, d: float) -> None:
        out_t.append(t)
        out_c.append(j)
        out_d.append(d)
        count[t] += 1
        if j >= right[t]:
            right[t] = j + 1
        else:
            left[t] = j - 1
        p = j if person is None else int(person[j])
        if taken is not None:
            taken.setdefault(t, set()).add(p)
        if capacity:
            u = uses.get(p, 0) + 1
            uses[p] = u
            if u >= capacity:
                exhausted.add(p)
                avail.remove(j)

    group = None
    if capacity == 1 and sequence is None and n:
        keys = [layout.lo, layout.hi, layout.pos, np.asarray(t_value, dtype=np.float64)]
        if t_time is not None:  # same window, value and time zero: same valid candidates
            keys.append(np.asarray(t_time))
        keys = np.column_stack([np.asarray(k, dtype=np.float64) for k in keys])
        group = np.unique(keys, axis=0, return_inverse=True)[1].ravel().tolist()
    rank = None
    if sequence is not None:
        rank = np.empty(n, dtype=np.int64)
        rank[np.asarray(sequence, dtype=np.int64)] = np.arange(n)
    for block in ([np.arange(n)] if blocks is None else blocks):
        block = np.asarray(block, dtype=np.int64)
        if rank is not None:
            block = block[np.argsort(rank[block], kind="stable")]
        members = [t for t in block.tolist() if hi[t] > lo[t]]
        for rnd in range(ratio):
            if rank is not None:
                for t in members:
                    if count[t] != rnd:
                        continue
                    d, j = nearest(t)
                    if j >= 0:
                        assign(t, j, d)
                continue
            # Treated units with identical windows and values are interchangeable: without reuse they
            # share one frontier, and ties go to the earlier row, so only the earliest waiting member of
            # such a group is kept in the heap (the next one enters when it is served). Without this, k
            # tied units would all chase the same frontier: O(k²) stale pops.
            follower: dict[int, int] = {}
            heads = []
            last: dict[int, int] = {}
            for t in members:
                if count[t] != rnd:
                    continue
                g = group[t] if group is not None else t
                if g in last:
                    follower[last[g]] = t
                else:
                    heads.append(t)
                last[g] = t
            heap = []
            for t in heads:
                d, j = nearest(t)
                if j >= 0:
                    heap.append((d, t, j))
            heapq.heapify(heap)
            while heap:
                d, t, j = heapq.heappop(heap)
                if gone(j):
                    d, j = nearest(t)
                    if j >= 0:
                        heapq.heappush(heap, (d, t, j))
                    continue
                assign(t, j, d)
                nxt = follower.get(t, -1)
                if nxt >= 0:
                    d, j = nearest(nxt)
                    if j >= 0:  # otherwise no later member of the group can find a control either
                        heapq.heappush(heap, (d, nxt, j))
    return Assignment(
        treated=np.asarray(out_t, dtype=np.int64),
        position=np.asarray(out_c, dtype=np.int64),
        distance=np.asarray(out_d, dtype=np.float64),
    )


def window_edges(rows: np.ndarray, start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (row, position) with start[i] <= position < stop[i], for the given rows (vectorised)."""
    size = np.maximum(stop - start, 0)
    offsets = np.cumsum(size) - size
    row = np.repeat(rows, size)
    position = np.arange(int(size.sum()), dtype=np.int64) - np.repeat(offsets - start, size)
    return row, position


def nearest_candidates(
    layout: SearchLayout,
    t_value: np.ndarray,
    n_nearest: np.ndarray,
    *,
    treated: np.ndarray | None = None,
    person: np.ndarray | None = None,
    uses: np.ndarray | None = None,
    capacity: int = 0,
    c_until: np.ndarray | None = None,
    t_time: np.ndarray | None = None,
) -> Assignment:
    """For each treated unit its ``n_nearest[t]`` nearest *valid* controls inside the caliper (vectorised).

    Valid: the person of the position has capacity left (``uses[person[j]] < capacity`` when ``uses``
    is given) and the control is at risk on the treated unit's time zero (``c_until[j] >= t_time[t]``).
    On each side of ``pos`` the k nearest valid candidates are the first k valid ones met moving
    outward, so a window of k positions on either side of ``pos`` is scanned first and, for units that
    found fewer than k valid candidates on a side that the caliper window does not end, widened
    (doubled) until they do: the scan costs at most about twice the positions needed. The valid edges
    found are then ranked per treated unit by (distance, position) and the first k kept.
    ``treated`` restricts the search to those treated indices (default: all).
    """
    idx = np.arange(len(layout.lo), dtype=np.int64) if treated is None else np.asarray(treated, dtype=np.int64)
    k = np.asarray(n_nearest, dtype=np.int64)[idx]
    lo, hi, pos = layout.lo[idx], layout.hi[idx], layout.pos[idx]
    tv = np.asarray(t_value, dtype=np.float64)
    constrained = uses is not None or c_until is not None

    def valid(local: np.ndarray, position: np.ndarray) -> np.ndarray:
        ok = np.ones(len(local), dtype=bool)
        if uses is not None:
            ok &= uses[person[position]] < capacity
        if c_until is not None:
            ok &= c_until[position] >= t_time[idx[local]]
        return ok

    width = k.copy()
    if constrained:
        active = np.flatnonzero((k > 0) & (hi > lo))
        while len(active):
            start = np.maximum(lo[active], pos[active] - width[active])
            stop = np.minimum(hi[active], pos[active] + width[active])
            local, position = window_edges(active, start, stop)
            ok = valid(local, position)
            on_left = position < pos[local]
            n_left = np.bincount(local[ok & on_left], minlength=len(idx))[active]
            n_right = np.bincount(local[ok & ~on_left], minlength=len(idx))[active]
            kk = k[active]
            more = ((n_left < kk) & (start > lo[active])) | ((n_right < kk) & (stop < hi[active]))
            active = active[more]
            width[active] *= 2
    start = np.maximum(lo, pos - width)
    stop = np.minimum(hi, pos + width)
    local, position = window_edges(np.arange(len(idx), dtype=np.int64), start, stop)
    if constrained:
        ok = valid(local, position)
        local, position = local[ok], position[ok]
    distance = np.abs(layout.values[position] - tv[idx[local]])
    # rank within treated by (distance, position): lexsort keys are given last-primary
    order = np.lexsort((position, distance, local))
    local, position, distance = local[order], position[order], distance[order]
    first = np.flatnonzero(np.r_[True, local[1:] != local[:-1]]) if len(local) else np.zeros(0, np.int64)
    rank = np.arange(len(local)) - np.repeat(first, np.diff(np.r_[first, len(local)]))
    keep = rank < k[local]
    return Assignment(idx[local[keep]], position[keep], distance[keep])


#: Largest number of rows (treated units × ratio) of one stratum in an optimal problem: with R rows the
#: dummy penalties reach about 2R², the solver's sums about 4R³, and float64 must resolve the gap of 1
#: between the lexicographic levels (4R³ · 2⁻⁵³ ≤ 2⁻⁸ for R ≤ 20 000).
OPTIMAL_MAX_ROWS_PER_STRATUM = 20_000


def optimal_match(
    layout: SearchLayout,
    t_value: np.ndarray,
    t_stratum: np.ndarray,
    ratio: int,
    capacity: int,
    *,
    treated: np.ndarray | None = None,
    person: np.ndarray | None = None,
    uses: np.ndarray | None = None,
    c_until: np.ndarray | None = None,
    t_time: np.ndarray | None = None,
    max_edges: int = 50_000_000,
) -> Assignment:
    """Optimal matching within each stratum, lexicographically: (1) the most treated units matched,
    (2) then the most controls, (3) then the least total distance.

    One sparse minimum-weight full bipartite matching (scipy's LAPJVsp) is solved on the block-diagonal
    graph of all strata at once:

    * rows = treated units replicated ``ratio`` times (replica j stands for the j-th control);
    * columns = candidate controls (replicated by their remaining capacity when reuse is capped) plus
      one private dummy column per row, so a full matching always exists (a treated unit may stay
      unmatched);
    * edges = only *valid* within-caliper controls (person with capacity left, at risk on the treated
      unit's time zero) among the R nearest valid ones of each treated unit, R = ``ratio × m_s`` rows of
      its stratum. This restriction is exact: a row matched to a control outside its R nearest could be
      moved to one of those R left free by the R - 1 other rows, keeping (1) and (2) and lowering (3);
    * weights: real edge = d / d_max + 1 ∈ [1, 2] (scipy needs non-zero weights; scaling the distances
      does not change the optimum). Dummy of a non-first replica: P2 = 2R + 1 > (any total of real
      weights of the stratum), so one more control always pays. Dummy of the first replica:
      P1 = (R + 1)·P2 + 2R + 1, so one more treated unit matched always pays, even at the cost of every
      other replica (P1 > R·P2 + 2R). Since P1 > P2 the first replica is the one used when a treated unit
      gets a single control. In a stratum of R rows costs stay below about 2R² and the solver's sums
      below about 4R³, so float64 resolves the level gaps (≥ 1) exactly for R ≤
      ``OPTIMAL_MAX_ROWS_PER_STRATUM`` (checked) and the distances to about 4R³·2⁻⁵³ of d_max.

    ``treated`` restricts the problem to those treated indices; ``uses``/``person``/``capacity`` give the
    capacity already consumed by each person (risk-set matching, period by period).
    """
    n = len(t_value)
    idx = np.arange(n, dtype=np.int64) if treated is None else np.asarray(treated, dtype=np.int64)
    has_candidates = idx[layout.hi[idx] > layout.lo[idx]]
    _, inv, per_stratum = np.unique(t_stratum[has_candidates], return_inverse=True, return_counts=True)
    rows_per_stratum = np.zeros(n, dtype=np.int64)
    rows_per_stratum[has_candidates] = per_stratum[inv.ravel()] * ratio
    max_rows = int(rows_per_stratum.max(initial=0))
    if max_rows > OPTIMAL_MAX_ROWS_PER_STRATUM:
        raise ValueError(
            f"optimal matching: one stratum has {max_rows:,} rows (treated × ratio), more than "
            f"{OPTIMAL_MAX_ROWS_PER_STRATUM:,} for which the lexicographic objective is exact in float64: "
            "use finer exact strata or method='nearest'"
        )
    edges = nearest_candidates(layout, t_value, rows_per_stratum, treated=has_candidates, person=person,
                               uses=uses, capacity=capacity, c_until=c_until, t_time=t_time)
    if len(edges.treated) == 0:
        return Assignment(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    col_pos, col_of_edge = np.unique(edges.position, return_inverse=True)
    col_of_edge = col_of_edge.ravel()
    if uses is not None:
        copies = (capacity - uses[person[col_pos]]).astype(np.int64)
    else:
        copies = np.full(len(col_pos), max(capacity, 1), dtype=np.int64)
    per_edge = copies[col_of_edge] * ratio
    n_edges = int(per_edge.sum())
    if n_edges > max_edges:
        raise MemoryError(
            f"optimal matching would need {n_edges:,} candidate edges (more than {max_edges:,}): use "
            "finer exact strata, a narrower caliper, or method='nearest'"
        )
    # rows: only treated units with at least one valid edge (the others keep just their dummy)
    t_with, t_local = np.unique(edges.treated, return_inverse=True)
    t_local = t_local.ravel()
    n_rows = len(t_with) * ratio
    col_start = np.cumsum(copies) - copies
    n_real_cols = int(copies.sum())
    # each (treated, control) edge becomes ratio × copies (row, column) entries
    e = np.repeat(np.arange(len(per_edge)), per_edge)
    within = np.arange(n_edges) - np.repeat(np.cumsum(per_edge) - per_edge, per_edge)
    q = copies[col_of_edge][e]
    e_rows = t_local[e] * ratio + within // q
    e_cols = col_start[col_of_edge[e]] + within % q
    d_max = float(edges.distance.max())
    scale = 1.0 / d_max if d_max > 0 else 1.0
    e_w = edges.distance[e] * scale + 1.0
    r = rows_per_stratum[t_with].astype(np.float64)
    p2 = 2.0 * r + 1.0
    p1 = (r + 1.0) * p2 + 2.0 * r + 1.0
    dummy_w = np.where(np.arange(n_rows) % ratio == 0, np.repeat(p1, ratio), np.repeat(p2, ratio))
    rows = np.concatenate([e_rows, np.arange(n_rows)])
    cols = np.concatenate([e_cols, n_real_cols + np.arange(n_rows)])
    weights = np.concatenate([e_w, dummy_w])
    graph = sparse.csr_matrix((weights, (rows, cols)), shape=(n_rows, n_real_cols + n_rows))
    row_ind, col_ind = min_weight_full_bipartite_matching(graph)
    real = col_ind < n_real_cols
    treated_out = t_with[row_ind[real] // ratio]
    column = np.searchsorted(col_start, col_ind[real], side="right") - 1
    position = col_pos[column]
    distance = np.abs(layout.values[position] - np.asarray(t_value, dtype=np.float64)[treated_out])
    idx_sorted = np.lexsort((position, treated_out))
    return Assignment(treated_out[idx_sorted].astype(np.int64), position[idx_sorted].astype(np.int64),
                      distance[idx_sorted])
