"""Unit-level outcomes: follow-up, spending, stays, end of life and DiD windows for each matched unit.

A *unit* is one row of the matched cohort (a person at an index date). Every indicator is built from
the per-unit outcomes computed here; the bootstrap then only sums them by matched set.

Windows and conventions (documented in docs/indicators.md):

* Follow-up runs from the index date to the first of death, ``study.claims_end``, the end of the data
  (last day of the last month of the panel) and — only with ``indicators.followup = "per_protocol"`` —
  the ÉQUILIBRES exit date. Days are counted inclusively; patient-years = days / 365.25.
* Monthly panel amounts (DCIR categories in follow-up; every category in the DiD windows) are
  prorated by the share of a month's days inside a window. When a window ends at death, the whole
  month of death is counted (no care is billed after death, so the month's amounts all fall inside
  the window) while patient-time stops at the death date.
* Hospital (MCO) spending in follow-up: the full cost of the stays and séances whose entry date is in
  follow-up (from ``stays``, like the stay counts), so a stay ending before the index date is never
  charged to follow-up.
* End of life: the ``eol_window_days`` days before death, death day included
  (``[death − (eol_window_days − 1), death]``). DCIR spending = the decedent's per-care-day amounts
  (``eol_daily``, EXE_SOI_DTD) inside the window; hospital spending = each stay's cost prorated by its
  days inside the window (stay days = exit − entry + 1, so a same-day stay or séance counts one day);
  a full stay counts if it overlaps the window; hospital days are the nights of overlap.
* Hospital stays in follow-up: full (non-séance) stays whose entry date is in follow-up; their days
  are ``SEJ_NBJ``. Séances are counted apart.
* Only stays of the hospital perimeter (``stay_category`` = 'hospital') enter the stay counts, days and
  hospital spending above. Stays of a ``cleaning.stay_categories`` category (negative controls such as
  cataract surgery) are counted apart, per unit, as ``stays_<category>`` (stays and séances entering in
  follow-up). A death in hospital (SOR_MOD = 9) is read from every stay.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from pipeline.config import StudyConfig
from pipeline.stages.outputs import HOSPITAL

DAYS_PER_YEAR = 365.25

# Window kinds computed for every unit (code used as the last digit of the window key).
_KINDS = {"fu": 0, "eol": 1, "pre": 2, "post": 3}


def spend_categories(config: StudyConfig) -> list[str]:
    """All spending categories of the panel (DCIR categories, 'other', 'hospital')."""
    return [*config.cleaning.category_names, HOSPITAL]


def dcir_categories(config: StudyConfig) -> list[str]:
    """The DCIR spending categories (those of ``eol_daily``): every category but 'hospital'."""
    return list(config.cleaning.category_names)


def category_labels_fr(config: StudyConfig, cats: list[str]) -> str:
    """French labels of spending categories (from the configuration), for French record texts."""
    fixed = {"other": "autres", "hospital": "hospitalisation (MCO)"}
    rules = config.cleaning.categories
    return ", ".join(rules[c].label_fr.lower() if c in rules else fixed.get(c, c) for c in cats)


def perimeter_categories(config: StudyConfig) -> list[str]:
    """The categories counted in spending indicators (``indicators.perimeter``), validated."""
    known = spend_categories(config)
    per = list(config.indicators.perimeter) or known
    unknown = [c for c in per if c not in known]
    if unknown:
        from pipeline.io import PipelineError

        raise PipelineError(
            f"indicators.perimeter names unknown spending categories {unknown}; the panel has "
            f"{known}. Fix [indicators] perimeter in the study configuration."
        )
    return per


def _to_ts(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s).dt.normalize()


def _month_end(s: pd.Series) -> pd.Series:
    return s + pd.offsets.MonthEnd(0)


def followup_windows(units: pd.DataFrame, persons: pd.DataFrame, config: StudyConfig,
                     data_end: dt.date) -> pd.DataFrame:
    """Follow-up of each unit: ``index_date, fu_end, end_reason, died, death_date, fu_days, pyears``.

    ``persons`` is indexed by person_id. Deaths flagged as errors by cleaning (``death_flag_error``)
    are not used.
    """
    u = units[["unit_id", "person_id", "treated", "index_date"]].copy()
    u["index_date"] = _to_ts(u["index_date"])
    p = persons.reindex(u["person_id"])
    death = _to_ts(p["death_date"]).to_numpy()
    if "death_flag_error" in p.columns:
        death = np.where(p["death_flag_error"].fillna(0).to_numpy() == 1, np.datetime64("NaT"), death)
    u["death_date"] = pd.to_datetime(death)
    u["death_source"] = p["death_source"].to_numpy() if "death_source" in p.columns else None
    study_end = pd.Timestamp(min(config.study.claims_end, data_end))
    reason_dates = {"death": u["death_date"], "study_end": pd.Series(study_end, index=u.index)}
    if config.indicators.followup == "per_protocol" and "exit_date" in p.columns:
        exit_ = _to_ts(p["exit_date"]).to_numpy()
        exit_ = np.where(u["treated"].to_numpy() == 1, exit_, np.datetime64("NaT"))
        reason_dates["exit"] = pd.Series(pd.to_datetime(exit_), index=u.index)
    ends = pd.DataFrame(reason_dates)
    # Death wins ties (listed first); idxmin skips NaT.
    u["end_reason"] = ends.idxmin(axis=1)
    u["fu_end"] = ends.min(axis=1)
    # A death on or before index (should not happen for eligible units) gives a one-day follow-up.
    u["fu_end"] = u[["fu_end", "index_date"]].max(axis=1)
    u["died"] = (u["end_reason"] == "death").astype(int)
    u["fu_days"] = (u["fu_end"] - u["index_date"]).dt.days + 1
    u["pyears"] = u["fu_days"] / DAYS_PER_YEAR
    return u.set_index("unit_id")


def eol_first_day(death: pd.Series, days: int) -> pd.Series:
    """First day of the end-of-life window: the ``days`` days before death, death day included."""
    return death - pd.Timedelta(days=days - 1)


def _keyed(frames: list[pd.DataFrame], fu: pd.DataFrame) -> pd.DataFrame:
    w = pd.concat(frames, ignore_index=True)
    w["key"] = w["unit_pos"] * 10 + w["kind"].map(_KINDS)
    w["person_id"] = fu["person_id"].to_numpy()[w["unit_pos"].to_numpy()]
    w["w_start"] = pd.to_datetime(w["w_start"]).dt.date
    w["w_end"] = pd.to_datetime(w["w_end"]).dt.date
    return w


def eol_windows(fu: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """End-of-life window of each decedent unit (key, unit_pos, kind, person_id, w_start, w_end
    inclusive): the ``indicators.eol_window_days`` days before death, death day included."""
    pos = np.arange(len(fu))
    died = fu["died"].to_numpy() == 1
    death = fu["death_date"][died]
    return _keyed([pd.DataFrame({
        "unit_pos": pos[died], "kind": "eol",
        "w_start": eol_first_day(death, config.indicators.eol_window_days).to_numpy(),
        "w_end": death.to_numpy()})], fu)


def unit_windows(fu: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """Panel windows of each unit (follow-up, DiD pre and post): key, unit_pos, kind, person_id,
    w_start, w_end (inclusive). The end-of-life window is in days (``eol_windows``)."""
    ic = config.indicators
    pos = np.arange(len(fu))
    died = fu["died"].to_numpy() == 1
    death = fu["death_date"]
    index = fu["index_date"]
    spend_end = fu["fu_end"].where(~died, _month_end(death))
    frames = [pd.DataFrame({"unit_pos": pos, "kind": "fu", "w_start": index.to_numpy(),
                            "w_end": spend_end.to_numpy()})]
    pre_start = index - pd.DateOffset(months=ic.did_pre_months)
    frames.append(pd.DataFrame({"unit_pos": pos, "kind": "pre", "w_start": pre_start.to_numpy(),
                                "w_end": (index - pd.Timedelta(days=1)).to_numpy()}))
    post_cap = index + pd.DateOffset(months=ic.did_months) - pd.Timedelta(days=1)
    frames.append(pd.DataFrame({"unit_pos": pos, "kind": "post", "w_start": index.to_numpy(),
                                "w_end": np.minimum(post_cap.to_numpy(), spend_end.to_numpy())}))
    return _keyed(frames, fu)


@dataclass
class ClaimsData:
    """The cleaned claims an indicator run needs, loaded once and reused across matched samples.

    ``panel``, ``stays`` and ``eol_daily`` (decedents' DCIR spending per care day) may be parquet
    paths (queried by DuckDB without loading them) or frames. ``eol_daily`` None means no care day
    before any death (hand-built frames without end-of-life claims: DCIR end-of-life spending is 0);
    ``inputs.load_claims`` always gives the cleaning output. Unit outcomes are cached by unit_id, so
    repeated calls (the matching sweep) only compute units not seen before.
    """

    persons: pd.DataFrame
    panel: pd.DataFrame | Path
    stays: pd.DataFrame | Path
    data_end: dt.date
    eol_daily: pd.DataFrame | Path | None = None
    threads: int = 2
    memory_limit: str = "4GB"
    _cache: pd.DataFrame | None = field(default=None, repr=False)
    _cache_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_frames(cls, persons: pd.DataFrame, panel: pd.DataFrame, stays: pd.DataFrame,
                    config: StudyConfig, data_end: dt.date | None = None,
                    eol_daily: pd.DataFrame | None = None) -> ClaimsData:
        if data_end is None:
            data_end = _data_end_from_months(pd.to_datetime(panel["month"]).max(), config)
        return cls(persons.set_index("person_id") if "person_id" in persons.columns else persons,
                   panel, stays, data_end, eol_daily=eol_daily, threads=config.engine.duckdb_threads)

    # -- DuckDB plumbing -----------------------------------------------------------------------
    def connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        con.execute(f"SET threads = {int(self.threads)}")
        con.execute(f"SET memory_limit = '{self.memory_limit}'")
        con.execute("SET enable_progress_bar = false")  # sweep workers' output stays readable
        for name, src in (("panel", self.panel), ("stays", self.stays), ("eol_daily", self.eol_daily)):
            if src is None:
                continue
            if isinstance(src, pd.DataFrame):
                con.register(f"{name}_df", src)
                con.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_df")
            else:
                con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{Path(src).as_posix()}')")
        return con

    def unit_outcomes(self, units: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
        """Outcomes of each unit (indexed by unit_id); cached per unit for the same settings."""
        key = config.fingerprint("indicators", "study", "cleaning", "cohort")
        if self._cache_key != key:
            self._cache, self._cache_key = None, key
        units = units.drop_duplicates("unit_id")
        todo = units if self._cache is None else units[~units["unit_id"].isin(self._cache.index)]
        if len(todo):
            new = compute_unit_outcomes(todo, self, config)
            self._cache = new if self._cache is None else pd.concat([self._cache, new])
        assert self._cache is not None
        return self._cache.loc[units["unit_id"].to_numpy()]


def _data_end_from_months(last_month: pd.Timestamp, config: StudyConfig) -> dt.date:
    if pd.isna(last_month):
        return config.study.claims_end
    return min((pd.Timestamp(last_month) + pd.offsets.MonthEnd(0)).date(), config.study.claims_end)


def _panel_sums(con: duckdb.DuckDBPyConnection, windows: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    con.register("win", windows[["key", "person_id", "w_start", "w_end"]])
    frac = ("(date_diff('day', greatest(p.m, w.w_start), least(last_day(p.m), w.w_end)) + 1)::DOUBLE"
            " / (date_diff('day', p.m, last_day(p.m)) + 1)")
    sums = ", ".join(f"sum(coalesce(p.{c}, 0) * {frac}) AS {c}" for c in cols)
    sql = f"""
        WITH p AS (SELECT *, CAST(month AS DATE) AS m FROM panel)
        SELECT w.key, {sums}
        FROM win w JOIN p ON p.person_id = w.person_id
         AND p.m <= w.w_end AND last_day(p.m) >= w.w_start
        GROUP BY w.key
    """
    out = con.execute(sql).df().set_index("key")
    con.unregister("win")
    return out


def _daily_sums(con: duckdb.DuckDBPyConnection, windows: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Sums of ``eol_daily`` columns over the care days of each window (key → sums; windows without
    any care day are absent)."""
    con.register("win", windows[["key", "person_id", "w_start", "w_end"]])
    sums = ", ".join(f"sum(coalesce(d.{c}, 0)) AS {c}" for c in cols)
    sql = f"""
        SELECT w.key, {sums}
        FROM win w JOIN eol_daily d ON d.person_id = w.person_id
         AND CAST(d.care_date AS DATE) BETWEEN w.w_start AND w.w_end
        GROUP BY w.key
    """
    out = con.execute(sql).df().set_index("key")
    con.unregister("win")
    return out


def stay_category_sql(con: duckdb.DuckDBPyConnection) -> str:
    """SQL expression of a stay's category in the ``stays`` view: its ``stay_category`` column, or
    'hospital' for every stay when the view has none (stays tables built by hand)."""
    cols = {d[0] for d in con.execute("SELECT * FROM stays LIMIT 0").description}
    if "stay_category" in cols:
        return f"coalesce(CAST(stay_category AS VARCHAR), '{HOSPITAL}')"
    return f"'{HOSPITAL}'"


def _stay_outcomes(con: duckdb.DuckDBPyConnection, fu: pd.DataFrame, eol_days: int,
                   stay_categories: list[str] = ()) -> pd.DataFrame:
    """Per unit (by position): stays, days, séances and hospital spending in follow-up; end-of-life
    stay, nights, prorated hospital spending and death-in-hospital flag (decedents) — all from the
    hospital perimeter's stays; and ``stays_<c>`` for each stay category ``c`` outside it."""
    death = fu["death_date"].where(fu["died"] == 1)
    u = pd.DataFrame({
        "unit_pos": np.arange(len(fu)),
        "person_id": fu["person_id"].to_numpy(),
        "fu_start": fu["index_date"].dt.date.to_numpy(),
        "fu_end": fu["fu_end"].dt.date.to_numpy(),
        "death": death.dt.date.to_numpy(),
        "eol_start": eol_first_day(death, eol_days).dt.date.to_numpy(),
    })
    con.register("units", u)
    # A stay lasts exit − entry + 1 days (a same-day stay or séance: 1 day); its cost is spread
    # evenly over those days, and the end-of-life window takes the days it holds. ``h`` marks the
    # stays of the hospital perimeter: only they enter the headline sums; a death in hospital is read
    # from every stay, and stays outside the perimeter are counted per category.
    per_category = "".join(
        f",\n          sum(CASE WHEN cat = '{c}' AND entry BETWEEN fu_start AND fu_end THEN 1 ELSE 0 END)"
        f' AS "stays_{c}"' for c in stay_categories)
    sql = f"""
        WITH s AS (SELECT person_id, coalesce(CAST(entry_date AS DATE), CAST(exit_date AS DATE)) AS entry,
                          coalesce(CAST(exit_date AS DATE), CAST(entry_date AS DATE)) AS exit_,
                          coalesce(SEJ_NBJ, 0) AS nbj, CAST(SOR_MOD AS VARCHAR) AS sor,
                          CAST(is_seance AS INTEGER) AS seance, coalesce(CAST(cost AS DOUBLE), 0) AS cost,
                          {stay_category_sql(con)} AS cat
                   FROM stays),
        j AS (SELECT u.unit_pos, u.fu_start, u.fu_end, u.death, CAST(u.eol_start AS DATE) AS eol_start, s.*,
                     s.cat = '{HOSPITAL}' AS h, greatest(date_diff('day', s.entry, s.exit_) + 1, 1) AS stay_days
              FROM units u JOIN s ON s.person_id = u.person_id)
        SELECT unit_pos,
          sum(CASE WHEN h AND seance = 0 AND entry BETWEEN fu_start AND fu_end THEN 1 ELSE 0 END) AS stays,
          sum(CASE WHEN h AND seance = 0 AND entry BETWEEN fu_start AND fu_end THEN nbj ELSE 0 END) AS hosp_days,
          sum(CASE WHEN h AND seance = 1 AND entry BETWEEN fu_start AND fu_end THEN 1 ELSE 0 END) AS seances,
          sum(CASE WHEN h AND entry BETWEEN fu_start AND fu_end THEN cost ELSE 0 END) AS fu_hosp_spend,
          sum(CASE WHEN h AND death IS NOT NULL AND entry <= death AND exit_ >= eol_start
                   THEN cost * least(greatest(date_diff('day', greatest(entry, eol_start), least(exit_, death)) + 1,
                                              0), stay_days)::DOUBLE / stay_days
                   ELSE 0 END) AS eol_hosp_spend,
          max(CASE WHEN h AND death IS NOT NULL AND seance = 0 AND entry <= death AND exit_ >= eol_start
                   THEN 1 ELSE 0 END) AS eol_any_stay,
          sum(CASE WHEN h AND death IS NOT NULL AND seance = 0 AND entry <= death AND exit_ >= eol_start
                   THEN greatest(date_diff('day', greatest(entry, eol_start), least(exit_, death)), 0)
                   ELSE 0 END) AS eol_hosp_days,
          max(CASE WHEN death IS NOT NULL AND sor = '9' AND abs(date_diff('day', exit_, death)) <= 1
                   THEN 1 ELSE 0 END) AS eol_sor9{per_category}
        FROM j GROUP BY unit_pos
    """
    out = con.execute(sql).df().set_index("unit_pos")
    con.unregister("units")
    return out


def compute_unit_outcomes(units: pd.DataFrame, claims: ClaimsData, config: StudyConfig) -> pd.DataFrame:
    """Per-unit outcome columns (see module docstring); indexed by unit_id."""
    cats = spend_categories(config)
    dcir = dcir_categories(config)
    perim = perimeter_categories(config)
    nursing = [c for c in config.cohort.nursing_categories if c in cats]
    fu = followup_windows(units, claims.persons, config, claims.data_end)
    windows = unit_windows(fu, config)
    spend_cols = [f"spend_{c}" for c in cats]
    count_cols = ["nursing_acts", "experiment_hours"]
    daily_cols = [f"spend_{c}" for c in dcir] + count_cols
    con = claims.connect()
    try:
        sums = _panel_sums(con, windows, spend_cols + count_cols)
        eol_sums = (_daily_sums(con, eol_windows(fu, config), daily_cols) if claims.eol_daily is not None
                    else pd.DataFrame(columns=daily_cols, dtype=float))
        stays = _stay_outcomes(con, fu, config.indicators.eol_window_days, config.cleaning.stay_category_names)
    finally:
        con.close()
    n = len(fu)
    out = pd.DataFrame(index=fu.index)
    out["person_id"] = fu["person_id"]
    out["treated"] = fu["treated"].astype(int)
    out["index_date"] = fu["index_date"]
    out["fu_end"] = fu["fu_end"]
    out["end_reason"] = fu["end_reason"]
    out["death_date"] = fu["death_date"]
    out["n"] = 1.0
    out["pyears"] = fu["pyears"].to_numpy()
    out["died"] = fu["died"].to_numpy().astype(float)

    def block(kind: str, frame: pd.DataFrame) -> pd.DataFrame:
        keys = np.arange(n) * 10 + _KINDS[kind]
        return frame.reindex(keys).fillna(0.0).set_axis(fu.index)

    fu_s, pre_s, post_s = (block(k, sums) for k in ("fu", "pre", "post"))
    eol_s = block("eol", eol_sums)
    st = stays.reindex(np.arange(n)).fillna(0.0).set_axis(fu.index)
    for c in dcir:
        out[f"s_{c}"] = fu_s[f"spend_{c}"]
        out[f"eol_s_{c}"] = eol_s[f"spend_{c}"]
    # Hospital spending from the stays themselves (not the panel's entry months): follow-up = stays
    # entering in follow-up; end of life = cost prorated by the stay's days inside the window.
    out[f"s_{HOSPITAL}"] = st["fu_hosp_spend"]
    out[f"eol_s_{HOSPITAL}"] = st["eol_hosp_spend"] * out["died"]
    out["s_perimeter"] = out[[f"s_{c}" for c in perim]].sum(axis=1)
    out["fu_experiment_hours"] = fu_s["experiment_hours"]
    out["fu_nursing_acts"] = fu_s["nursing_acts"]
    out["eol_s_perimeter"] = out[[f"eol_s_{c}" for c in perim]].sum(axis=1)
    out["eol_nursing_spend"] = out[[f"eol_s_{c}" for c in nursing]].sum(axis=1)
    out["eol_nursing_acts"] = eol_s["nursing_acts"]
    out["eol_experiment_hours"] = eol_s["experiment_hours"]

    out["stays"] = st["stays"]
    out["hosp_days"] = st["hosp_days"]
    out["seances"] = st["seances"]
    out["any_stay"] = (st["stays"] > 0).astype(float)
    out["eol_any_stay"] = st["eol_any_stay"] * out["died"]
    out["eol_hosp_days"] = st["eol_hosp_days"] * out["died"]
    pmsi_death = (fu["death_source"].astype(str) == "PMSI").to_numpy()
    out["eol_death_in_hosp"] = (((st["eol_sor9"] > 0).to_numpy() | pmsi_death) * out["died"]).astype(float)
    for c in config.cleaning.stay_category_names:
        out[f"stays_{c}"] = st[f"stays_{c}"]

    out["pre_s_perimeter"] = pre_s[[f"spend_{c}" for c in perim]].sum(axis=1)
    pre_days = (fu["index_date"] - (fu["index_date"] - pd.DateOffset(months=config.indicators.did_pre_months))).dt.days
    out["pre_pyears"] = pre_days.to_numpy() / DAYS_PER_YEAR
    out["post_s_perimeter"] = post_s[[f"spend_{c}" for c in perim]].sum(axis=1)
    post_cap = fu["index_date"] + pd.DateOffset(months=config.indicators.did_months) - pd.Timedelta(days=1)
    post_end = np.minimum(post_cap.to_numpy(), fu["fu_end"].to_numpy())
    out["post_pyears"] = ((pd.Series(pd.to_datetime(post_end), index=fu.index) - fu["index_date"]).dt.days + 1).to_numpy() / DAYS_PER_YEAR
    return out
