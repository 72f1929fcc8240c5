"""Synthetic survey files: deterministic, and they reproduce each published figure within sampling error.

Tolerances: coded answers are allotted to codes by largest-remainder rounding of the target shares,
so a share is within 1/n of its target (n = answers to the item), plus 0.005 for the rounding of the
published percentage; the published value must also lie inside the 95 % CI. Scores are independent
draws: their mean must lie within 3 standard errors σ/√n of the target, σ being the SD of the planted
beta-binomial distribution (a 99.7 % band, so two fixed seeds fail only if the calibration is wrong;
the sample SD is not used because it is itself very noisy for ratings piled up near 10).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from data_samples.surveys import largest_remainder, planted_score_distribution, write_synthetic_surveys
from pipeline.config import load_config
from pipeline.survey_codebook import load_codebooks
from surveys.responses import load_responses
from surveys.summary import summarise_survey

CONFIG = load_config()
SEEDS = [20240101, 7]


def _summaries(root: Path, config=CONFIG):
    books = load_codebooks(config.codebook_paths())
    loaded = load_responses(root, books)
    return {b.id: summarise_survey(loaded[b.id][1], b, config.surveys) for b in books}


@pytest.fixture(scope="module", params=SEEDS)
def generated(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"synthetic_{request.param}")
    info = write_synthetic_surveys(root, request.param, CONFIG)
    return root, info, _summaries(root)


def test_files_and_sizes(generated):
    root, info, summaries = generated
    for name in ("patients_caregivers.csv", "nurses_phone.csv", "nurses_online.csv"):
        assert (root / "surveys" / name).exists()
    assert summaries["patients_caregivers"].n_respondents == 90
    assert dict(summaries["patients_caregivers"].n_by_type) == {"caregiver": 25, "patient": 65}
    assert summaries["nurses_phone"].n_respondents == 22
    assert summaries["nurses_online"].n_respondents == 90
    rr = summaries["nurses_online"].response_rates[0]
    assert rr.invited == 170 and rr.rr1 == pytest.approx(rr.complete / 170)
    assert info["nurses_online"]["targets"]["nurses_coordination"] == CONFIG.published["nurses_coordination"]


def test_item_nonresponse_is_a_few_percent(generated):
    root, _, summaries = generated
    missing = answered = 0
    for s in summaries.values():
        for it in s.items:
            r = it.result
            if hasattr(r, "n_missing"):
                missing += r.n_missing
                answered += r.n
    share = missing / (missing + answered)
    assert 0.01 <= share <= 0.06, share
    # both forms of non-response are present: blank cells and the missing-value code 99
    raw = pd.read_csv(root / "surveys" / "nurses_online.csv", dtype=str, keep_default_na=False)
    cells = raw.drop(columns=["respondent_id", "region"]).to_numpy().ravel()
    assert (cells == "").any() and (cells == "99").any()


def _published_ids():
    books = load_codebooks(CONFIG.codebook_paths())
    return [(b.id, q.id, link) for b in books for q in b.questions for link in q.indicators]


@pytest.mark.parametrize("survey,question,link", _published_ids(), ids=lambda x: getattr(x, "id", None))
def test_published_figure_reproduced_within_sampling_error(generated, survey, question, link):
    _, _, summaries = generated
    item = summaries[survey].item(question)
    est = item.estimate(link)
    published = CONFIG.published[link.id]
    if est.unit == "share":
        assert abs(est.value - published) <= 1 / est.n + 0.005, (link.id, est.display_en, published)
        assert est.ci_low <= published <= est.ci_high, (link.id, est.display_en, published)
    else:
        book = summaries[survey].codebook
        side = {"mean": None, "mean_before": "before", "mean_after": "after"}[link.statistic]
        sigma = planted_score_distribution(book, question, dict(CONFIG.published), side).std()
        se = sigma / math.sqrt(est.n)
        assert abs(est.value - published) <= 3 * se, (link.id, est.display_en, published, se)


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path):
    a = write_synthetic_surveys(tmp_path / "a", 123, CONFIG)
    b = write_synthetic_surveys(tmp_path / "b", 123, CONFIG)
    c = write_synthetic_surveys(tmp_path / "c", 124, CONFIG)
    for sid in a:
        assert Path(a[sid]["path"]).read_bytes() == Path(b[sid]["path"]).read_bytes()
        assert Path(a[sid]["path"]).read_bytes() != Path(c[sid]["path"]).read_bytes()


def test_targets_come_from_the_configuration(tmp_path: Path):
    """Changing a published value in the study file moves the synthetic data: nothing is hard-coded."""
    user = tmp_path / "study.toml"
    user.write_text("[published]\npatients_qol_improved = 0.40\nnurses_qvt_after = 6.5\n", encoding="utf-8")
    cfg = load_config(user)
    write_synthetic_surveys(tmp_path / "x", 5, cfg)
    summaries = _summaries(tmp_path / "x", cfg)
    qol = summaries["patients_caregivers"].item("qol_improved").result.favourable
    assert abs(qol.estimate - 0.40) <= 1 / qol.n
    after = summaries["nurses_online"].item("qvt").result.after
    book = summaries["nurses_online"].codebook
    sigma = planted_score_distribution(book, "qvt", dict(cfg.published), "after").std()
    assert abs(after.mean - 6.5) <= 3 * sigma / math.sqrt(after.n)


def test_missing_published_key_is_a_clear_error(tmp_path: Path):
    from pipeline.survey_codebook import CodebookError

    user = tmp_path / "study.toml"
    # replacing [published] wholesale is not possible (tables merge), so point a codebook at a missing key
    import yaml

    book = yaml.safe_load((Path(CONFIG.base_dir) / "codebooks" / "nurses_phone.yaml").read_text(encoding="utf-8"))
    book["calibration"]["questions"]["team_support"]["favourable_share"] = {"published": "no_such_figure"}
    (tmp_path / "nurses_phone.yaml").write_text(yaml.safe_dump(book, allow_unicode=True), encoding="utf-8")
    user.write_text('[surveys]\ncodebooks = ["nurses_phone.yaml"]\n', encoding="utf-8")
    with pytest.raises(CodebookError, match="no_such_figure.*not in the \\[published\\] table"):
        write_synthetic_surveys(tmp_path / "y", 1, load_config(user))


@pytest.mark.parametrize("shares,n", [({1: 0.44, 2: 0.35, 3: 0.21}, 87), ({1: 0.5, 0: 0.5}, 3),
                                      ({1: 1.0, 2: 0.0}, 10), ({1: 0.333, 2: 0.333, 3: 0.334}, 100)])
def test_largest_remainder_sums_to_n_and_stays_within_one(shares, n):
    counts = largest_remainder(shares, n)
    assert sum(counts.values()) == n
    for code, share in shares.items():
        assert abs(counts[code] - share * n) < 1
