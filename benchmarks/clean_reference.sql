-- The whole clean (`equilibres clean`) as one hand-written DuckDB script: the reference the cleaning
-- benchmark times the pipeline against, and that tests/test_bench_clean.py checks on the committed
-- sample (same persons, panel, stays, cohort and eol_daily tables, same kept euros).
--
-- Written as a DuckDB user would write it: small tables (persons, maps, stays, ALD periods) are
-- in-memory temp tables, ER_PRS_F is read once by one statement, no audit trail, no casts of columns
-- already stored with usable types. The outputs are written as the pipeline writes them (same
-- columns, types, row order, floats rounded to 6 decimals) so the two products are the same files.
--
-- {{name}} placeholders are filled by benchmarks/clean_reference.py: input and output paths, and
-- the values of the study configuration (dates, code lists, category and region names). The rules
-- are those of docs/cleaning.md; each block names the pipeline function it mirrors.

-- Ibis' strip(): blanks, tabs and line breaks at both ends.
CREATE TEMP MACRO strip_ws(s) AS trim(s, ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13));

-- ingest.beneficiaries_normalised ---------------------------------------------------------------
CREATE TEMP TABLE ben AS
WITH b AS (
  SELECT *, strip_ws(BEN_IDT_ANO) AS ano,
         upper(strip_ws(BEN_RES_DPT)) AS dpt0,
         NOT (BEN_NAI_ANN IS NULL OR BEN_NAI_ANN = '1600')
           AND regexp_matches(BEN_NAI_ANN, '^[0-9]{4}$')
           AND NOT coalesce(regexp_matches(strip_ws(BEN_NAI_ANN), '^[0-9]{4}$')
                            AND TRY_CAST(strip_ws(BEN_NAI_ANN) AS INTEGER) > {{max_birth_year}}, false) AS year_ok,
         coalesce(CAST(BEN_NAI_MOI AS INTEGER) BETWEEN 1 AND 12, false) AS month_ok
  FROM read_parquet({{IR_BEN_R}})
), d AS (
  SELECT *, CASE WHEN length(dpt0) < 3 THEN lpad(dpt0, 3, '0') ELSE dpt0 END AS dpt1 FROM b
)
SELECT BEN_NIR_PSA, CAST(BEN_RNG_GEM AS INTEGER) AS BEN_RNG_GEM,
       CASE WHEN ano IS NULL OR ano = '' THEN
              CASE WHEN BEN_RNG_GEM IS NULL OR BEN_RNG_GEM = 1 THEN BEN_NIR_PSA
                   ELSE BEN_NIR_PSA || ':' || CAST(BEN_RNG_GEM AS INTEGER) END
            ELSE ano END AS person_id,
       CASE WHEN BEN_SEX_COD IN (1, 2) THEN CAST(BEN_SEX_COD AS INTEGER) END AS BEN_SEX_COD,
       CASE WHEN year_ok THEN make_date(CAST(BEN_NAI_ANN AS INTEGER),
                                        CASE WHEN month_ok THEN CAST(BEN_NAI_MOI AS INTEGER) ELSE 7 END,
                                        CASE WHEN month_ok THEN 15 ELSE 1 END) END AS birth_date,
       CASE WHEN year_ok THEN make_date(CAST(BEN_NAI_ANN AS INTEGER),
                                        CASE WHEN month_ok THEN CAST(BEN_NAI_MOI AS INTEGER) ELSE 1 END,
                                        1) END AS birth_floor,
       CASE WHEN dpt1 = '201' THEN '02A' WHEN dpt1 = '202' THEN '02B'
            WHEN dpt1 IN ('020', '209', '') THEN NULL ELSE dpt1 END AS dpt,
       CASE WHEN BEN_DCD_DTE = DATE '1600-01-01' THEN NULL ELSE BEN_DCD_DTE END AS ben_death_date
FROM d;

-- ingest.persons_unified, person_key_map, person_nir_map -----------------------------------------
CREATE TEMP TABLE persons_base AS
SELECT person_id, max(BEN_SEX_COD) AS BEN_SEX_COD, min(birth_date) AS birth_date,
       min(birth_floor) AS birth_floor, max(dpt) AS dpt, min(ben_death_date) AS ben_death_date
FROM ben GROUP BY person_id;
CREATE TEMP TABLE key_map AS
SELECT BEN_NIR_PSA, BEN_RNG_GEM, min(person_id) AS person_id FROM ben GROUP BY ALL;
CREATE TEMP TABLE nir_map AS
SELECT BEN_NIR_PSA, min(person_id) AS person_id FROM ben GROUP BY ALL;

-- ingest.roster_linked / roster_persons: linked, included in the study period, earliest inclusion
-- kept (ranked among the person's linked rows, as the pipeline does) -------------------------------
CREATE TEMP TABLE roster AS
WITH r AS (
  SELECT r.*, m.person_id,
         CASE WHEN EQL_SOR_DTE = DATE '1600-01-01' THEN NULL ELSE EQL_SOR_DTE END AS exit_date,
         upper(strip_ws(EQL_DPT)) AS dpt0,
         m.person_id IS NOT NULL
           AND NOT (EQL_INC_DTE IS NULL OR EQL_INC_DTE = DATE '1600-01-01')
           AND NOT coalesce(EQL_INC_DTE NOT BETWEEN DATE '{{inclusion_start}}' AND DATE '{{inclusion_end}}', false)
           AS linked
  FROM read_parquet({{ROSTER}}) r LEFT JOIN nir_map m USING (BEN_NIR_PSA)
), ranked AS (
  SELECT *, row_number() OVER (PARTITION BY person_id, linked ORDER BY EQL_INC_DTE, EQL_EQP_ID, BEN_NIR_PSA) AS rn,
         CASE WHEN length(dpt0) < 3 THEN lpad(dpt0, 3, '0') ELSE dpt0 END AS dpt1
  FROM r
)
SELECT person_id, EQL_INC_DTE AS inclusion_date, exit_date, EQL_EQP_ID AS team_id,
       CASE WHEN dpt1 = '201' THEN '02A' WHEN dpt1 = '202' THEN '02B'
            WHEN dpt1 IN ('020', '209', '') THEN NULL ELSE dpt1 END AS roster_dpt,
       {{roster_flags}}
FROM ranked WHERE linked AND rn = 1;

-- ald.ald_linked / ald_periods -------------------------------------------------------------------
CREATE TEMP TABLE ald_periods AS
SELECT m.person_id, CAST(IMB_ALD_NUM AS INTEGER) AS IMB_ALD_NUM, IMB_ALD_DTD AS ald_start,
       CASE WHEN IMB_ALD_DTF = DATE '1600-01-01' THEN NULL ELSE IMB_ALD_DTF END AS ald_end
FROM read_parquet({{IR_IMB_R}}) i JOIN key_map m USING (BEN_NIR_PSA, BEN_RNG_GEM)
WHERE IMB_ALD_DTD IS NOT NULL AND IMB_ALD_DTD <> DATE '1600-01-01';

-- pmsi.mco_stays / stays_valid: B ⋈ C ⋈ VALO of every year, valid stays only ---------------------
CREATE TEMP TABLE mco_b AS
SELECT *, CAST(regexp_extract(filename, 'MCO(\d\d)', 1) AS INTEGER) AS pmsi_year
FROM read_parquet({{MCO_B}}, filename = true);
CREATE TEMP TABLE mco_c AS
SELECT *, CAST(regexp_extract(filename, 'MCO(\d\d)', 1) AS INTEGER) AS pmsi_year
FROM read_parquet({{MCO_C}}, filename = true);
CREATE TEMP TABLE stays AS
WITH valo AS (
  SELECT CAST(regexp_extract(filename, 'MCO(\d\d)', 1) AS INTEGER) AS pmsi_year, ETA_NUM, RSA_NUM,
         sum(MNT_TOT_AM) AS MNT_TOT_AM, max(VALO) AS VALO
  FROM read_parquet({{MCO_VALO}}, filename = true) GROUP BY ALL
), s AS (
  SELECT b.ETA_NUM, b.RSA_NUM, b.SEJ_NBJ, b.SOR_MOD, b.GRG_GHM, c.NIR_ANO_17, c.EXE_SOI_DTD, c.EXE_SOI_DTF,
         c.NIR_RET, c.NAI_RET, c.SEX_RET, c.SEJ_RET, c.FHO_RET, c.PMS_RET, c.DAT_RET, v.MNT_TOT_AM, v.VALO,
         m.person_id
  FROM mco_b b
  LEFT JOIN mco_c c USING (pmsi_year, ETA_NUM, RSA_NUM)
  LEFT JOIN valo v USING (pmsi_year, ETA_NUM, RSA_NUM)
  LEFT JOIN nir_map m ON c.NIR_ANO_17 = m.BEN_NIR_PSA
)
SELECT person_id, ETA_NUM, RSA_NUM, EXE_SOI_DTD AS entry_date, EXE_SOI_DTF AS exit_date,
       CAST(SEJ_NBJ AS INTEGER) AS SEJ_NBJ, SOR_MOD, GRG_GHM,
       CAST(coalesce(starts_with(GRG_GHM, '28'), false) AS TINYINT) AS is_seance,
       CASE WHEN VALO IS NULL OR VALO = 0 OR MNT_TOT_AM IS NULL THEN 0.0 ELSE MNT_TOT_AM END AS cost,
       coalesce({{stay_category_case}}, 'hospital') AS stay_category
FROM s
WHERE {{return_codes_ok}}
  AND NOT (strip_ws(NIR_ANO_17) IS NULL
           OR replace(upper(strip_ws(NIR_ANO_17)), 'X', '') = '')
  AND {{ghm_90_ok}}
  AND {{finess_ok}}
  AND EXE_SOI_DTF BETWEEN DATE '{{claims_start}}' AND DATE '{{claims_end}}'
  AND person_id IS NOT NULL;

-- dcir.possible_deaths / eol_day_ranges: care days kept per day for eol_daily -------------------
CREATE TEMP TABLE eol_ranges AS
WITH deaths AS (
  SELECT person_id, ben_death_date AS death_date FROM persons_base WHERE ben_death_date IS NOT NULL
  UNION ALL
  SELECT m.person_id, c.EXE_SOI_DTF
  FROM mco_b b JOIN mco_c c USING (pmsi_year, ETA_NUM, RSA_NUM) JOIN nir_map m ON c.NIR_ANO_17 = m.BEN_NIR_PSA
  WHERE strip_ws(b.SOR_MOD) = '9' AND c.EXE_SOI_DTF IS NOT NULL
)
SELECT person_id, min(death_date) - INTERVAL ({{eol_days}} - 1) DAY AS eol_from, max(death_date) AS eol_to
FROM deaths GROUP BY person_id;

-- dcir: the one scan of ER_PRS_F. Line rules (standard, then plausibility), netting of identical lines (summed quantity > 0),
-- person link, categories; kept claims by person, month, care day (end-of-life ranges only) -------
CREATE TEMP TABLE claims AS
WITH netted AS (
  SELECT BEN_NIR_PSA, BEN_RNG_GEM, EXE_SOI_DTD, EXE_SOI_DTF, PRS_NAT_REF, PSE_ACT_NAT, PSE_SPE_COD,
         CPL_MAJ_TOP, DPN_QLF, BSE_PRS_NAT, sum(PRS_ACT_QTE) AS qty, sum(BSE_REM_MNT) AS euros
  FROM read_parquet({{ER_PRS_F}})
  WHERE {{dpn_qlf_ok}} AND {{bse_prs_nat_ok}}
    AND EXE_SOI_DTD BETWEEN DATE '{{claims_start}}' AND DATE '{{claims_end}}'
    AND {{flux_ok}}
    AND NOT coalesce(EXE_SOI_DTD > FLX_DIS_DTD + INTERVAL ({{max_care_after_flux_days}}) DAY, false)
    AND NOT coalesce(abs(BSE_REM_MNT) > {{amount_limit}}, false)
  GROUP BY ALL
  HAVING sum(PRS_ACT_QTE) > 0
), map AS (
  SELECT k.*, r.eol_from, r.eol_to FROM key_map k LEFT JOIN eol_ranges r USING (person_id)
)
SELECT m.person_id, date_trunc('month', n.EXE_SOI_DTD)::DATE AS month,
       CASE WHEN n.EXE_SOI_DTD BETWEEN m.eol_from AND m.eol_to THEN n.EXE_SOI_DTD END AS care_date,
       {{category_case}} AS category,
       sum(n.euros) AS euros,
       sum(CASE WHEN coalesce(n.CPL_MAJ_TOP < 2, true) THEN n.qty ELSE 0.0 END) AS acts,
       sum(CASE WHEN n.PRS_NAT_REF IN ({{experiment_codes}}) THEN n.qty ELSE 0.0 END) AS hours,
       max(n.EXE_SOI_DTD) AS last_care
FROM netted n JOIN map m USING (BEN_NIR_PSA, BEN_RNG_GEM)
GROUP BY ALL;

-- deaths.deaths: IR_BEN_R when plausible, else the earliest valid PMSI death exit; flags ----------
CREATE TEMP TABLE death AS
WITH last_claim AS (SELECT person_id, max(last_care) AS last_claim_date FROM claims GROUP BY person_id),
last_stay AS (SELECT person_id, max(entry_date) AS last_stay FROM stays GROUP BY person_id),
pmsi AS (
  SELECT person_id, min(exit_date) AS pmsi_death_date FROM stays
  WHERE strip_ws(SOR_MOD) = '9' GROUP BY person_id
), t AS (
  SELECT p.person_id, p.birth_floor, p.ben_death_date, d.pmsi_death_date, c.last_claim_date,
         CASE WHEN s.last_stay IS NULL THEN c.last_claim_date WHEN c.last_claim_date IS NULL THEN s.last_stay
              ELSE greatest(s.last_stay, c.last_claim_date) END AS last_activity,
         p.ben_death_date IS NOT NULL AND NOT coalesce(p.ben_death_date < p.birth_floor, false) AS ben_ok,
         d.pmsi_death_date IS NOT NULL AND NOT coalesce(d.pmsi_death_date < p.birth_floor, false) AS pmsi_ok,
         coalesce(p.ben_death_date < p.birth_floor OR d.pmsi_death_date < p.birth_floor, false) AS before_birth
  FROM persons_base p LEFT JOIN pmsi d USING (person_id)
  LEFT JOIN last_claim c USING (person_id) LEFT JOIN last_stay s USING (person_id)
), dated AS (
  SELECT *, CASE WHEN ben_ok THEN ben_death_date WHEN pmsi_ok THEN pmsi_death_date END AS death_date,
         CASE WHEN ben_ok THEN 'IR_BEN_R' WHEN pmsi_ok THEN 'PMSI' END AS death_source
  FROM t
)
SELECT person_id, death_date, death_source, last_claim_date,
       CAST(before_birth
            OR coalesce(last_activity > death_date + INTERVAL ({{tolerance_days}}) DAY, false) AS TINYINT)
         AS death_flag_error
FROM dated;

-- outputs.persons_table ---------------------------------------------------------------------------
CREATE TEMP TABLE persons AS
SELECT p.person_id, p.BEN_SEX_COD, p.birth_date, p.dpt, {{region_case}} AS region,
       d.death_date, d.death_source, coalesce(d.death_flag_error, 0)::TINYINT AS death_flag_error,
       CAST(r.inclusion_date IS NOT NULL AS TINYINT) AS treated, r.inclusion_date, r.exit_date, r.team_id,
       {{persons_flags}},
       {{complex_expr}} AS complex,
       d.last_claim_date
FROM persons_base p LEFT JOIN death d USING (person_id) LEFT JOIN roster r USING (person_id);

-- outputs.panel_table: DCIR spending by care month, hospital-perimeter stays by entry month -------
CREATE TEMP TABLE panel AS
WITH dcir AS (
  SELECT person_id, month, {{spend_by_category}},
         sum(CASE WHEN category = 'nursing_acts' THEN acts ELSE 0.0 END) AS nursing_acts,
         sum(hours) AS experiment_hours
  FROM claims GROUP BY person_id, month
), hosp AS (
  SELECT person_id, date_trunc('month', entry_date)::DATE AS month, sum(cost) AS spend_hospital,
         count(*) FILTER (WHERE is_seance = 0) AS hosp_stays,
         coalesce(sum(SEJ_NBJ) FILTER (WHERE is_seance = 0), 0) AS hosp_days,
         count(*) FILTER (WHERE is_seance <> 0) AS seances
  FROM stays WHERE stay_category = 'hospital' GROUP BY ALL
)
SELECT person_id, month, {{spend_coalesced}},
       coalesce(h.spend_hospital, 0.0) AS spend_hospital,
       coalesce(h.hosp_stays, 0)::INTEGER AS hosp_stays, coalesce(h.hosp_days, 0)::INTEGER AS hosp_days,
       coalesce(h.seances, 0)::INTEGER AS seances,
       coalesce(d.nursing_acts, 0.0) AS nursing_acts, coalesce(d.experiment_hours, 0.0) AS experiment_hours
FROM dcir d FULL JOIN hosp h USING (person_id, month)
WHERE month BETWEEN DATE '{{claims_month_start}}' AND DATE '{{claims_end}}';

-- outputs.eol_daily_table: usable decedents' kept claims per care day over eol_days before death --
CREATE TEMP TABLE eol_daily AS
SELECT c.person_id, c.care_date, {{spend_by_category_c}},
       sum(CASE WHEN c.category = 'nursing_acts' THEN c.acts ELSE 0.0 END) AS nursing_acts,
       sum(c.hours) AS experiment_hours
FROM claims c JOIN persons p USING (person_id)
WHERE c.care_date IS NOT NULL AND p.death_date IS NOT NULL AND p.death_flag_error = 0
  AND c.care_date BETWEEN p.death_date - INTERVAL ({{eol_days}} - 1) DAY AND p.death_date
GROUP BY c.person_id, c.care_date;

-- cohort.cohort_table: treated at inclusion, candidate controls per inclusion quarter -------------
CREATE TEMP TABLE cohort AS
WITH monthly AS (
  SELECT person_id, month, {{nursing_sum}} AS nursing, {{total_sum}} AS total, hosp_stays AS stays
  FROM panel
), treated AS (
  SELECT person_id, inclusion_date AS index_date,
         make_date(year(inclusion_date), ((month(inclusion_date) - 1) // 3) * 3 + 1, 1) AS window_end
  FROM persons WHERE treated = 1
), treated_w AS (
  SELECT *, CAST(window_end - INTERVAL ({{history_months}}) MONTH AS DATE) AS window_start FROM treated
), treated_rows AS (
  SELECT t.person_id, 1 AS treated, t.index_date, t.window_start,
         sum(m.nursing) AS prior_nursing_cost, sum(m.total) AS prior_total_cost, sum(m.stays) AS prior_hosp_stays
  FROM treated_w t LEFT JOIN monthly m
    ON m.person_id = t.person_id AND m.month >= t.window_start AND m.month < t.window_end
  GROUP BY t.person_id, t.index_date, t.window_start
), windows AS (
  SELECT q AS index_date, q AS window_end, CAST(q - INTERVAL ({{history_months}}) MONTH AS DATE) AS window_start
  FROM (SELECT unnest([{{quarters}}]::DATE[]) AS q)
), control_rows AS (
  SELECT m.person_id, 0 AS treated, w.index_date, w.window_start,
         sum(m.nursing) AS prior_nursing_cost, sum(m.total) AS prior_total_cost, sum(m.stays) AS prior_hosp_stays
  FROM monthly m JOIN windows w ON m.month >= w.window_start AND m.month < w.window_end
  WHERE m.person_id IN (SELECT person_id FROM persons WHERE treated = 0)
  GROUP BY m.person_id, w.index_date, w.window_start
  HAVING count(*) FILTER (WHERE m.nursing <> 0) > 0
), r AS (
  SELECT u.*, p.BEN_SEX_COD, p.birth_date, p.dpt, p.region, p.death_date, p.death_flag_error,
         {{persons_flags_p}}, p.complex,
         year(u.index_date) - year(p.birth_date)
           - CAST(month(u.index_date) < month(p.birth_date)
                  OR (month(u.index_date) = month(p.birth_date) AND day(u.index_date) < day(p.birth_date))
                  AS INTEGER) AS age
  FROM (SELECT * FROM treated_rows UNION ALL SELECT * FROM control_rows) u JOIN persons p USING (person_id)
), ald AS (
  SELECT k.person_id, k.index_date, count(DISTINCT {{ald_group_case}}) AS n_groups,
         min({{ald_group_case}}) AS any_group
  FROM (SELECT DISTINCT person_id, index_date FROM r) k
  JOIN ald_periods a ON a.person_id = k.person_id AND a.ald_start <= k.index_date
                     AND (a.ald_end IS NULL OR a.ald_end >= k.index_date)
  GROUP BY k.person_id, k.index_date
), checked AS (
  SELECT r.*, a.n_groups, a.any_group,
         CASE WHEN coalesce(death_date < r.index_date, false) THEN 'died_before_index'
              WHEN BEN_SEX_COD IS NULL THEN 'unknown_sex'
              WHEN birth_date IS NULL OR coalesce(age < 0, false) THEN 'unknown_age'
              WHEN NOT coalesce(dpt IN ({{departements}}), false) THEN 'outside_study_area'
              WHEN window_start < DATE '{{claims_month_start}}' THEN 'insufficient_history'
              WHEN treated = 0 AND coalesce(prior_nursing_cost, 0.0) < {{min_prior_nursing_cost}}
                THEN 'low_prior_nursing_cost'
         END AS reason
  FROM r LEFT JOIN ald a USING (person_id, index_date)
)
SELECT person_id || '@' || CAST(index_date AS VARCHAR) AS unit_id, person_id, treated::TINYINT AS treated,
       index_date, CAST(year(index_date) AS VARCHAR) || 'Q' || CAST((month(index_date) - 1) // 3 + 1 AS VARCHAR)
         AS index_quarter,
       BEN_SEX_COD, age::INTEGER AS age, CAST(n_groups IS NOT NULL AS TINYINT) AS ald,
       CASE WHEN n_groups IS NULL THEN 'none' WHEN n_groups > 1 THEN 'multiple' WHEN n_groups = 1 THEN any_group
            ELSE 'ungrouped' END AS ald_group,
       dpt, region, coalesce(prior_nursing_cost, 0.0) AS prior_nursing_cost,
       coalesce(prior_total_cost, 0.0) AS prior_total_cost, coalesce(prior_hosp_stays, 0)::INTEGER AS prior_hosp_stays,
       {{cohort_flags}}, complex,
       CASE WHEN treated = 1 THEN index_date
            WHEN death_date IS NOT NULL AND coalesce(death_flag_error, 0) = 0 THEN death_date
            ELSE DATE '{{claims_end}}' END AS at_risk_until,
       CAST(reason IS NULL AS TINYINT) AS eligible, reason AS ineligible_reason
FROM checked;

-- the outputs, written as the pipeline writes them ------------------------------------------------
COPY (SELECT * FROM persons ORDER BY person_id) TO {{out_persons}} (FORMAT parquet);
COPY (SELECT * REPLACE ({{round_panel}}) FROM panel ORDER BY person_id, month) TO {{out_panel}} (FORMAT parquet);
COPY (SELECT * REPLACE (round(cost, 6) AS cost) FROM stays
      ORDER BY person_id, entry_date, exit_date, ETA_NUM, RSA_NUM) TO {{out_stays}} (FORMAT parquet);
COPY (SELECT * REPLACE ({{round_eol}}) FROM eol_daily ORDER BY person_id, care_date) TO {{out_eol_daily}} (FORMAT parquet);
COPY (SELECT * REPLACE (round(prior_nursing_cost, 6) AS prior_nursing_cost, round(prior_total_cost, 6) AS prior_total_cost)
      FROM cohort ORDER BY treated, index_date, person_id) TO {{out_cohort}} (FORMAT parquet);
