"""Figures of the matching step: love plot and specification curve (matplotlib, no pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def love_plot(balance: pd.DataFrame, ax: Axes | None = None, threshold: float = 0.1,
              max_covariates: int = 60) -> Axes:
    """Absolute SMD per covariate before (hollow) and after (filled) matching.

    Covariates are sorted by their SMD before matching; beyond ``max_covariates`` only the most
    imbalanced before matching are shown (the title says how many were left out).
    """
    wide = balance.pivot_table(index="covariate", columns="stage", values="smd", aggfunc="first", dropna=False)
    wide = wide.dropna(how="all")
    wide = wide.abs()
    sort_col = "before" if "before" in wide.columns else wide.columns[0]
    wide = wide.sort_values(sort_col, ascending=True)
    left_out = max(len(wide) - max_covariates, 0)
    if left_out:
        wide = wide.iloc[-max_covariates:]
    if ax is None:
        fig = Figure(figsize=(7, max(3.0, 0.22 * len(wide) + 1.2)), layout="constrained")
        ax = fig.subplots()
    y = np.arange(len(wide))
    if "before" in wide.columns:
        ax.scatter(wide["before"], y, facecolors="none", edgecolors="tab:red", label="before matching")
    if "after" in wide.columns:
        ax.scatter(wide["after"], y, color="tab:blue", label="after matching")
    ax.axvline(threshold, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(y)
    ax.set_yticklabels(wide.index, fontsize=7)
    ax.set_xlabel("|standardised mean difference| (denominator: treated SD before matching)")
    title = "Covariate balance"
    if left_out:
        title += f" ({left_out} least imbalanced covariates not shown)"
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    return ax


def specification_curve(
    specs: pd.DataFrame,
    estimate: str,
    ci_low: str | None,
    ci_high: str | None,
    indicators: Sequence[str],
    label: str,
    reference: float | None = None,
) -> Figure:
    """Top: the estimate of each specification sorted by value, with its CI; bottom: the settings used."""
    data = specs.dropna(subset=[estimate]).sort_values(estimate).reset_index(drop=True)
    levels = [(col, v) for col in indicators for v in sorted(specs[col].dropna().unique(), key=str)]
    fig = Figure(figsize=(max(6.0, 0.18 * len(data) + 3), 3 + 0.25 * len(levels)), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2, max(1, 0.25 * len(levels))])
    x = np.arange(len(data))
    if ci_low and ci_high and ci_low in data and ci_high in data:
        lo = data[estimate] - data[ci_low]
        hi = data[ci_high] - data[estimate]
        top.errorbar(x, data[estimate], yerr=[lo.fillna(0), hi.fillna(0)], fmt="o", ms=3,
                     color="tab:blue", ecolor="lightsteelblue")
    else:
        top.plot(x, data[estimate], "o", ms=3, color="tab:blue")
    if reference is not None:
        top.axhline(reference, color="grey", linestyle="--", linewidth=1, label="published")
        top.legend(fontsize=8)
    top.set_ylabel(label)
    top.set_title(f"Specification curve: {label} over {len(data)} matching specifications", fontsize=9)
    for i, (col, v) in enumerate(levels):
        on = (data[col].astype(str) == str(v)).to_numpy()
        bottom.plot(x[on], np.full(on.sum(), i), "s", ms=3, color="black")
        bottom.plot(x[~on], np.full((~on).sum(), i), "s", ms=3, color="0.9")
    bottom.set_yticks(range(len(levels)))
    bottom.set_yticklabels([f"{c}={v}" for c, v in levels], fontsize=7)
    bottom.set_xlabel("specification (sorted by estimate)")
    return fig
