"""Charts of the report, drawn from the result tables (no statistic is computed here).

Every function takes already-computed numbers and labels (translated by the caller) and returns PNG
bytes, embedded in the HTML as a data URI so the report needs no network access.
"""

from __future__ import annotations

import base64
import functools
import io
import textwrap
from collections.abc import Callable, Mapping, Sequence

import matplotlib
from PIL import Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

TREATED_COLOR = "#1f6f8b"
CONTROL_COLOR = "#c8a45a"
GREY = "#888888"
DPI = 150

# Applied per figure (not to the global rcParams at import): importing this module must not change
# the figures other steps draw in the same process, or their files would depend on import order.
STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
}


def _styled(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


def to_data_uri(png: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(png).decode("ascii")


def css_width(png: bytes) -> int:
    """The width in CSS pixels (96 per inch) of a PNG drawn at :data:`DPI`: the chart is shown at the
    size it was drawn, so its text has the size of the report's text."""
    pixels = int.from_bytes(png[16:20], "big")  # IHDR width
    return round(pixels * 96 / DPI)


def _save(fig: plt.Figure) -> bytes:
    """The chart as an RGB PNG at :data:`DPI`, cut to its content. RGB, not RGBA: the background is
    opaque white, and WeasyPrint would re-encode the alpha channel of every RGBA image it embeds."""
    drawn = io.BytesIO()
    try:
        fig.savefig(drawn, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    finally:
        plt.close(fig)
    buf = io.BytesIO()
    Image.open(drawn).convert("RGB").save(buf, format="PNG", dpi=(DPI, DPI))
    return buf.getvalue()


@_styled
def flow_diagram(boxes: Sequence[tuple[str, str]], side: Sequence[tuple[int, str, str] | None]) -> bytes:
    """Vertical flow of boxes (label, count text), with optional side boxes (attached after box i).

    ``side[i]`` = (i, label, count text) of a box branching to the right from box i (exclusions), or
    None. The last two main boxes may be drawn side by side (matched / unmatched) by the caller
    passing them as one entry joined with " | ".
    """
    n = len(boxes)
    height = 1.25 * n + 0.3
    fig, ax = plt.subplots(figsize=(7.0, height))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, height)
    ax.axis("off")
    box_w, box_h = 5.0, 0.8
    x0 = 0.2
    ys = [height - 0.9 - 1.25 * i for i in range(n)]
    for i, (label, count) in enumerate(boxes):
        y = ys[i]
        ax.add_patch(FancyBboxPatch((x0, y), box_w, box_h, boxstyle="round,pad=0.04",
                                    fc="#e8f1f5", ec=TREATED_COLOR, lw=1.2))
        ax.text(x0 + box_w / 2, y + box_h * 0.66, textwrap.fill(label, 42), ha="center", va="center",
                fontsize=8, linespacing=1.0)
        ax.text(x0 + box_w / 2, y + box_h * 0.22, count, ha="center", va="center", fontsize=10,
                fontweight="bold")
        if i + 1 < n:
            ax.annotate("", xy=(x0 + box_w / 2, ys[i + 1] + box_h + 0.04),
                        xytext=(x0 + box_w / 2, y - 0.04),
                        arrowprops={"arrowstyle": "->", "color": "#333333", "lw": 1.1})
    for entry in side:
        if entry is None:
            continue
        i, label, count = entry
        if i + 1 >= n:
            continue
        ymid = (ys[i] + ys[i + 1] + box_h) / 2
        sx = x0 + box_w + 0.6
        ax.add_patch(FancyBboxPatch((sx, ymid - 0.3), 3.9, 0.6, boxstyle="round,pad=0.04",
                                    fc="#f7f0e3", ec=CONTROL_COLOR, lw=1.0))
        ax.text(sx + 1.95, ymid + 0.1, textwrap.fill(label, 34), ha="center", va="center", fontsize=8)
        ax.text(sx + 1.95, ymid - 0.14, count, ha="center", va="center", fontsize=9, fontweight="bold")
        ax.annotate("", xy=(sx - 0.04, ymid), xytext=(x0 + box_w / 2, ymid),
                    arrowprops={"arrowstyle": "->", "color": GREY, "lw": 0.9})
    return _save(fig)


@_styled
def love_plot(covariates: Sequence[str], before: Sequence[float | None], after: Sequence[float | None],
              labels: Mapping[str, str], threshold: float = 0.1, xlabel: str = "|SMD|",
              max_covariates: int = 60) -> bytes:
    """|SMD| per covariate before (hollow) and after (filled) matching, with the 0.1 line.

    A difference the matching step masked (small counts) is None: its point is not drawn. Beyond
    ``max_covariates`` only the most imbalanced are drawn (in their order) and the title
    ``labels["left_out"]`` (with ``{n}``) says how many were left out."""
    left_out = max(len(covariates) - max_covariates, 0)
    if left_out:
        size = [max(abs(b) if b is not None else 0.0, abs(a) if a is not None else 0.0) for b, a in
                zip(before, after, strict=True)]
        keep = sorted(sorted(range(len(size)), key=lambda i: -size[i])[:max_covariates])
        covariates, before, after = ([seq[i] for i in keep] for seq in (covariates, before, after))
    k = len(covariates)
    fig, ax = plt.subplots(figsize=(6.5, 0.38 * k + 1.2))
    ys = list(range(k))[::-1]
    for values, style in ((before, {"facecolors": "none", "edgecolors": CONTROL_COLOR, "label": labels.get("before", "before")}),
                          (after, {"color": TREATED_COLOR, "label": labels.get("after", "after")})):
        shown = [(abs(v), y) for v, y in zip(values, ys, strict=True) if v is not None]
        ax.scatter([v for v, _ in shown], [y for _, y in shown], s=40, zorder=3, **style)
    for y, b, a in zip(ys, before, after, strict=True):
        if b is not None and a is not None:
            ax.plot([abs(b), abs(a)], [y, y], color="#cccccc", lw=0.8, zorder=1)
    ax.axvline(threshold, color=GREY, ls="--", lw=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels(covariates)
    ax.set_xlabel(xlabel)
    ax.set_xlim(left=0)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    ax.grid(axis="x", color="#eeeeee")
    if left_out:
        ax.set_title(labels.get("left_out", "{n} least imbalanced covariates not shown").format(n=left_out))
    return _save(fig)


@_styled
def grouped_bars(categories: Sequence[str], series: Mapping[str, Sequence[float]], ylabel: str,
                 tick_format: Callable[[float], str], horizontal: bool = True, fig_width: float = 6.8) -> bytes:
    """Bars per category, one bar per series (e.g. ÉQUILIBRES vs controls)."""
    k = len(categories)
    m = max(len(series), 1)
    colors = [TREATED_COLOR, CONTROL_COLOR, "#7a9e7e", "#a05a5a"]
    width = 0.8 / m
    if horizontal:
        fig, ax = plt.subplots(figsize=(fig_width, 0.45 * k * max(m, 1) * 0.6 + 1.3))
        base = list(range(k))[::-1]
        for j, (name, vals) in enumerate(series.items()):
            pos = [b + (m - 1 - j) * width - 0.4 + width / 2 for b in base]
            ax.barh(pos, vals, height=width, color=colors[j % len(colors)], label=name)
        ax.set_yticks(base)
        ax.set_yticklabels(categories)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: tick_format(v)))
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.set_xlabel(ylabel)
        ax.grid(axis="x", color="#eeeeee")
    else:
        fig, ax = plt.subplots(figsize=(6.8, 3.4))
        base = list(range(k))
        for j, (name, vals) in enumerate(series.items()):
            pos = [b + j * width - 0.4 + width / 2 for b in base]
            ax.bar(pos, vals, width=width, color=colors[j % len(colors)], label=name)
        ax.set_xticks(base)
        ax.set_xticklabels(categories, rotation=0)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: tick_format(v)))
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", color="#eeeeee")
    if len(series) > 1:
        ax.legend(frameon=False, loc="best")
    return _save(fig)


@_styled
def agreement_plot(labels: Sequence[str], rel: Sequence[float | None],
                   lo: Sequence[float | None], hi: Sequence[float | None], tolerance: float,
                   xlabel: str, tick_format: Callable[[float], str]) -> bytes:
    """Reproduced / published − 1 per indicator, with its CI, and the tolerance band around 0."""
    k = len(labels)
    fig, ax = plt.subplots(figsize=(6.8, 0.3 * k + 1.2))
    ys = list(range(k))[::-1]
    ax.axvspan(-tolerance, tolerance, color="#e8f1f5", zorder=0)
    ax.axvline(0, color=GREY, lw=0.8)
    for y, r, a, b in zip(ys, rel, lo, hi, strict=False):
        if r is None:
            continue
        if a is not None and b is not None:
            ax.plot([a, b], [y, y], color=TREATED_COLOR, lw=1.4)
        ax.plot([r], [y], "o", color=TREATED_COLOR, ms=4)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=7.5)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: tick_format(v)))
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", color="#eeeeee")
    return _save(fig)


@_styled
def likert_stacked(items: Sequence[str], levels: Sequence[str], shares: Sequence[Sequence[float]],
                   tick_format: Callable[[float], str]) -> bytes:
    """One horizontal 100 % bar per item, stacked by answer level (shares per level, rows = items)."""
    k = len(items)
    fig, ax = plt.subplots(figsize=(6.8, 0.42 * k + 1.4))
    cmap = plt.get_cmap("RdYlBu", max(len(levels), 3))
    ys = list(range(k))[::-1]
    left = [0.0] * k
    for j, level in enumerate(levels):
        vals = [row[j] for row in shares]
        ax.barh(ys, vals, left=left, color=cmap(j), label=level, height=0.6)
        left = [a + b for a, b in zip(left, vals, strict=False)]
    ax.set_yticks(ys)
    ax.set_yticklabels(items, fontsize=8)
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: tick_format(v)))
    ax.legend(frameon=False, ncol=min(len(levels), 5), loc="upper center", bbox_to_anchor=(0.5, -0.12),
              fontsize=7.5)
    return _save(fig)


@_styled
def before_after(items: Sequence[str], before: Sequence[float], after: Sequence[float],
                 labels: Mapping[str, str], ylabel: str) -> bytes:
    """Paired means (score /10) before and after, per item."""
    fig, ax = plt.subplots(figsize=(6.0, 2.9))
    base = list(range(len(items)))
    ax.bar([b - 0.2 for b in base], before, width=0.4, color=CONTROL_COLOR, label=labels.get("before"))
    ax.bar([b + 0.2 for b in base], after, width=0.4, color=TREATED_COLOR, label=labels.get("after"))
    ax.set_xticks(base)
    ax.set_xticklabels(items)
    ax.set_ylim(0, 10)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False)
    ax.grid(axis="y", color="#eeeeee")
    return _save(fig)


@_styled
def specification_curve(estimates: Sequence[float], lo: Sequence[float | None], hi: Sequence[float | None],
                        main_index: int | None, ylabel: str, xlabel: str,
                        tick_format: Callable[[float], str]) -> bytes:
    """Estimates sorted by size with their CIs; the main specification highlighted."""
    order = sorted(range(len(estimates)), key=lambda i: estimates[i])
    fig, ax = plt.subplots(figsize=(6.8, 3.0))
    for rank, i in enumerate(order):
        color = "#c0392b" if i == main_index else TREATED_COLOR
        if lo[i] is not None and hi[i] is not None:
            ax.plot([rank, rank], [lo[i], hi[i]], color=color, lw=0.9, alpha=0.6)
        ax.plot([rank], [estimates[i]], "o", color=color, ms=3.5)
    ax.axhline(0, color=GREY, lw=0.8)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: tick_format(v)))
    ax.set_ylabel(ylabel)
    ax.set_xlabel(xlabel)
    ax.grid(axis="y", color="#eeeeee")
    return _save(fig)


@_styled
def arm_panels(panels: Sequence[tuple[str, float, float, Callable[[float], str]]], arms: tuple[str, str]) -> bytes:
    """Small multiples: one panel per headline (title, ÉQUILIBRES value, control value, value format),
    two labelled bars each (the synthesis' end-of-life chart)."""
    k = len(panels)
    fig, axes = plt.subplots(1, k, figsize=(2.4 * k, 2.5), squeeze=False)
    for ax, (title, treated, control, fmt) in zip(axes[0], panels, strict=True):
        bars = ax.bar([0, 1], [treated, control], color=[TREATED_COLOR, CONTROL_COLOR], width=0.6)
        for b, v in zip(bars, (treated, control), strict=True):
            ax.annotate(fmt(v), (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=9,
                        xytext=(0, 2), textcoords="offset points", fontweight="bold")
        ax.set_xticks([0, 1])
        ax.set_xticklabels([textwrap.fill(a, 16) for a in arms])
        ax.set_title(textwrap.fill(title, 26), fontsize=9)
        ax.set_yticks([])
        ax.spines["left"].set_visible(False)
        ax.set_ylim(0, max(treated, control, 1e-9) * 1.25)
    fig.tight_layout()
    return _save(fig)


@_styled
def interval_bars(labels: Sequence[str], values: Sequence[float], lo: Sequence[float | None],
                  hi: Sequence[float | None], tick_format: Callable[[float], str], xlabel: str = "",
                  colors: Sequence[str] | None = None, published: Sequence[float | None] | None = None,
                  published_label: str = "", xlim: tuple[float, float] | None = None, width: float = 6.8) -> bytes:
    """Horizontal bars with their 95 % interval and, optionally, the published value as a marker."""
    k = len(labels)
    fig, ax = plt.subplots(figsize=(width, 0.5 * k + 1.0))
    ys = list(range(k))[::-1]
    cols = list(colors) if colors else [TREATED_COLOR] * k
    ax.barh(ys, values, color=cols, height=0.55)
    for y, v, a, b in zip(ys, values, lo, hi, strict=True):
        if a is not None and b is not None:
            ax.plot([a, b], [y, y], color="#1d2327", lw=1.2)
            ax.plot([a, a], [y - 0.12, y + 0.12], color="#1d2327", lw=1.2)
            ax.plot([b, b], [y - 0.12, y + 0.12], color="#1d2327", lw=1.2)
        ax.annotate(tick_format(v), (max(v, b if b is not None else v), y), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=8)
    if published is not None:
        px = [(y, p) for y, p in zip(ys, published, strict=True) if p is not None]
        if px:
            ax.plot([p for _y, p in px], [y for y, _p in px], "D", color=CONTROL_COLOR, ms=6, mec="#1d2327",
                    mew=0.6, label=published_label, zorder=5)
            ax.legend(frameon=False, loc="lower right", fontsize=8)
    ax.axvline(0, color=GREY, lw=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels([textwrap.fill(x, 28) for x in labels], fontsize=8)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: tick_format(v)))
    ax.xaxis.set_major_locator(MaxNLocator(4))
    if xlim:
        ax.set_xlim(*xlim)
    else:
        lo_x = min([0.0, *values, *[a for a in lo if a is not None]])
        hi_x = max([0.0, *values, *[b for b in hi if b is not None]])
        pad = (hi_x - lo_x) * 0.18 or 1.0
        ax.set_xlim(lo_x - (pad if lo_x < 0 else 0), hi_x + pad)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", color="#eeeeee")
    return _save(fig)


@_styled
def event_study(months: Sequence[float], estimates: Sequence[float], lo: Sequence[float | None],
                hi: Sequence[float | None], title: str, xlabel: str, ylabel: str) -> bytes:
    """Estimates by month relative to the index date, with their 95 % intervals."""
    fig, ax = plt.subplots(figsize=(6.4, 2.7))
    ax.axhline(0, color=GREY, lw=0.8)
    ax.axvline(-0.5, color=GREY, lw=0.8, ls="--")
    pairs = [(m, a, b) for m, a, b in zip(months, lo, hi, strict=True) if a is not None and b is not None]
    if pairs:
        ax.fill_between([p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs], color="#e8f1f5")
    ax.plot(months, estimates, "o-", color=TREATED_COLOR, ms=3, lw=1.2)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", color="#eeeeee")
    return _save(fig)


@_styled
def step_curves(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], xlabel: str, ylabel: str,
                tick_format: Callable[[float], str]) -> bytes:
    """Cumulative incidence (or any step function) per arm."""
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    colors = [TREATED_COLOR, CONTROL_COLOR, "#7a9e7e", "#a05a5a"]
    for j, (name, (x, y)) in enumerate(curves.items()):
        ax.step(x, y, where="post", color=colors[j % len(colors)], label=name, lw=1.5)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: tick_format(v)))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", color="#eeeeee")
    ax.legend(frameon=False, loc="upper left")
    return _save(fig)
