"""Planted-truth parameters of the synthetic extract (one typed object, loaded from a TOML file).

`truth_default.toml` is calibrated so that the *realised* effects written to truth.json are close to
the published figures of BILAN.md; `truth_null.toml` plants no effect at all; `truth_mortality.toml`
adds a lower death hazard while included; `truth_early.toml` concentrates the effect on stays in the
first weeks after inclusion (an effect that varies with time since inclusion). A user file is merged
over the default file, so it only needs the keys it changes.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator

from pipeline.config import deep_merge
from pipeline.io import PipelineError

HERE = Path(__file__).parent
DEFAULT_TRUTH = HERE / "truth_default.toml"
NULL_TRUTH = HERE / "truth_null.toml"
MORTALITY_TRUTH = HERE / "truth_mortality.toml"
EARLY_TRUTH = HERE / "truth_early.toml"


class TruthError(PipelineError):
    """A planted-truth file that cannot be used."""


class _P(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PopulationParams(_P):
    treated_full_scale: int = Field(25800, ge=1)
    # Home-nursing patients who never joined, per ÉQUILIBRES patient (order of magnitude: see
    # truth_default.toml and docs/extract.md).
    control_ratio: float = Field(20.0, gt=0)
    outside_share: float = Field(0.04, ge=0, lt=0.5)
    inclusion_year_weights: dict[str, float] = Field(default_factory=dict)
    female_share: float = Field(0.60, ge=0, le=1)
    paediatric_share: float = Field(0.03, ge=0, le=0.5)
    adult_under60_share: float = Field(0.12, ge=0, le=1)
    elderly_age_mean: float = 81.0
    elderly_age_sd: float = 8.0
    any_ald_share: float = Field(0.70, ge=0, le=1)
    ald_weights: dict[str, float] = Field(default_factory=dict)
    dpt_weights: dict[str, float] = Field(default_factory=dict)
    outside_dpts: list[str] = Field(default_factory=lambda: ["013", "069", "033", "044", "067", "971", "974", "999", "099"])
    corsica_variants: list[str] = Field(default_factory=lambda: ["02A", "02B", "201", "202", "020", "209"])
    corsica_share_of_outside: float = Field(0.25, ge=0, le=1)
    teams_full_scale: int = Field(35, ge=1)
    # Turnover of the active file: time from inclusion to a discharge alive ~ exponential of this mean
    # (months; 0 = nobody leaves alive). A death before the planned discharge cancels it (the patient
    # dies included). Calibrated to the published caseload (docs/extract.md §4, "Turnover").
    mean_months_to_discharge: float = Field(9.4, ge=0, le=600)


class SelectionParams(_P):
    log_nursing_mean: float = 4.7
    log_nursing_sd: float = Field(0.6, gt=0)
    log_nursing_age_slope: float = 0.10
    log_nursing_ald: float = 0.25
    # Controls' (and on-support treated) latent nursing intensity is truncated at this z-score, so that
    # planted off-support patients lie beyond every control of their exact stratum.
    truncation_z: float = 2.2
    treated_log_nursing_shift: float = 0.25
    complex_share: float = Field(0.35, ge=0, le=1)
    off_support_share_complex: float = Field(0.30, ge=0, le=1)
    off_support_margin: list[float] = Field(default_factory=lambda: [0.9, 1.6])
    complex_flag_weights: dict[str, float] = Field(default_factory=dict)
    # Unobserved confounding: treated frailty ~ N(confounding, 1), controls ~ N(0, 1); frailty
    # multiplies the outcomes listed in [frailty_effects] (never the pre-index nursing intensity).
    confounding: float = Field(0.0, ge=0, le=3)


class BaselineParams(_P):
    """Untreated expected spending per alive patient-month (€, reimbursed) at reference covariates."""

    nurse_travel_ratio: float = 0.17
    nurse_assessment: float = 7.0
    gp: float = 18.0
    specialist: float = 11.0
    pharmacy: float = 52.0
    other: float = 27.0
    age_slope: float = 0.05
    ald_factor: float = 1.35
    nursing_slope: float = 0.25
    monthly_death_hazard: float = 0.0125
    death_age_slope: float = 0.35
    death_ald: float = 0.25
    death_nursing: float = 0.35
    hosp_monthly_rate: float = 0.0075
    hosp_cost_mean: float = 4300.0
    hosp_los_mean: float = Field(6.0, ge=1)
    eol_hosp_los_factor: float = Field(1.3, ge=1)  # longer stays in the model's end-of-life months
    seance_share: float = 0.02
    seance_monthly_rate: float = 1.5
    seance_cost_mean: float = 420.0
    # End of life: multipliers for the death month and the months before it (index 0 = death month).
    eol_nursing: list[float] = Field(default_factory=lambda: [4.0, 2.8, 2.0])
    eol_other: list[float] = Field(default_factory=lambda: [2.0, 1.6, 1.3])
    eol_hosp_rate: list[float] = Field(default_factory=lambda: [6.0, 4.0, 3.0])
    eol_hosp_cost_mean: float = 12000.0
    final_stay_prob: float = 0.50
    final_stay_cost_mean: float = 15000.0
    final_stay_los_mean: float = Field(10.0, ge=1)


# Effects on the fee-for-service nursing categories the experiment's flat-rate payments replace: they
# exist only while the patient is included (the payments stop at discharge).
SUBSTITUTION_EFFECTS = ("nursing_acts", "nurse_travel", "nurse_assessment", "experiment_share",
                        "experiment_share_eol")
# Effects on the patient's health and use of the rest of the system: they persist after a discharge
# alive by the share ``health_effects_after_discharge``.
HEALTH_EFFECTS = ("gp", "specialist", "pharmacy", "other", "hosp_rate", "hosp_rate_eol", "final_stay",
                  "mortality", "nursing_after_discharge")


class EffectParams(_P):
    """Multiplicative effects of ÉQUILIBRES (1 = no effect); eol_* in the model's end-of-life months.

    Substitution effects (``SUBSTITUTION_EFFECTS``) apply while included only. Health effects
    (``HEALTH_EFFECTS``) apply while included and, after a discharge alive, as
    ``1 + health_effects_after_discharge x (effect - 1)``: 1 = they persist (patients leave because
    they regained autonomy), 0 = they stop at discharge. ``mortality`` multiplies the death hazard
    the same way (piecewise-exponential death time). ``nursing_after_discharge`` is the fee-for-service
    nursing need after a discharge alive relative to the counterfactual (the regained autonomy),
    outside the model's end-of-life months.
    """

    nursing_acts: float = 0.10
    nurse_travel: float = 0.10
    nurse_assessment: float = 0.20
    experiment_share: float = 0.37
    experiment_share_eol: float = 4.10
    gp: float = 0.90
    specialist: float = 0.90
    pharmacy: float = 0.85
    other: float = 0.85
    hosp_rate: float = 0.55
    hosp_rate_eol: float = 0.77
    final_stay: float = 0.77
    mortality: float = Field(1.0, gt=0, le=5)
    nursing_after_discharge: float = Field(0.52, ge=0)
    health_effects_after_discharge: float = Field(1.0, ge=0, le=1)
    # An effect on stays that varies with time since inclusion (off when early_days = 0): during the
    # first ``early_days`` days after inclusion the full-stay hazard is the untreated one x
    # ``early_hosp_rate``, in place of hosp_rate / hosp_rate_eol (truth_early.toml: the programme's
    # nurses prevent most admissions while they set up care). Left out of truth.json's params when off,
    # so the shipped truth files give byte-identical extracts.
    early_days: int = Field(0, ge=0, le=730)
    early_hosp_rate: float = Field(1.0, ge=0, le=50)

    @model_serializer(mode="wrap")
    def _omit_early_when_off(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if self.early_days == 0 and self.early_hosp_rate == 1.0:
            data.pop("early_days", None)
            data.pop("early_hosp_rate", None)
        return data

    @property
    def has_early_window(self) -> bool:
        """Whether the stay hazard differs in the first ``early_days`` days after inclusion."""
        return self.early_days > 0

    def after_discharge(self, effect: float) -> float:
        """A health effect's multiplier after a discharge alive."""
        return 1.0 + self.health_effects_after_discharge * (effect - 1.0)


class FrailtyEffects(_P):
    hospital: float = 0.35
    pharmacy: float = 0.15
    other: float = 0.20
    gp: float = 0.10


class NegativeControlOutcome(_P):
    """A negative-control outcome planted in ER_PRS_F (codes: catalog.NEGATIVE_CONTROL_KINDS), or in
    PMSI MCO for ``cataract`` (catalog.CATARACT_GHM; ``monthly_claims`` is then stays): the programme
    never changes it; covariates and the unobserved frailty do."""

    # expected claims (stays) per alive person-month at reference covariates (80 years, man, no ALD, frailty 0)
    monthly_claims: float = Field(gt=0, le=5)
    age_slope: float = 0.0          # log-multiplier per 10 years of age around 80
    female: float = Field(1.0, gt=0)
    ald: float = Field(1.0, gt=0)
    frailty: float = 0.0            # log-multiplier per SD of the unobserved frailty


class DefectParams(_P):
    dpn_qlf_71_share: float = 0.015
    regularisation_share: float = 0.012
    regularisation_correction_share: float = 0.4
    bse_prs_nat_0_share: float = 0.004
    cpl_maj_top_2_share_nursing: float = 0.08
    pre_window_lines_share: float = 0.002
    ald_open_ended_share: float = 0.25
    ald_lifetime_2099_share: float = 0.15
    ald_expired_share_no_ald: float = 0.10
    ghm_90_share: float = 0.01
    duplicate_finess_share: float = 0.02
    bad_return_code_share: float = 0.015
    x_nir_share: float = 0.005
    multi_nir_share: float = 0.015
    same_nir_other_rank_share: float = 0.2
    unknown_sex_share: float = 0.002
    unknown_birth_share: float = 0.002
    death_before_birth_share: float = 0.0005
    death_before_claim_share: float = 0.001
    pmsi_only_death_share: float = 0.02


class TruthParams(_P):
    name: str = "default"
    description: str = ""
    population: PopulationParams = Field(default_factory=PopulationParams)
    selection: SelectionParams = Field(default_factory=SelectionParams)
    baseline: BaselineParams = Field(default_factory=BaselineParams)
    effects: EffectParams = Field(default_factory=EffectParams)
    frailty_effects: FrailtyEffects = Field(default_factory=FrailtyEffects)
    # keyed by the cleaning category each one lands in (sensitivity.negative_controls)
    negative_controls: dict[str, NegativeControlOutcome] = Field(default_factory=dict)
    defects: DefectParams = Field(default_factory=DefectParams)

    @model_validator(mode="after")
    def _lists(self) -> TruthParams:
        b = self.baseline
        if not (len(b.eol_nursing) == len(b.eol_other) == len(b.eol_hosp_rate)):
            raise ValueError("baseline.eol_nursing, eol_other and eol_hosp_rate must have the same length")
        lo, hi = self.selection.off_support_margin
        if not 0 < lo <= hi:
            raise ValueError("selection.off_support_margin must be [low, high] with 0 < low <= high")
        return self

    @property
    def eol_months(self) -> int:
        return len(self.baseline.eol_nursing)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise TruthError(f"Truth file {path} does not exist: give an existing TOML file to --truth "
                         f"(e.g. {DEFAULT_TRUTH} or {NULL_TRUTH}).")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise TruthError(f"Truth file {path} is not valid TOML: {err}. Fix the syntax.") from None


def load_truth(path: Path | None = None, confounding: float | None = None) -> TruthParams:
    """The default planted truth, with ``path`` merged over it and ``confounding`` overriding it."""
    data = _read(DEFAULT_TRUTH)
    if path is not None and Path(path).resolve() != DEFAULT_TRUTH.resolve():
        data = deep_merge(data, _read(Path(path)))
    if confounding is not None:
        data.setdefault("selection", {})["confounding"] = confounding
    try:
        return TruthParams(**data)
    except ValidationError as err:
        lines = [f"Invalid planted-truth file {path or DEFAULT_TRUTH}:"]
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"])
            lines.append(f"  - '{key}': {e['msg']} (found {e.get('input')!r})")
        lines.append(f"See {DEFAULT_TRUTH} for every key and its default.")
        raise TruthError("\n".join(lines)) from None
