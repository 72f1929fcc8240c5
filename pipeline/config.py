"""Study configuration: one typed, validated settings object per step.

The default study file is ``pipeline/config/equilibres.toml``. A user file given with ``--config``
is merged *over* the defaults (so it only needs the keys it changes); unknown keys and out-of-range
values are rejected with a message naming the key, what was expected and what was found.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

DEFAULT_CONFIG_PATH = Path(__file__).parent / "config" / "equilibres.toml"


class ConfigError(ValueError):
    """A study configuration that cannot be used; the message says which key and what to do."""


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class StudySettings(_Settings):
    name: str = "ÉQUILIBRES"
    article51_label: str = ""
    inclusion_start: dt.date = dt.date(2020, 1, 1)
    inclusion_end: dt.date = dt.date(2023, 12, 31)
    claims_start: dt.date = dt.date(2019, 1, 1)
    claims_end: dt.date = dt.date(2023, 12, 31)
    flux_lag_months: int = Field(6, ge=0, le=24)
    regions: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("regions")
    @classmethod
    def _dpt_codes(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for region, dpts in v.items():
            for d in dpts:
                if not (isinstance(d, str) and len(d) == 3):
                    raise ValueError(
                        f"département codes are 3-character strings like '075' or '02A'; "
                        f"region {region!r} has {d!r}"
                    )
        return v

    @model_validator(mode="after")
    def _windows(self) -> StudySettings:
        if self.inclusion_start > self.inclusion_end:
            raise ValueError("inclusion_start must be on or before inclusion_end")
        if self.claims_start > self.inclusion_start:
            raise ValueError("claims_start must be on or before inclusion_start (history is needed)")
        if self.claims_end < self.inclusion_end:
            raise ValueError("claims_end must be on or after inclusion_end")
        return self

    @property
    def departements(self) -> list[str]:
        return sorted({d for dpts in self.regions.values() for d in dpts})

    def region_of(self, dpt: str) -> str | None:
        for region, dpts in self.regions.items():
            if dpt in dpts:
                return region
        return None


class ExtractSettings(_Settings):
    ir_ben_r: str = "IR_BEN_R"
    ir_imb_r: str = "IR_IMB_R"
    er_prs_f: str = "ER_PRS_F"
    mco_b: str = "T_MCO{aa}B"
    mco_c: str = "T_MCO{aa}C"
    mco_valo: str = "T_MCO{aa}VALO"
    roster: str = "EQUILIBRES_ROSTER"
    csv_separator: str = ";"
    csv_encodings: list[str] = Field(default_factory=lambda: ["utf-8", "latin-1"])


class EngineSettings(_Settings):
    name: Literal["duckdb", "spark"] = "duckdb"
    duckdb_memory_limit: str = "8GB"
    duckdb_threads: int = Field(2, ge=1, le=256)
    duckdb_temp_directory: str = ""
    spark_master: str = "local[2]"
    spark_driver_memory: str = "6g"


class CategoryRule(_Settings):
    """A spending category: a line belongs to it when every listed criterion holds (OR within a list)."""

    label_fr: str
    label_en: str
    prs_nat_ref: list[int] = Field(default_factory=list)
    pse_act_nat: list[int] = Field(default_factory=list)
    pse_spe_cod: list[int] = Field(default_factory=list)


class StayCategoryRule(_Settings):
    """A category of MCO stays kept apart from the hospital perimeter: a stay belongs to it when its
    GRG_GHM starts with one of the listed prefixes (e.g. "02C05", cataract surgery)."""

    label_fr: str
    label_en: str
    grg_ghm_prefixes: list[str] = Field(min_length=1)

    @field_validator("grg_ghm_prefixes")
    @classmethod
    def _prefixes(cls, v: list[str]) -> list[str]:
        bad = [p for p in v if not (1 <= len(p) <= 6 and p.isalnum())]
        if bad:
            raise ValueError(f"GRG_GHM prefixes are 1 to 6 letters or digits (GHM codes have 6); got {bad}")
        return [p.upper() for p in v]


class ExperimentPayments(_Settings):
    prs_nat_ref: list[int] = Field(default_factory=lambda: [9951])
    hourly_rate_eur: float = Field(54.0, gt=0)


class CleaningSettings(_Settings):
    drop_dpn_qlf_71: bool = True
    drop_bse_prs_nat_0: bool = True
    net_regularisations: bool = True
    apply_flux_window: bool = True
    drop_ghm_90: bool = True
    drop_bad_return_codes: bool = True
    drop_duplicate_geographic_finess: bool = True
    duplicate_geographic_finess: list[str] = Field(default_factory=list)
    death_claim_tolerance_days: int = Field(1, ge=0)
    # Days before death for which kept DCIR spending is also written per care day (clean/eol_daily),
    # so that end-of-life windows are measured in days from EXE_SOI_DTD; must cover
    # indicators.eol_window_days.
    eol_daily_days: int = Field(183, ge=1, le=730)
    # Plausibility (docs/cleaning.md, "Plausibility rules"): an ER_PRS_F line whose |BSE_REM_MNT| is
    # above the maximum of its spending category (max_line_amount_by_category, else max_line_amount_eur)
    # is dropped and audited (amount_above_maximum); so is a line whose care starts more than
    # max_care_after_flux_days after its flux date (care_after_flux). A contract column whose share of
    # missing values exceeds max_null_share stops validate and cleaning (column_mostly_null); a column
    # the contract lets be missing is noted by validate above max_null_share_nullable. Rows of a table
    # that do not link to the table they refer to (pipeline/table_links.py) stop validate above
    # max_unlinked_share (max_unlinked_roster_share for the roster), and are noted below it.
    max_line_amount_eur: float = Field(100_000.0, gt=0)
    max_line_amount_by_category: dict[str, float] = Field(default_factory=dict)
    max_care_after_flux_days: int = Field(31, ge=0, le=3660)
    max_null_share: float = Field(0.5, gt=0, le=1)
    max_null_share_nullable: float = Field(0.95, ge=0, le=1)
    max_unlinked_share: float = Field(0.05, ge=0, le=1)
    max_unlinked_roster_share: float = Field(0.10, ge=0, le=1)
    categories: dict[str, CategoryRule] = Field(default_factory=dict)
    # MCO stays counted apart from the "hospital" perimeter (negative-control stays such as elective
    # cataract surgery), by GRG_GHM prefix; the first matching category wins, the rest are "hospital".
    stay_categories: dict[str, StayCategoryRule] = Field(default_factory=dict)
    experiment: ExperimentPayments = Field(default_factory=ExperimentPayments)
    ald_groups: dict[str, list[int]] = Field(default_factory=dict)

    @property
    def category_names(self) -> list[str]:
        """Categories of DCIR lines in assignment order, then 'other' and 'hospital'."""
        return [*self.categories.keys(), "other"]

    @property
    def stay_category_names(self) -> list[str]:
        """Categories of MCO stays outside the hospital perimeter (``stay_categories``), in order."""
        return list(self.stay_categories.keys())

    def max_line_amount(self, category: str) -> float:
        """The plausible maximum |BSE_REM_MNT| of one ER_PRS_F line of spending ``category``."""
        return float(self.max_line_amount_by_category.get(category, self.max_line_amount_eur))

    @model_validator(mode="after")
    def _amount_limits_name_categories(self) -> CleaningSettings:
        unknown = sorted(set(self.max_line_amount_by_category) - set(self.category_names))
        bad = {k: v for k, v in self.max_line_amount_by_category.items() if not v > 0}
        if unknown or bad:
            raise ValueError(
                f"cleaning.max_line_amount_by_category keys must be spending categories "
                f"({', '.join(self.category_names)}) and its values amounts > 0 (euros); got unknown {unknown}, "
                f"not positive {bad}")
        return self

    @model_validator(mode="after")
    def _stay_categories_are_distinct(self) -> CleaningSettings:
        clash = [c for c in self.stay_categories if c in (*self.category_names, "hospital")]
        bad = [c for c in self.stay_categories if not (c.isidentifier() and c == c.lower())]
        if clash or bad:
            raise ValueError(
                f"cleaning.stay_categories names must be lower-case identifiers distinct from the spending "
                f"categories and 'hospital'; got {clash + bad}")
        return self


class CohortSettings(_Settings):
    control_index: Literal["quarterly", "inclusion_date"] = "quarterly"
    history_months: int = Field(12, ge=1, le=60)
    min_prior_nursing_cost: float = Field(1.0, ge=0)
    nursing_categories: list[str] = Field(
        default_factory=lambda: ["nursing_acts", "nurse_travel", "nurse_assessment", "experiment"]
    )
    age_band_width: int = Field(5, ge=1, le=50)
    max_age_band: int = Field(95, ge=1, le=120)
    complex_flags: list[str] = Field(default_factory=list)


class MatchingSettings(_Settings):
    method: Literal["nearest", "optimal", "propensity", "cem"] = "nearest"
    # Time zero of a matched control: "treated_index" = the index date of the treated patient it is
    # matched to (risk-set matching: the control must still be at risk on that day);
    # "candidate_index" = its own candidate index date (the first day of the index quarter), kept only
    # to show what misaligned index dates do.
    time_zero: Literal["treated_index", "candidate_index"] = "treated_index"
    # Column identifying the person behind a cohort row: without replacement a person serves at most
    # one matched set; with replacement at most max_reuse sets (0 = unlimited).
    person: str = "person_id"
    # Risk sets are matched one period at a time in chronological order (a person used in one period
    # is no longer available later); "" matches all periods at once.
    period: str = "index_quarter"
    exact: list[str] = Field(default_factory=lambda: ["BEN_SEX_COD", "age_band", "ald", "dpt", "index_quarter"])
    on: str = "prior_nursing_cost"
    transform: Literal["none", "log1p"] = "log1p"
    caliper: float | None = Field(0.2, gt=0)
    # "sd_all": caliper × SD of the distance over all units kept (MatchIt's std.caliper = TRUE).
    caliper_scale: Literal["sd", "sd_all", "absolute", "relative"] = "sd"
    ratio: int = Field(1, ge=1, le=20)
    replace: bool = False
    max_reuse: int = Field(0, ge=0)
    # "largest"/"smallest": treated units by decreasing/increasing distance (MatchIt's m.order).
    order: Literal["closest", "data", "random", "largest", "smallest"] = "closest"
    seed: int = 20240101
    balance_covariates: list[str] = Field(default_factory=list)
    # MatchIt compatibility (docs/matching.md, "Coming from MatchIt"); written to params.json only when
    # set, so the outputs of the study's default design do not change. method = "propensity" only:
    # ps_covariates ([] = exact + on), ps_model ("glm" = R's unpenalised glm), ps_scale ("probability" =
    # MatchIt's distance, "logit" = link "linear.logit"); discard: common support on the distance.
    ps_covariates: list[str] = Field(default_factory=list)
    ps_model: Literal["penalised", "glm"] = "penalised"
    ps_scale: Literal["logit", "probability"] = "logit"
    discard: Literal["none", "both", "treated", "control"] = "none"

    @model_serializer(mode="wrap")
    def _omit_unset_matchit_keys(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for key, default in MATCHIT_KEY_DEFAULTS.items():
            if key in data and data[key] == default:
                del data[key]
        return data


#: The [matching] keys of MatchIt compatibility and their defaults (left out of dumps when unchanged).
MATCHIT_KEY_DEFAULTS: dict[str, Any] = {"ps_covariates": [], "ps_model": "penalised", "ps_scale": "logit",
                                        "discard": "none"}


class SweepSettings(_Settings):
    caliper: list[float] = Field(default_factory=lambda: [0.05, 0.1, 0.2, 0.5])
    ratio: list[int] = Field(default_factory=lambda: [1, 2])
    method: list[Literal["nearest", "optimal", "propensity", "cem"]] = Field(
        default_factory=lambda: ["nearest", "optimal"]
    )
    age_band_width: list[int] = Field(default_factory=lambda: [5, 10])
    transform: list[Literal["none", "log1p"]] = Field(default_factory=lambda: ["log1p", "none"])
    replace: list[bool] = Field(default_factory=lambda: [False])
    max_specs: int = Field(64, ge=1, le=10_000)
    # Processes computing the specifications not in the cache: 0 = the CPUs available, at most 2; 1 = one
    # process (sequential). The rows are the same whatever the number.
    workers: int = Field(0, ge=0, le=64)


class IndicatorSettings(_Settings):
    # End-of-life window: the eol_window_days days before death (death day included), from care
    # dates (EXE_SOI_DTD) and stay dates prorated by day.
    eol_window_days: int = Field(90, ge=7, le=730)
    followup: Literal["itt", "per_protocol"] = "itt"
    perimeter: list[str] = Field(default_factory=list)
    bootstrap_replicates: int = Field(999, ge=99, le=100_000)
    ci_level: float = Field(0.95, gt=0.5, lt=1)
    seed: int = 20240101
    did_months: int = Field(12, ge=1, le=36)
    # Months before index compared with the did_months after it (difference-in-differences).
    did_pre_months: int = Field(12, ge=1, le=36)
    # Replicates for the headline effects of each `equilibres sweep` specification (speed).
    sweep_replicates: int = Field(199, ge=49, le=100_000)


class SensitivitySettings(_Settings):
    """Sensitivity analyses of the headline effects (issue 14), run after the indicators."""

    # Negative-control outcomes: spending categories (``cleaning.categories`` names, or "hospital") or
    # stay categories (``cleaning.stay_categories``: stays per patient-year) the programme cannot plausibly change; each is estimated with the headline design and their
    # spread calibrates the headline intervals (docs/indicators.md, "Negative controls").
    negative_controls: list[str] = Field(default_factory=list)

    # Verdict thresholds per headline (docs/indicators.md, "Sensitivity analyses"). Balance: every
    # covariate's |standardised difference| after matching at most max_abs_smd. Overlap: at least
    # min_matched_share of the eligible ÉQUILIBRES patients found a control. Pre-trends: the event
    # study's joint test of no pre-index difference does not reject at pretrend_alpha. Negative
    # controls: |mean systematic error| (log ratio scale) at most max_systematic_error. Power: the
    # minimum detectable effect (two-sided alpha, power) at most min_effect_of_interest[headline id],
    # in the headline's unit (relative reduction for the ratio headlines).
    max_abs_smd: float = Field(0.1, gt=0, le=2)
    min_matched_share: float = Field(0.7, ge=0, le=1)
    pretrend_alpha: float = Field(0.05, gt=0, lt=1)
    max_systematic_error: float = Field(0.1, ge=0)
    alpha: float = Field(0.05, gt=0, lt=0.5)
    power: float = Field(0.8, gt=0.5, lt=1)
    min_effect_of_interest: dict[str, float] = Field(default_factory=dict)
    # Event study: months relative to the index month shown (before, after) and bootstrap replicates
    # of its bands; survival and cumulative-incidence curves: months shown and replicates.
    event_months_before: int = Field(12, ge=2, le=36)
    event_months_after: int = Field(24, ge=1, le=60)
    event_replicates: int = Field(199, ge=49, le=100_000)
    curve_months: int = Field(36, ge=1, le=120)
    curve_replicates: int = Field(199, ge=49, le=100_000)

    @field_validator("negative_controls")
    @classmethod
    def _distinct_controls(cls, v: list[str]) -> list[str]:
        dup = sorted({c for c in v if v.count(c) > 1})
        if dup:
            raise ValueError(f"negative-control outcomes are listed once each; {dup} are repeated")
        if v and len(v) < 3:
            raise ValueError(
                f"at least 3 negative-control outcomes are needed to estimate a systematic-error spread "
                f"(5 or more recommended); got {len(v)}: {v}"
            )
        return v


class EconomicsSettings(_Settings):
    programme_investment_eur: float = Field(374000.0, ge=0)
    hourly_rate_eur: float = Field(54.0, gt=0)
    scenario_hourly_rates: list[float] = Field(default_factory=lambda: [48.0, 54.0, 60.0])
    scenario_investment: list[float] = Field(default_factory=lambda: [374000.0])
    scenario_caseload_factor: list[float] = Field(default_factory=lambda: [1.0])
    # Calendar year whose treated patient-years are the caseload of "savings per year" (0 = the year
    # of study.claims_end).
    caseload_year: int = Field(0, ge=0, le=2100)


class SurveySettings(_Settings):
    proportion_ci: Literal["wilson", "clopper-pearson"] = "wilson"
    small_n_threshold: int = Field(30, ge=1)
    ci_level: float = Field(0.95, gt=0.5, lt=1)
    codebooks: list[str] = Field(default_factory=list)


class ReportSettings(_Settings):
    lang: Literal["fr", "en"] = "fr"
    min_cell_count: int = Field(10, ge=1, le=1000)
    title_fr: str = "Évaluation de l'expérimentation ÉQUILIBRES — reproduction"
    title_en: str = "Evaluation of the ÉQUILIBRES experiment — reproduction"
    agreement_tolerance: float = Field(0.10, ge=0, le=1)


class StudyConfig(_Settings):
    """The whole study configuration: one settings object per step."""

    study: StudySettings = Field(default_factory=StudySettings)
    extract: ExtractSettings = Field(default_factory=ExtractSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    cleaning: CleaningSettings = Field(default_factory=CleaningSettings)
    cohort: CohortSettings = Field(default_factory=CohortSettings)
    matching: MatchingSettings = Field(default_factory=MatchingSettings)
    sweep: SweepSettings = Field(default_factory=SweepSettings)
    indicators: IndicatorSettings = Field(default_factory=IndicatorSettings)
    economics: EconomicsSettings = Field(default_factory=EconomicsSettings)
    sensitivity: SensitivitySettings = Field(default_factory=SensitivitySettings)
    surveys: SurveySettings = Field(default_factory=SurveySettings)
    report: ReportSettings = Field(default_factory=ReportSettings)
    published: dict[str, float] = Field(default_factory=dict)
    # Directory of the file this configuration was loaded from (codebook paths are relative to it).
    base_dir: str = Field(default=str(DEFAULT_CONFIG_PATH.parent), exclude=True)

    @model_validator(mode="after")
    def _negative_controls_are_categories(self) -> StudyConfig:
        known = [*self.cleaning.category_names, "hospital"]
        stays = self.cleaning.stay_category_names
        unknown = [c for c in self.sensitivity.negative_controls if c not in known and c not in stays]
        if unknown:
            raise ValueError(
                f"sensitivity.negative_controls names {unknown}, which are neither spending categories "
                f"({', '.join(known)}) nor stay categories ({', '.join(stays) or 'none'}): add them under "
                f"[cleaning.categories] or [cleaning.stay_categories] or fix the list"
            )
        in_perimeter = [c for c in self.indicators.perimeter if c in stays]
        if in_perimeter:
            raise ValueError(
                f"indicators.perimeter names the stay categories {in_perimeter}: their stays are counted "
                f"apart from the hospital perimeter (cleaning.stay_categories); remove them from the perimeter"
            )
        perimeter = self.indicators.perimeter or known  # an empty perimeter counts every category
        overlap = [c for c in self.sensitivity.negative_controls if c in perimeter]
        if overlap:
            raise ValueError(
                f"sensitivity.negative_controls {overlap} are in indicators.perimeter: a negative control "
                f"must stay outside the headline spending perimeter; remove it from one of the two lists"
            )
        return self

    @model_validator(mode="after")
    def _eol_daily_covers_window(self) -> StudyConfig:
        if self.cleaning.eol_daily_days < self.indicators.eol_window_days:
            raise ValueError(
                f"indicators.eol_window_days ({self.indicators.eol_window_days}) is longer than "
                f"cleaning.eol_daily_days ({self.cleaning.eol_daily_days}), the days before death kept "
                f"per care day: raise cleaning.eol_daily_days (and re-run `equilibres clean`)"
            )
        return self

    # -- helpers -------------------------------------------------------------------------------
    def section(self, name: str) -> dict[str, Any]:
        """The parameters of one step as plain JSON-able data (written next to its outputs)."""
        return json.loads(getattr(self, name).model_dump_json())

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())

    def fingerprint(self, *sections: str) -> str:
        """A stable hash of the named sections (all if none), used as a cache key."""
        data = self.to_dict()
        if sections:
            data = {s: data[s] for s in sections}
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> StudyConfig:
        """A copy with ``{section: {key: value}}`` overrides applied (None values are ignored)."""
        data = self.to_dict()
        for section, values in overrides.items():
            for key, value in values.items():
                if value is not None:
                    data.setdefault(section, {})[key] = value
        return _validate(data, source="command-line options", base_dir=self.base_dir)

    def codebook_paths(self) -> list[Path]:
        return [Path(self.base_dir) / p for p in self.surveys.codebooks]


def deep_merge(
    base: dict[str, Any], over: Mapping[str, Any], replaced: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """``over`` merged into ``base`` table by table; tables named in ``replaced`` are taken whole."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict) and k not in replaced:
            out[k] = deep_merge(out[k], v, replaced)
        else:
            out[k] = v
    return out


# Tables that a user file replaces whole rather than merging key by key (a study's own code lists).
_REPLACED_TABLES = frozenset({"regions", "categories", "stay_categories", "ald_groups",
                              "max_line_amount_by_category"})


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"Invalid study configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        found = e.get("input")
        found_s = repr(found) if not isinstance(found, dict) else "a table"
        if e["type"] == "extra_forbidden":
            lines.append(f"  - unknown key '{key}' (found {found_s}): remove it or check its spelling")
        else:
            lines.append(f"  - '{key}': {e['msg']} (found {found_s})")
    lines.append("See README.md, section 'Configuration', for every key and its default.")
    return "\n".join(lines)


def _validate(data: dict[str, Any], source: str, base_dir: str) -> StudyConfig:
    data = {k: v for k, v in data.items() if k != "base_dir"}
    try:
        return StudyConfig(**data, base_dir=base_dir)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def config_from_dict(data: dict[str, Any], source: str) -> StudyConfig:
    """Settings from plain data (e.g. the sections a step saved in its params.json), defaults filling
    the rest; errors name ``source``."""
    return _validate(data, source=source, base_dir=str(DEFAULT_CONFIG_PATH.parent))


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"Configuration file {path} does not exist: give an existing TOML file to --config.")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"Configuration file {path} is not valid TOML: {err}. Fix the syntax.") from None


def load_config(path: str | Path | None = None) -> StudyConfig:
    """Load the default study configuration, with the file at ``path`` merged over it."""
    data = _read_toml(DEFAULT_CONFIG_PATH)
    base_dir = str(DEFAULT_CONFIG_PATH.parent)
    source = str(DEFAULT_CONFIG_PATH)
    if path is not None:
        path = Path(path)
        user = _read_toml(path)
        data = deep_merge(data, user, _REPLACED_TABLES)
        source = str(path)
        # Codebooks named by a user file are relative to that file.
        if "surveys" in user and "codebooks" in user["surveys"]:
            base_dir = str(path.parent.resolve())
    return _validate(data, source=source, base_dir=base_dir)


def write_params(config: StudyConfig, path: Path, sections: list[str] | None = None, **extra: Any) -> None:
    """Write the parameters actually used next to an output (atomically)."""
    from pipeline.io import atomic_write_text

    data = config.to_dict() if sections is None else {s: config.section(s) for s in sections}
    data.update(extra)
    atomic_write_text(path, json.dumps(data, indent=2, default=str, ensure_ascii=False))
