"""Small-cell suppression of the report: primary and secondary, known answers."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.privacy import (
    SECONDARY_MARK,
    is_small,
    secondary_suppression,
    suppress_counts,
    suppress_flow,
)


def test_is_small_masks_1_to_threshold_minus_1_only():
    assert [is_small(v, 10) for v in (0, 1, 9, 10, 11)] == [False, True, True, False, False]
    assert is_small(0, 10, mask_zeros=True)
    assert not is_small(None, 10) and not is_small(float("nan"), 10)


def test_primary_only_without_totals():
    t = pd.DataFrame({"a": [5, 40], "b": [30, 12]})
    sup = suppress_counts(t, ["a", "b"], 10)
    assert sup.mask.to_numpy().tolist() == [[True, False], [False, False]]
    assert sup.display().to_numpy().tolist() == [["< 10", 30], [40, 12]]


def test_secondary_row_total_masks_next_smallest_in_the_row():
    # Row 0: 4 is small; with the row total shown it equals 54 − 20 − 30, so the next smallest
    # cell of the row (20) must be masked too. Row 1 is safe.
    t = pd.DataFrame({"a": [4, 15], "b": [20, 25], "c": [30, 60], "total": [54, 100]})
    sup = suppress_counts(t, ["a", "b", "c", "total"], 10, row_total="total")
    assert sup.mask.to_numpy().tolist() == [[True, True, False, False], [False, False, False, False]]
    shown = sup.display()
    assert shown.at[0, "a"] == "< 10" and shown.at[0, "b"] == SECONDARY_MARK
    assert sup.is_primary(0, "a") and not sup.is_primary(0, "b")


def test_secondary_recompute_from_column_total_and_cascade():
    # Both margins shown. Cell (x, a)=3 is small. Row x would give it back as 53 − 50: the next
    # smallest of row x (b=50) is masked. Column a would give it back as 55 − 12 − 40: its next
    # smallest (y: 12) is masked. Column b now has one masked cell (x): its next smallest (y: 14) is
    # masked, which also leaves row y with two masked cells: stable.
    t = pd.DataFrame(
        {"a": [3, 12, 40, 55], "b": [50, 14, 70, 134], "total": [53, 26, 110, 189]},
        index=["x", "y", "z", "total"],
    )
    sup = suppress_counts(t, ["a", "b", "total"], 10, row_total="total", total_row="total")
    masked = {(r, c) for r in t.index for c in t.columns if sup.mask.at[r, c]}
    assert masked == {("x", "a"), ("y", "a"), ("x", "b"), ("y", "b")}
    # No margin (row or column) is left with exactly one masked cell: nothing can be recomputed.
    for r in t.index:
        assert sum(sup.mask.loc[r, ["a", "b", "total"]]) != 1
    for c in t.columns:
        assert sum(sup.mask[c]) != 1


def test_secondary_prefers_non_zero_cells():
    values = {"t": 25, "a": 5, "b": 0, "c": 20}
    masked = secondary_suppression(values, {"a"}, [["t", "a", "b", "c"]])
    assert masked == {"a", "c"}


def test_derived_columns_are_masked_with_their_count():
    t = pd.DataFrame({"n_unmatched": [4, 40], "n_treated": [30, 300], "share": [4 / 30, 40 / 300]})
    sup = suppress_counts(t, ["n_unmatched", "n_treated"], 10, derived={"share": "n_unmatched"})
    assert sup.mask.at[0, "share"] and not sup.mask.at[1, "share"]


def test_flow_chain_masks_recomputable_cells():
    # 7 persons dropped at "cleaned": visible as 5200 − 5193 unless rows_out is hidden too, and the
    # same 5193 is the next row's rows_in, which must then be hidden; the next row then has one
    # masked cell in rows_in = dropped + out, so its dropped count is hidden as well.
    flow = pd.DataFrame({
        "rule": ["extract", "cleaned", "eligible"],
        "rows_in": [5200, 5200, 5193], "rows_dropped": [0, 7, 1093], "rows_out": [5200, 5193, 4100],
    })
    sup = suppress_flow(flow, 10)
    m = sup.mask
    assert m.at[1, "rows_dropped"] and sup.is_primary(1, "rows_dropped")
    assert m.at[1, "rows_out"] and m.at[2, "rows_in"] and m.at[2, "rows_dropped"]
    assert not m.at[2, "rows_out"] and not m.at[0, "rows_out"] and not m.at[1, "rows_in"]
    for i in flow.index:
        assert sum(m.loc[i, ["rows_in", "rows_dropped", "rows_out"]]) != 1


def test_flow_rows_that_are_not_people_are_not_masked():
    flow = pd.DataFrame({"rows_in": [100, 96], "rows_dropped": [4, 0], "rows_out": [96, 96]})
    sup = suppress_flow(flow, 10, person_rows=[False, True])
    assert not sup.mask.to_numpy().any()


def test_bad_arguments_are_clear_errors():
    t = pd.DataFrame({"a": [1]})
    with pytest.raises(KeyError, match="not in table"):
        suppress_counts(t, ["a", "b"], 10)
    with pytest.raises(ValueError, match="row_total"):
        suppress_counts(t, ["a"], 10, row_total="x")
