"""What a synthetic DCIR line / PMSI stay looks like: prestation codes, unit amounts, professionals.

Codes are real SNDS codes (IR_NAT_V, IR_ACT_V, IR_SPE_V); unit amounts are rounded reimbursed
amounts (BSE_REM_MNT per unit), chosen for plausible volumes, not tariffs. The experiment code and
hourly rate come from the study configuration, not from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LineKind:
    """One spending category of ER_PRS_F: which codes, at which unit amount, billed by whom."""

    category: str
    codes: tuple[int, ...]
    probs: tuple[float, ...]
    unit_eur: tuple[float, ...]
    pse_act_nat: tuple[int, ...]
    pse_spe_cod: tuple[int, ...]
    spe_probs: tuple[float, ...] | None = None
    max_lines_per_month: int = 1
    span_days: int = 0
    reimbursement_rate_no_ald: float = 0.7
    extra: dict = field(default_factory=dict)

    @property
    def mean_unit_eur(self) -> float:
        return float(sum(p * u for p, u in zip(self.probs, self.unit_eur, strict=True)))


DCIR_KINDS: tuple[LineKind, ...] = (
    LineKind("nursing_acts", (3111, 3112, 3115), (0.55, 0.42, 0.03), (9.45, 7.95, 25.00), (24,), (0,),
             max_lines_per_month=2, span_days=14, reimbursement_rate_no_ald=0.6),
    LineKind("nurse_travel", (1848, 1811), (0.85, 0.15), (2.50, 1.20), (24,), (0,),
             max_lines_per_month=1, span_days=14, reimbursement_rate_no_ald=0.6),
    LineKind("nurse_assessment", (3106, 3107, 3108), (0.3, 0.4, 0.3), (28.00, 18.00, 10.00), (24,), (0,),
             max_lines_per_month=1),
    LineKind("gp", (1111, 1110, 1211), (0.50, 0.20, 0.30), (17.50, 17.50, 24.00), (0,), (1, 22, 23),
             spe_probs=(0.9, 0.05, 0.05), max_lines_per_month=2),
    LineKind("specialist", (1112, 1111), (0.85, 0.15), (21.00, 15.00), (0,),
             (3, 6, 7, 9, 12, 13, 14, 15, 32, 35, 37),
             spe_probs=(0.22, 0.05, 0.08, 0.06, 0.04, 0.05, 0.08, 0.12, 0.12, 0.10, 0.08), max_lines_per_month=2),
    LineKind("pharmacy", (3311, 3312, 3313, 3341), (0.35, 0.10, 0.40, 0.15), (32.00, 6.00, 9.00, 1.50), (50,),
             (0,), max_lines_per_month=1, reimbursement_rate_no_ald=0.65),
    LineKind("other", (3122, 3211, 4214, 4212, 3512), (0.30, 0.30, 0.15, 0.05, 0.20),
             (15.00, 12.00, 45.00, 80.00, 25.00), (26, 30, 56, 55, 60), (0,), max_lines_per_month=1),
)

# Negative-control outcomes (truth [negative_controls], sensitivity.negative_controls): care the programme
# cannot change, one line per claim (PRS_ACT_QTE 1). Codes from IR_NAT_V; PSE_ACT_NAT from IR_ACT_V
# (19 dental surgeon, 64 optical supplier, 65 hearing-aid supplier).
NEGATIVE_CONTROL_KINDS: tuple[LineKind, ...] = (
    LineKind("dental_care", (1451, 1453), (0.8, 0.2), (25.00, 30.00), (19,), (0,)),
    LineKind("dental_prosthesis", (1452, 1462, 1464, 1476), (0.3, 0.3, 0.2, 0.2), (180.0, 120.0, 200.0, 150.0),
             (19,), (0,)),
    LineKind("spectacles", (3510, 3508, 3504, 3506), (0.35, 0.25, 0.2, 0.2), (60.0, 100.0, 40.0, 30.0), (64,), (0,)),
    LineKind("contact_lenses", (3535,), (1.0,), (39.0,), (64,), (0,)),
    LineKind("hearing_aids", (3540, 3550, 5401), (0.6, 0.3, 0.1), (240.0, 30.0, 60.0), (65,), (0,)),
)

# Negative-control MCO stays (truth [negative_controls.cataract], cleaning.stay_categories.cataract):
# cataract surgery, GHM root 02C05 "Interventions sur le cristallin avec ou sans vitrectomie" (ATIH,
# Manuel des GHM, CMD 02): 02C05J ambulatory (same day, SEJ_NBJ 0) for most, severity levels 1-2 with
# 1-2 nights; valuation MNT_TOT_AM about the public GHS tariffs of these GHM.
CATARACT_CATEGORY = "cataract"
CATARACT_GHM = ("02C05J", "02C051", "02C052")
CATARACT_GHM_PROBS = (0.88, 0.09, 0.03)
CATARACT_NIGHTS = (0, 1, 2)
CATARACT_COST_EUR = (1450.0, 2150.0, 3050.0)

# Physiotherapy, biology, taxi, ambulance and devices are billed by different professionals: the
# professional of an "other" line follows its code.
OTHER_ACT_BY_CODE = {3122: 26, 3211: 30, 4214: 56, 4212: 55, 3512: 60}

# Experiment flat-rate payments are counted in quarter-hours; two statements a month at most.
EXPERIMENT_UNITS_PER_HOUR = 4
EXPERIMENT_MAX_LINES_PER_MONTH = 2

# GHM of ordinary full stays, séances (CMD 28) and grouping errors (CMD 90).
FULL_STAY_GHM = ("05M09T", "05M08T", "04M05T", "04M13T", "01M30T", "11M04T", "23M20T", "06M03T",
                 "08C48T", "10M02T", "05K10J", "04M20T", "01M13T", "17M06T")
SEANCE_GHM = {"chemo": "28Z07Z", "dialysis": "28Z04Z"}
ERROR_GHM = ("90Z00Z", "90Z01Z", "90Z03Z")

# ICD-10 code written in MED_MTF_COD for each ALD number.
ALD_ICD10 = {1: "I639", 5: "I500", 8: "E119", 12: "I10", 13: "I251", 14: "J961", 15: "G309", 16: "G20",
             19: "N185", 23: "F200", 25: "G35", 30: "C509", 31: "M069", 32: "R5381"}
ALD_ETM_NAT = {31: 43, 32: 45}  # others are on the list (41)

# Hospitals per département in the synthetic extract.
HOSPITALS_PER_DPT = 6
