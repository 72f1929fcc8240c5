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
"""

from __future__ import annotations

import heapq
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

    ``capacity`` = how many treated units one control may serve (1 without replacement, 0 unlimited).
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
    count = [0] * n
    out_t: list[int] = []
    out_c: list[int] = []
    out_d: list[float] = []

    def nearest(t: int) -> tuple[float, int]:
        best_d, best_j = np.inf, -1
        j = avail.next_left(left[t])
        if j >= lo[t]:
            best_d, best_j = tv[t] - float(values[j]), j
        j = avail.next_right(right[t])
        if j < hi[t]:
            d = float(values[j]) - tv[t]
            if d < best_d:
                best_d, best_j = d, j
        return best_d, best_j

    def assign(t: int, j: int, d: float) -> None:
        out_t.append(t)
        out_c.append(j)
        out_d.append(d)
        count[t] += 1
        if j >= right[t]:
            right[t] = j + 1
        else:
            left[t] = j - 1
        if capacity:
            u = uses.get(j, 0) + 1
            uses[j] = u
            if u >= capacity:
                avail.remove(j)

    candidates = [t for t in range(n) if hi[t] > lo[t]]
    group = None
    if capacity == 1 and sequence is None and n:
        keys = np.column_stack([layout.lo, layout.hi, layout.pos]).astype(np.float64)
        keys = np.column_stack([keys, np.asarray(t_value, dtype=np.float64)])
        group = np.unique(keys, axis=0, return_inverse=True)[1].ravel().tolist()
    seq = None if sequence is None else [t for t in np.asarray(sequence).tolist() if hi[t] > lo[t]]
    for rnd in range(ratio):
        if seq is not None:
            for t in seq:
                if count[t] != rnd:
                    continue
                d, j = nearest(t)
                if j >= 0:
                    assign(t, j, d)
            continue
        # Treated units with identical windows and values are interchangeable: without reuse they share
        # one frontier, and ties go to the earlier row, so only the earliest waiting member of such a
        # group is kept in the heap (the next one enters when it is served). Without this, k tied units
        # would all chase the same frontier: O(k²) stale pops.
        follower = [-1] * n
        heads = []
        last: dict[int, int] = {}
        for t in candidates:
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
            if avail.removed(j):
                d, j = nearest(t)
                if j >= 0:
                    heapq.heappush(heap, (d, t, j))
                continue
            assign(t, j, d)
            nxt = follower[t]
            if nxt >= 0:
                d, j = nearest(nxt)
                if j >= 0:  # otherwise no later member of the group can find a control either
                    heapq.heappush(heap, (d, nxt, j))
    return Assignment(
        treated=np.asarray(out_t, dtype=np.int64),
        position=np.asarray(out_c, dtype=np.int64),
        distance=np.asarray(out_d, dtype=np.float64),
    )


def nearest_candidates(layout: SearchLayout, t_value: np.ndarray, n_nearest: np.ndarray) -> Assignment:
    """For each treated unit its ``n_nearest[t]`` nearest controls inside the caliper (vectorised).

    The k nearest of a sorted window lie within k positions on either side of ``pos``, so only the
    window ``[max(lo, pos - k), min(hi, pos + k))`` is scanned; edges are then ranked per treated unit.
    """
    k = np.asarray(n_nearest, dtype=np.int64)
    start = np.maximum(layout.lo, layout.pos - k)
    stop = np.minimum(layout.hi, layout.pos + k)
    size = np.maximum(stop - start, 0)
    total = int(size.sum())
    treated = np.repeat(np.arange(len(size), dtype=np.int64), size)
    offsets = np.cumsum(size) - size
    position = np.arange(total, dtype=np.int64) - np.repeat(offsets - start, size)
    distance = np.abs(layout.values[position] - np.asarray(t_value, dtype=np.float64)[treated])
    # rank within treated by (distance, position): lexsort keys are given last-primary
    idx = np.lexsort((position, distance, treated))
    treated, position, distance = treated[idx], position[idx], distance[idx]
    first = np.repeat(offsets, size)
    keep = (np.arange(total) - first) < np.repeat(k, size)
    return Assignment(treated[keep], position[keep], distance[keep])


def optimal_match(
    layout: SearchLayout,
    t_value: np.ndarray,
    t_stratum: np.ndarray,
    ratio: int,
    capacity: int,
    max_edges: int = 50_000_000,
) -> Assignment:
    """Optimal matching: maximum number of pairs, then minimum total distance, within each stratum.

    One sparse minimum-weight full bipartite matching (scipy's LAPJVsp) is solved on the block-diagonal
    graph of all strata at once:

    * rows = treated units replicated ``ratio`` times (replica j stands for the j-th control);
    * columns = candidate controls (replicated ``capacity`` times when reuse is capped) plus one private
      dummy column per row, so a full matching always exists (a treated unit may stay unmatched);
    * edges = only within-caliper controls among the ``ratio × m_s`` nearest of each treated unit, where
      m_s is the number of treated units of its stratum. This restriction is exact: a row matched to a
      control outside its R nearest (R = number of rows of its stratum) could be moved to one of those R
      nearest left free by the R - 1 other rows, which lowers the cost;
    * weights = distance + 1 for real edges (scipy needs non-zero weights; a constant per real edge does
      not change the optimum once the number of pairs is fixed) and a penalty P > (max weight) × (rows of
      the largest stratum) for dummies, so any matching with more real pairs is cheaper: the number of
      pairs is maximised first, then the total distance is minimised.
    """
    n = len(t_value)
    has_candidates = layout.hi > layout.lo
    _, inv, per_stratum = np.unique(t_stratum[has_candidates], return_inverse=True, return_counts=True)
    rows_per_stratum = np.zeros(n, dtype=np.int64)
    rows_per_stratum[has_candidates] = per_stratum[inv] * ratio
    edges = nearest_candidates(layout, t_value, rows_per_stratum)
    n_edges = len(edges.treated) * ratio * max(capacity, 1)
    if n_edges > max_edges:
        raise MemoryError(
            f"optimal matching would need {n_edges:,} candidate edges (more than {max_edges:,}): use "
            "finer exact strata, a narrower caliper, or method='nearest'"
        )
    if len(edges.treated) == 0:
        return Assignment(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    copies = max(capacity, 1)
    col_pos, col_of_edge = np.unique(edges.position, return_inverse=True)
    n_real_cols = len(col_pos) * copies
    n_rows = n * ratio
    # real edges: each (treated, control) edge becomes ratio × copies (row, column) entries
    rep = np.arange(ratio)
    cpy = np.arange(copies)
    e_rows = (edges.treated[:, None, None] * ratio + rep[None, :, None]).repeat(copies, axis=2)
    e_cols = (col_of_edge[:, None, None] * copies + cpy[None, None, :]).repeat(ratio, axis=1)
    e_w = np.broadcast_to(edges.distance[:, None, None] + 1.0, e_rows.shape)
    max_rows = int(rows_per_stratum.max()) if n else 1
    penalty = (float(edges.distance.max()) + 1.0) * (max_rows + 1) + 1.0
    rows = np.concatenate([e_rows.ravel(), np.arange(n_rows)])
    cols = np.concatenate([e_cols.ravel(), n_real_cols + np.arange(n_rows)])
    weights = np.concatenate([e_w.ravel(), np.full(n_rows, penalty)])
    graph = sparse.csr_matrix((weights, (rows, cols)), shape=(n_rows, n_real_cols + n_rows))
    row_ind, col_ind = min_weight_full_bipartite_matching(graph)
    real = col_ind < n_real_cols
    treated = row_ind[real] // ratio
    position = col_pos[col_ind[real] // copies]
    distance = np.abs(layout.values[position] - np.asarray(t_value, dtype=np.float64)[treated])
    idx = np.lexsort((position, treated))
    return Assignment(treated[idx].astype(np.int64), position[idx].astype(np.int64), distance[idx])
