"""Result tables as report tables: cells formatted by their declared kind, small counts masked.

:func:`frame_table` renders any result CSV by the declaration of its columns
(:mod:`pipeline.result_tables`); :func:`flow_table` renders an attrition table (rows in, dropped, out),
masking the counts of people with :func:`pipeline.privacy.suppress_flow`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
from markupsafe import Markup, escape

from pipeline.io import PipelineError
from pipeline.paths import OUTPUT
from pipeline.privacy import is_small, suppress_counts, suppress_flow
from pipeline.result_tables import column_kinds, table_metadata
from pipeline.stages.rules import PEOPLE_UNITS
from reports.context import Block, ReportContext
from reports.format import MISSING, as_float, is_num
from reports.i18n import column_label, has_text, measure_label, note_text, rule_label

CI_LOW, CI_HIGH = "_ci_low", "_ci_high"
VALUE_KINDS = ("share", "eur", "score", "number")  # masked beside a masked count of people
BY_ROW_KINDS = {"share": "share", "count": "count", "relative_difference": "share"}
# Columns the report shows in another kind than their declaration: the return per euro invested is a
# ratio (euros saved per euro invested), not an amount.
KIND_OVERRIDES = {"return_per_euro_invested": "ratio"}



def unit_kind(unit: str) -> str:
    """How a value in an indicator ``unit`` is shown in a table cell."""
    if unit in ("share", "relative_difference"):
        return "share"
    if unit.startswith("eur"):
        return "eur"
    if unit == "score_0_10":
        return "score"
    if unit == "count":
        return "count"
    return "number"


def measure_text(ctx: ReportContext, measure: Any) -> str:
    """The label of a measure of the end-of-life and hospitalisation tables."""
    m = str(measure)
    categories = ctx.saved("clean").cleaning.categories
    if m.startswith("spending_") and m[len("spending_"):] in categories:
        cat = categories[m[len("spending_"):]]
        return f"{ctx.t('spending_of')} {cat.label_fr if ctx.lang == 'fr' else cat.label_en}"
    label = measure_label(m, ctx.lang)
    if label is not None:
        return label
    if m.startswith("spending_"):
        return f"{ctx.t('spending_of')} {ctx.value(m[len('spending_'):])}"
    return ctx.value(m)


def frame_table(ctx: ReportContext, key: str, df: pd.DataFrame, caption: str, *, max_rows: int = 80,
                rename: Mapping[str, str] | None = None, drop: Iterable[str] = (),
                keep: Sequence[str] | None = None, added: Mapping[str, str] | None = None,
                annex: bool = False) -> Block:
    """The result table ``key``: columns formatted by their declared kind; people counts masked.

    ``added``: kinds of columns the report added to the producer's table. Producers already blank
    their small counts (null + a ``suppressed`` column naming them); those cells are shown masked,
    and the report applies its own primary and secondary suppression on top, so a table is safe
    whichever step wrote it.
    """
    declared = {**column_kinds(key, [c for c in df.columns if c not in (added or {})]), **(added or {})}
    declared = {c: KIND_OVERRIDES.get(c.removesuffix(CI_LOW).removesuffix(CI_HIGH), k) if k == "eur" else k
                for c, k in declared.items()}
    df, pre_masked, kinds = prepare_frame(df, declared, ctx.lang, drop=drop, keep=keep)
    kinds = {c: unit_kind(ctx.unit_of(c.removesuffix(CI_LOW).removesuffix(CI_HIGH))) if k == "indicator" else k
             for c, k in kinds.items()}
    meta = table_metadata(key)
    row_units = None
    unit_col = meta.get("row_unit")
    if unit_col and unit_col in df.columns:
        # Tables with one measure per row (end of life, hospitalisation) state each row's unit.
        row_units = [u if isinstance(u, str) and u else meta.get("missing_unit") for u in df[unit_col]]
        df, pre_masked = df.drop(columns=unit_col), pre_masked.drop(columns=unit_col)
        del kinds[unit_col]
    elif "by_row" in kinds.values():
        kinds = {c: "number" if k == "by_row" else k for c, k in kinds.items()}
    if "measure" in df.columns:
        df["measure"] = [measure_text(ctx, m) for m in df["measure"]]
    for c in [c for c, k in kinds.items() if k == "note"]:
        threshold = ctx.saved_threshold(OUTPUT[key].step)
        df[c] = [note_text(v, ctx.lang, threshold) if isinstance(v, str) and v.strip() else v for v in df[c]]
    counts = [c for c, k in kinds.items() if k == "count"]
    total_row = _total_row(df)
    masked = pre_masked.copy()
    small = pre_masked.copy()  # cells shown as "< k" (small themselves); other masked cells get "×"
    if counts:
        numeric = df[counts].apply(pd.to_numeric, errors="coerce")
        sup = suppress_counts(numeric, counts, ctx.k, total_row=total_row)
        masked[counts] = masked[counts] | sup.mask[counts]
        small[counts] = small[counts] | sup.primary[counts]
    for c in df.columns:
        if c not in counts:
            small[c] = False
    if row_units is not None:
        for pos, i in enumerate(df.index):
            if row_units[pos] == "count":
                for c in df.columns:
                    if kinds[c] == "by_row" and is_num(df.at[i, c]) and is_small(float(df.at[i, c]), ctx.k):
                        masked.at[i, c] = small.at[i, c] = True
    small_rows = masked[counts].any(axis=1) if counts else pd.Series(False, index=df.index)
    for c, k in kinds.items():
        if k in VALUE_KINDS and c not in counts:
            masked.loc[small_rows & df[c].isna(), c] = True
    ctx.n_masked += int(masked.to_numpy().sum())
    cis = {c: (f"{c}{CI_LOW}", f"{c}{CI_HIGH}") for c in df.columns if f"{c}{CI_LOW}" in df.columns}
    base = meta.get("ci_of")
    if base in df.columns and "ci_low" in df.columns and "ci_high" in df.columns and base not in cis:
        cis[base] = ("ci_low", "ci_high")
    ci_cols = {x for pair in cis.values() for x in pair if x in df.columns}
    shown = [c for c in df.columns if c not in ci_cols]
    rows = []
    for pos, i in enumerate(df.index[:max_rows]):
        row: list[Any] = []
        for c in shown:
            if masked.at[i, c]:
                row.append(ctx.fmt.masked(ctx.k) if small.at[i, c] else ctx.fmt.secondary())
                continue
            kind = kinds[c]
            if kind == "by_row":
                unit = str(row_units[pos])
                kind = ("ratio" if c.startswith("ratio") else
                        BY_ROW_KINDS.get(unit, "eur" if unit.startswith("eur") else "number1"))
            cell = ctx.fmt.cell(df.at[i, c], kind, ctx.value)
            if c in cis and cis[c][1] in df.columns:
                lo, hi = df.at[i, cis[c][0]], df.at[i, cis[c][1]]
                if is_num(lo) and is_num(hi) and not masked.at[i, cis[c][0]]:
                    ci = f"[{ctx.fmt.cell(lo, kind, ctx.value)}{ctx.fmt.ci_separator}{ctx.fmt.cell(hi, kind, ctx.value)}]"
                    cell = Markup(f'{escape(cell)}<br><span class="ci">{escape(ci)}</span>')
            row.append(cell)
        rows.append(row)
    cols = [(rename or {}).get(c) or column_label(c, ctx.lang) for c in shown]
    align = ["l" if kinds[c] in ("text", "note") else "r" for c in shown]
    note = ctx.masked_note() if counts else None
    if len(df) > max_rows:
        rows.append([f"… (+{len(df) - max_rows})"] + [""] * (len(cols) - 1))
    return ctx.table(caption, cols, rows, align=align, note=note, annex=annex)


def prepare_frame(df: pd.DataFrame, kinds: Mapping[str, str], lang: str, drop: Iterable[str] = (),
                  keep: Sequence[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """(table to show, cells already suppressed by the producer, kind of each column shown).

    Keeps the columns of the report language (``text_fr``/``text_en`` → ``text``), drops technical
    and all-empty columns, and turns the producer's ``suppressed`` marker (True, or the names of the
    blanked columns separated by ';') into a mask.
    """
    df = df.reset_index(drop=True).copy()
    kinds = dict(kinds)
    pre = pd.DataFrame(False, index=df.index, columns=df.columns)
    if "suppressed" in df.columns:
        for i, flag in df["suppressed"].items():
            if isinstance(flag, str) and flag.strip() and flag.strip().lower() not in ("false", "0"):
                names = [x.strip() for x in flag.split(";") if x.strip()]
                if flag.strip().lower() == "true":
                    names = [c for c in df.columns if df[c].isna().iat[i]]
                for c in names:
                    if c in pre.columns:
                        pre.at[i, c] = True
            elif flag is True or (not isinstance(flag, str) and is_num(flag) and float(flag) == 1):
                for c in df.columns:
                    if pd.isna(df.at[i, c]) and c != "suppressed":
                        pre.at[i, c] = True
    other = "en" if lang == "fr" else "fr"
    renames = {}
    for c in list(df.columns):
        if c.endswith(f"_{other}") and c[: -len(other) - 1] + f"_{lang}" in df.columns:
            df, pre = df.drop(columns=c), pre.drop(columns=c)
        elif c.endswith(f"_{lang}"):
            base = c[: -len(lang) - 1]
            renames[c] = base
            kinds[base] = kinds[c]
            if base in df.columns:
                df, pre = df.drop(columns=base), pre.drop(columns=base)
    df, pre = df.rename(columns=renames), pre.rename(columns=renames)
    if "text" in df.columns:
        # A translated question text makes the (English) label and the question code redundant.
        extra = [c for c in ("label", "question_id") if c in df.columns]
        df, pre = df.drop(columns=extra), pre.drop(columns=extra)
    dropped = [c for c in df.columns if kinds[c] == "technical" or c in set(drop)]
    if keep is not None:
        dropped += [c for c in df.columns if c not in keep and not any(
            c == f"{k}{CI_LOW}" or c == f"{k}{CI_HIGH}" for k in keep)]
    dropped = list(dict.fromkeys(dropped))
    df, pre = df.drop(columns=dropped), pre.drop(columns=dropped)
    empty = [c for c in df.columns if df[c].isna().all() and not pre[c].any()]
    df, pre = df.drop(columns=empty), pre.drop(columns=empty)
    return df, pre, {c: kinds[c] for c in df.columns}


def _total_row(df: pd.DataFrame) -> Any:
    for c in df.columns:
        if df[c].dtype == object:
            hits = df.index[df[c].astype(str).str.lower().isin(["total", "all", "ensemble"])]
            if len(hits) == 1:
                return hits[0]
            return None
    return None


def short_source(url: str) -> str:
    tail = url.rstrip("/").rsplit("/", 1)[-1]
    return tail.removesuffix(".html") or url


def rule_description(ctx: ReportContext, row: pd.Series) -> str:
    """A cleaning rule in the report language: the producer's own text, else the report's."""
    rule = str(row.get("rule", ""))
    if ctx.lang != "en":
        # The producer's own translation first (attrition.csv description_fr), then the report's.
        own = row.get(f"description_{ctx.lang}")
        if isinstance(own, str) and own:
            return own
        label = rule_label(rule, ctx.lang)
        if label is not None:
            return label
        if has_text(f"flow_{rule}", ctx.lang):
            return ctx.t(f"flow_{rule}")
    desc = row.get("description")
    return str(desc) if isinstance(desc, str) and desc else (rule_label(rule, ctx.lang) or ctx.value(rule))


def flow_table(ctx: ReportContext, flow: pd.DataFrame, caption: str, person_rows: Sequence[bool] | None = None,
               with_source: bool = False) -> Block:
    """An attrition table: rows in, dropped and out per rule (people counts masked), amounts removed."""
    sup = suppress_flow(flow, ctx.k, person_rows=person_rows)
    ctx.n_masked += sup.n_masked
    cols = [ctx.t("col_rule"), ctx.t("col_rows_in"), ctx.t("col_rows_dropped"), ctx.t("col_rows_out")]
    has_eur = "euros_dropped" in flow.columns and \
        pd.to_numeric(flow["euros_dropped"], errors="coerce").fillna(0).abs().sum() > 0
    if has_eur:
        cols.append(ctx.t("col_euros_dropped"))
    cols.append(ctx.t("col_description"))
    if with_source:
        cols.append(ctx.t("col_source"))
    rows = []
    for i, row in flow.iterrows():
        cells = [Markup(f"<code>{escape(str(row.get('stage', '')))}.<wbr>{escape(str(row.get('rule', '')))}</code>")]
        for c in ("rows_in", "rows_dropped", "rows_out"):
            if not sup.mask.at[i, c]:
                cells.append(ctx.fmt.integer(row.get(c)))
            else:
                cells.append(ctx.fmt.masked(ctx.k) if sup.is_primary(i, c) else ctx.fmt.secondary())
        if has_eur:
            cells.append(ctx.fmt.eur(row.get("euros_dropped")) if as_float(row.get("euros_dropped")) else MISSING)
        cells.append(rule_description(ctx, row))
        if with_source:
            src = str(row.get("source", "") or "")
            cells.append(Markup(f'<a href="{escape(src)}">{escape(short_source(src))}</a>') if src.startswith("http")
                         else escape(src or MISSING))
        rows.append(cells)
    align = ["l", "r", "r", "r"] + (["r"] if has_eur else []) + ["l"] + (["l"] if with_source else [])
    note = Markup(escape(ctx.t("cleaning_note"))) + Markup(" ") + ctx.masked_note()
    return ctx.table(caption, cols, rows, align=align, note=note, cls="small wrap")


def cleaning_table(ctx: ReportContext, with_source: bool) -> Block:
    """The cleaning rules of the audit trail (all stages but the cohort flow)."""
    att = ctx.results.table("attrition")
    if att is None or att.empty or "rows_in" not in att.columns:
        return ctx.notice_missing("attrition")
    rules = att[att["stage"].astype(str) != "cohort"].reset_index(drop=True)
    # Each audit row declares what it counts (pipeline/stages/rules.py): only counts of people are masked.
    if "unit" not in rules.columns:
        raise PipelineError(f"{ctx.results.root / 'audit/attrition.csv'} has no 'unit' column (what each "
                            f"row counts): it was written by an older version; re-run `equilibres clean --force`.")
    people = [str(u) in PEOPLE_UNITS for u in rules["unit"]]
    return flow_table(ctx, rules, ctx.t("tab_cleaning"), person_rows=people, with_source=with_source)
