"""The SNDS input contract as plain data: tables, columns, types, code lists (docs/CONTRACTS.md §1).

Kept free of pandera so that the generator and the readers can import it cheaply; the pandera
schemas of :mod:`pipeline.contract` are built from these specs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

# Sentinels of the SNDS: valid values, never violations.
SENTINEL_DATE = dt.date(1600, 1, 1)  # BEN_DCD_DTE alive/unknown, IMB_ALD_DTF open-ended
LIFETIME_ALD_END = dt.date(2099, 12, 31)  # IMB_ALD_DTF old lifetime ALDs
UNKNOWN_BIRTH_YEAR = "1600"  # BEN_NAI_ANN unknown
X_NIR = "xxxxxxxxxxxxxxxxx"
# Dates outside this range are impossible (typos such as 0021-01-01 or 2921-01-01).
MIN_DATE = dt.date(1600, 1, 1)
MAX_DATE = dt.date(2099, 12, 31)

# BEN_RES_DPT / EQL_DPT codes (IR_DPT_V): metropolitan 001-095 and Corsica in both conventions
# (02A/02B, 201/202, undetermined 020/209), overseas 971-979, 097/098, special 000, 099, 888,
# 991/992 abroad, 999 unknown.
DEPARTEMENT_CODES: frozenset[str] = frozenset(
    [f"{i:03d}" for i in range(0, 96) if i != 20]
    + ["02A", "02B", "201", "202", "020", "209", "097", "098", "099", "888",
       "971", "972", "973", "974", "975", "976", "977", "978", "979", "991", "992", "999"]
)
SEX_CODES = (0, 1, 2, 9)
IMB_ETM_NAT_CODES = (41, 43, 45)
SOR_MOD_CODES = ("0", "6", "7", "8", "9")
ENT_MOD_CODES = ("0", "6", "7", "8", "N")
RETURN_CODE_VALUES = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")
CPL_MAJ_TOP_CODES = (0, 1, 2)
# IR_DEP_V qualifiers.
DPN_QLF_CODES = (0, 11, 12, 13, 14, 15, 20, 30, 35, 40, 50, 61, 62, 63, 64, 65, 66, 71, 72, 99)


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: str  # 'str' | 'int' | 'float' | 'date'
    nullable: bool = False
    isin: tuple | frozenset | None = None
    min_value: float | None = None
    max_value: float | None = None
    str_length: int | tuple[int, int] | None = None  # exact length, or (min, max)
    regex: str | None = None
    description: str = ""


@dataclass(frozen=True)
class TableSpec:
    key: str                     # locate_tables key
    label: str                   # SNDS table name (T_MCOaaB for PMSI)
    columns: tuple[ColumnSpec, ...]
    unique: tuple[str, ...] = ()  # line key (duplicates are violations)
    per_year: bool = False
    config_attr: str = ""        # attribute of ExtractSettings holding the file stem
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _c(name: str, kind: str, **kw) -> ColumnSpec:
    return ColumnSpec(name, kind, **kw)


NIR = dict(str_length=17)
RET = dict(isin=RETURN_CODE_VALUES, nullable=True)

TABLES: dict[str, TableSpec] = {
    "IR_BEN_R": TableSpec(
        "IR_BEN_R", "IR_BEN_R", (
            _c("BEN_NIR_PSA", "str", **NIR, description="pseudonymised NIR (17 chars)"),
            _c("BEN_RNG_GEM", "int", min_value=1, max_value=9, description="birth rank (twins)"),
            _c("BEN_IDT_ANO", "str", nullable=True, str_length=(17, 64),
               description="unifies a person's several BEN_NIR_PSA"),
            _c("BEN_SEX_COD", "int", isin=SEX_CODES, description="1 male, 2 female, 0/9 unknown"),
            _c("BEN_NAI_ANN", "str", regex=r"^(1600|19\d\d|20\d\d)$", description="birth year, 1600 unknown"),
            _c("BEN_NAI_MOI", "str", nullable=True, regex=r"^(0[0-9]|1[0-2])$", description="birth month MM"),
            _c("BEN_RES_DPT", "str", isin=DEPARTEMENT_CODES, description="département of residence"),
            _c("BEN_DCD_DTE", "date", description="death date; 1600-01-01 = alive/unknown"),
        ),
        unique=("BEN_NIR_PSA", "BEN_RNG_GEM"), config_attr="ir_ben_r",
    ),
    "IR_IMB_R": TableSpec(
        "IR_IMB_R", "IR_IMB_R", (
            _c("BEN_NIR_PSA", "str", **NIR),
            _c("BEN_RNG_GEM", "int", min_value=1, max_value=9),
            _c("IMB_ALD_NUM", "int", min_value=1, max_value=32, description="ALD number 1-32"),
            _c("IMB_ALD_DTD", "date", description="ALD start"),
            _c("IMB_ALD_DTF", "date", description="ALD end; 1600-01-01 open-ended, 2099-12-31 lifetime"),
            _c("IMB_ETM_NAT", "int", isin=IMB_ETM_NAT_CODES, description="41 list, 43 off-list, 45 polypathology"),
            _c("MED_MTF_COD", "str", nullable=True, regex=r"^[A-Z][0-9][0-9A-Z]{0,5}$", description="ICD-10"),
        ),
        config_attr="ir_imb_r",
    ),
    "ER_PRS_F": TableSpec(
        "ER_PRS_F", "ER_PRS_F", (
            _c("DCT_ORD_NUM", "int"),
            _c("FLX_DIS_DTD", "date"),
            _c("FLX_EMT_NUM", "int"),
            _c("FLX_EMT_ORD", "int"),
            _c("FLX_EMT_TYP", "int"),
            _c("FLX_TRT_DTD", "date"),
            _c("ORG_CLE_NUM", "str"),
            _c("PRS_ORD_NUM", "int"),
            _c("REM_TYP_AFF", "int"),
            _c("BEN_NIR_PSA", "str", **NIR),
            _c("BEN_RNG_GEM", "int", min_value=1, max_value=9),
            _c("EXE_SOI_DTD", "date", description="care start"),
            _c("EXE_SOI_DTF", "date", nullable=True, description="care end"),
            _c("PRS_NAT_REF", "int", min_value=0, max_value=9999, description="prestation code (IR_NAT_V)"),
            _c("PRS_ACT_QTE", "float", min_value=-1000, max_value=1000, description="quantity (negative = regularisation)"),
            _c("PRS_PAI_MNT", "float", min_value=-1e6, max_value=1e6),
            _c("BSE_REM_BSE", "float", min_value=-1e6, max_value=1e6),
            _c("BSE_REM_MNT", "float", min_value=-1e6, max_value=1e6, description="reimbursed €"),
            _c("BSE_PRS_NAT", "int", min_value=0, max_value=9999),
            _c("DPN_QLF", "int", isin=DPN_QLF_CODES, description="71 = for information"),
            _c("CPL_MAJ_TOP", "int", isin=CPL_MAJ_TOP_CODES, description="2 = surcharge"),
            _c("PSE_ACT_NAT", "int", min_value=0, max_value=99),
            _c("PSE_SPE_COD", "int", min_value=0, max_value=99),
        ),
        unique=("DCT_ORD_NUM", "FLX_DIS_DTD", "FLX_EMT_NUM", "FLX_EMT_ORD", "FLX_EMT_TYP", "FLX_TRT_DTD",
                "ORG_CLE_NUM", "PRS_ORD_NUM", "REM_TYP_AFF"),
        config_attr="er_prs_f",
    ),
    "MCO_B": TableSpec(
        "MCO_B", "T_MCOaaB", (
            _c("ETA_NUM", "str", str_length=9),
            _c("RSA_NUM", "int", min_value=0),
            _c("SEJ_NBJ", "int", nullable=True, min_value=0, max_value=2999),
            _c("ENT_MOD", "str", nullable=True, isin=ENT_MOD_CODES),
            _c("SOR_MOD", "str", nullable=True, isin=SOR_MOD_CODES, description="9 death, 8 home, 7 transfer"),
            _c("GRG_GHM", "str", str_length=6, description="CMD 28 séances, 90 error"),
            _c("SOR_ANN", "str", regex=r"^(19|20)\d\d$"),
            _c("SOR_MOI", "str", regex=r"^(0[1-9]|1[0-2])$"),
        ),
        unique=("ETA_NUM", "RSA_NUM"), per_year=True, config_attr="mco_b",
    ),
    "MCO_C": TableSpec(
        "MCO_C", "T_MCOaaC", (
            _c("ETA_NUM", "str", str_length=9),
            _c("RSA_NUM", "int", min_value=0),
            _c("NIR_ANO_17", "str", str_length=17, description="= BEN_NIR_PSA; x-filled = invalid"),
            _c("EXE_SOI_DTD", "date", description="entry"),
            _c("EXE_SOI_DTF", "date", description="exit"),
            _c("NIR_RET", "str", **RET),
            _c("NAI_RET", "str", **RET),
            _c("SEX_RET", "str", **RET),
            _c("SEJ_RET", "str", **RET),
            _c("FHO_RET", "str", **RET),
            _c("PMS_RET", "str", **RET),
            _c("DAT_RET", "str", **RET),
        ),
        unique=("ETA_NUM", "RSA_NUM"), per_year=True, config_attr="mco_c",
    ),
    "MCO_VALO": TableSpec(
        "MCO_VALO", "T_MCOaaVALO", (
            _c("ETA_NUM", "str", str_length=9),
            _c("RSA_NUM", "int", min_value=0),
            _c("MNT_TOT_AM", "float", nullable=True, min_value=-1e7, max_value=1e7),
            _c("VALO", "int", nullable=True, min_value=0, max_value=9, description="0/missing = not valued"),
        ),
        unique=("ETA_NUM", "RSA_NUM"), per_year=True, config_attr="mco_valo",
    ),
    "ROSTER": TableSpec(
        "ROSTER", "EQUILIBRES_ROSTER", (
            _c("BEN_NIR_PSA", "str", **NIR),
            _c("EQL_EQP_ID", "str"),
            _c("EQL_DPT", "str", isin=DEPARTEMENT_CODES),
            _c("EQL_INC_DTE", "date"),
            _c("EQL_SOR_DTE", "date", description="exit; 1600-01-01 = still included"),
            _c("CPX_SOCIAL", "int", isin=(0, 1)),
            _c("CPX_AIDANT", "int", isin=(0, 1)),
            _c("CPX_PALLIATIF", "int", isin=(0, 1)),
            _c("CPX_PSY", "int", isin=(0, 1)),
            _c("CPX_HANDICAP", "int", isin=(0, 1)),
            _c("CPX_PEDIATRIE", "int", isin=(0, 1)),
        ),
        unique=("BEN_NIR_PSA",), config_attr="roster",
    ),
}

# Dates that must lie in the care window (a claim dated 2031 is a typo, not a sentinel).
CARE_DATE_COLUMNS = {"ER_PRS_F": ("EXE_SOI_DTD", "EXE_SOI_DTF", "FLX_DIS_DTD", "FLX_TRT_DTD"),
                     "MCO_C": ("EXE_SOI_DTD", "EXE_SOI_DTF")}
# Identifier columns: never printed in full.
IDENTIFIER_COLUMNS = frozenset({"BEN_NIR_PSA", "BEN_IDT_ANO", "NIR_ANO_17", "EQL_EQP_ID"})
