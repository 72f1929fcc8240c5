"""Tell bias from noise on ONE generated extract: split the estimator's error into estimand, matching
imbalance and draw noise with the generator's own expected outcomes.

A coverage run (benchmarks/bench_coverage.py) needs many seeds to see a bias of a few per cent; this
diagnostic needs one build. It rebuilds the generator's population from the seed, scale and truth file
recorded in ``truth.json`` (same random streams, so the same persons), then computes with
``data_samples.outcomes`` (the code that writes truth.json):

1. the truth over all on-support treated (= truth.json) and over the **matched** treated only
   (a gap = the matched ATT is another estimand, e.g. unmatched patients with larger effects);
2. the **expected** estimate: the matched treated's expected treated outcomes against the matched
   controls' expected untreated outcomes from their own index date (a gap to 1 = matching imbalance on
   something the outcomes depend on, plus the chance of who died: death dates are realised draws);
3. the estimate itself (a gap to 2 = the claims drawn, i.e. noise the CI accounts for);

and the matched arms' balance on the latent variables (nursing intensity, death hazard, frailty),
with what the nursing-intensity gap is worth in control spending per patient-year.

    python -m benchmarks.bias_decomposition --data /work/x/data --build /work/x/build

Uses only the extract's seed: run it on an extract made by ``equilibres generate`` with the current
generator. Not a test: a diagnostic, results go to stdout (``--json`` to save them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from data_samples.outcomes import MonthGrid, StayWindowModel, TruthAccumulator, chunk_means
from data_samples.population import TREATED, Population, build_population, to_date
from data_samples.truth import TruthParams, load_truth
from pipeline.config import StudyConfig, load_config

CHUNK = 4000
HEADLINES = ("eol_hosp_rate", "eol_spending_difference", "avoided_spending_share", "avoided_spending_per_patient_year")


def rebuilt_population(truth_doc: dict, config: StudyConfig) -> tuple[Population, TruthParams]:
    """The generator's population of an extract, from the seed, scale and truth file of its truth.json."""
    root = Path(__file__).resolve().parents[1]
    tp = load_truth(root / truth_doc["truth_file"])
    s_pop = np.random.SeedSequence(int(truth_doc["seed"])).spawn(6)[0]  # generator._generate_into's order
    return build_population(np.random.default_rng(s_pop), float(truth_doc["scale_requested"]), tp, config), tp


def expected_sums(pop: Population, persons: np.ndarray, tp: TruthParams, config: StudyConfig) -> TruthAccumulator:
    """Expected outcomes of ``persons`` (treated and on support in ``pop``), both arms, as truth.json sums them."""
    grid = MonthGrid.of(config)
    stays = StayWindowModel.of(config.indicators.eol_window_days, tp)
    acc = TruthAccumulator(perimeter=list(config.indicators.perimeter),
                           eol_window_days=config.indicators.eol_window_days,
                           claims_start=to_date(config.study.claims_start))
    untreated = dataclasses.replace(pop, death=pop.death_untreated)
    for k in range(0, persons.size, CHUNK):
        sub = np.sort(persons)[k:k + CHUNK]
        part = acc.empty_like()
        cm0 = chunk_means(untreated, sub, grid, tp, config) if tp.effects.mortality != 1.0 else None
        part.add_expected(chunk_means(pop, sub, grid, tp, config), pop, grid, stays, config, cm0=cm0)
        acc.merge(part)
    return acc


def arm_values(acc: TruthAccumulator) -> dict[str, float]:
    """Per-arm rates of an accumulator: spending per patient-year, EoL stay share and spending per decedent."""
    return {"rate1": acc.spend1 / acc.patient_years, "rate0": acc.spend0 / acc.patient_years0,
            "hosp1": acc.eol_hosp1 / acc.n_decedents, "hosp0": acc.eol_hosp0 / acc.n_decedents0,
            "eol1": acc.eol_spend1 / acc.n_decedents, "eol0": acc.eol_spend0 / acc.n_decedents0}


def headlines(treated: dict[str, float], control: dict[str, float]) -> dict[str, float]:
    """The four headline effects from the treated arm of one and the untreated arm of the other."""
    return {"eol_hosp_rate": treated["hosp1"] / control["hosp0"] - 1,
            "eol_spending_difference": treated["eol1"] - control["eol0"],
            "avoided_spending_share": 1 - treated["rate1"] / control["rate0"],
            "avoided_spending_per_patient_year": control["rate0"] - treated["rate1"]}


def controls_as_indexed(pop: Population, controls: np.ndarray, index_dates: pd.Series) -> Population:
    """The population with each matched control followed from its matched index date (flagged treated
    and on support only so that the accumulator follows it; its *untreated* outcomes are what is read)."""
    group, inc, exit_, off = pop.group.copy(), pop.inclusion.copy(), pop.exit.copy(), pop.off_support.copy()
    group[controls] = TREATED
    inc[controls] = pd.to_datetime(index_dates).to_numpy().astype("datetime64[D]")
    exit_[controls] = np.datetime64("NaT")
    off[controls] = False
    return dataclasses.replace(pop, group=group, inclusion=inc, exit=exit_, off_support=off)


def decompose(data: Path, build: Path, config: StudyConfig) -> dict:
    truth_doc = json.loads((data / "truth.json").read_text(encoding="utf-8"))
    pop, tp = rebuilt_population(truth_doc, config)
    where = pd.Series(np.arange(pop.n), index=pop.idt_ano)
    matched = pd.read_parquet(build / "matching" / "matched.parquet")
    unknown = ~matched["person_id"].isin(where.index)
    if unknown.any():
        raise SystemExit(f"{int(unknown.sum())} matched persons of {build} are not in the population rebuilt from "
                         f"{data / 'truth.json'}: the extract was not made by the current generator with this "
                         "seed, scale and truth file. Regenerate it, then rerun.")
    if (matched.loc[matched["treated"] == 0, "weight"] != 1).any():
        raise SystemExit("Matched controls with weights other than 1 (ratio > 1 or replacement): this diagnostic "
                         "handles 1:1 matching without replacement only.")
    t = where.loc[matched.loc[matched["treated"] == 1, "person_id"]].to_numpy()
    c_rows = matched[matched["treated"] == 0]
    c = where.loc[c_rows["person_id"]].to_numpy()
    all_on = np.flatnonzero((pop.group == TREATED) & ~pop.off_support)
    pop_c = controls_as_indexed(pop, c, c_rows["index_date"])
    arms = {"all_on_support_treated": arm_values(expected_sums(pop, all_on, tp, config)),
            "matched_treated": arm_values(expected_sums(pop, t, tp, config)),
            "matched_controls": arm_values(expected_sums(pop_c, c, tp, config))}
    records = {r["id"]: r for r in json.loads((build / "indicators" / "indicators.json").read_text(encoding="utf-8"))}
    out = {
        "extract": {"seed": truth_doc["seed"], "scale": truth_doc["scale_requested"], "truth": truth_doc["truth_file"],
                    "matched_treated": int(t.size), "matched_controls": int(c.size)},
        "truth_json": {k: truth_doc["indicators"].get(k) for k in HEADLINES if k in truth_doc["indicators"]},
        "truth_all_on_support": headlines(arms["all_on_support_treated"], arms["all_on_support_treated"]),
        "truth_matched_treated": headlines(arms["matched_treated"], arms["matched_treated"]),
        "expected_estimate": headlines(arms["matched_treated"], arms["matched_controls"]),
        "estimate": {k: records[k]["value"] for k in HEADLINES if k in records},
        "arms": arms,
    }
    out["truth_json"]["eol_spending_difference"] = (truth_doc["indicators"]["eol_spending_treated"]
                                                    - truth_doc["indicators"]["eol_spending_control"])
    # latent balance, and what the nursing-intensity gap is worth in the controls' expected spending
    s = tp.selection
    mean = s.log_nursing_mean + s.log_nursing_age_slope * (np.clip(pop.age_ref, 18, 100) - 80) / 10 \
        + s.log_nursing_ald * pop.any_ald
    latent = {"log_nursing_intensity": pop.log_lam, "nursing_deviation": pop.log_lam - mean,
              "log_death_hazard": np.log(pop.death_hazard), "frailty": pop.frailty}
    out["latent_balance"] = {k: {"treated": float(v[t].mean()), "control": float(v[c].mean()),
                                 "difference": float(v[t].mean() - v[c].mean())} for k, v in latent.items()}
    gap = out["latent_balance"]["log_nursing_intensity"]["difference"]
    shifted = pop_c.log_lam.copy()
    shifted[c] += gap
    rate_shifted = arm_values(expected_sums(dataclasses.replace(pop_c, log_lam=shifted), c, tp, config))["rate0"]
    out["nursing_gap_worth_eur_per_patient_year"] = rate_shifted - arms["matched_controls"]["rate0"]
    return out


def render(d: dict) -> str:
    lines = [f"extract: {d['extract']}",
             f"{'headline':36} {'truth.json':>11} {'truth(all)':>11} {'truth(matched)':>14} {'expected est.':>13} {'estimate':>11}"]
    for k in HEADLINES:
        vals = [d["truth_json"].get(k), d["truth_all_on_support"][k], d["truth_matched_treated"][k],
                d["expected_estimate"][k], d["estimate"].get(k)]
        lines.append(f"{k:36} " + " ".join(f"{v:>11.4g}" if v is not None else f"{'':>11}" for v in vals))
    lines.append("estimand gap = truth(matched) − truth(all); matching imbalance (and who died) = "
                 "expected est. − truth(matched); claims-draw noise = estimate − expected est.")
    for k, v in d["latent_balance"].items():
        lines.append(f"latent {k:24} treated {v['treated']:9.4f} control {v['control']:9.4f} diff {v['difference']:+.4f}")
    lines.append(f"nursing-intensity gap worth {d['nursing_gap_worth_eur_per_patient_year']:+.1f} €/patient-year "
                 "of control spending (toward the null when positive)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="extract directory (with truth.json)")
    ap.add_argument("--build", type=Path, required=True, help="build directory (matching/ and indicators/ done)")
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args(argv)
    d = decompose(args.data, args.build, load_config())
    print(render(d))
    if args.json:
        args.json.write_text(json.dumps(d, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
