"""Synthetic survey files, calibrated to the targets named in each codebook's ``calibration`` section.

``write_synthetic_surveys(out_dir, seed, config)`` writes ``<out_dir>/surveys/<file>.csv`` for every
codebook of the study; ``equilibres generate`` calls it with the extract's seed. The same seed and
configuration give byte-identical files.

How answers are drawn (all targets come from the codebook; a target written ``{published: key}`` is
read from the study configuration's ``[published]`` table):

* respondents: the number per respondent type given by ``calibration.respondents``, in random order;
* item non-response: each applicable answer is missing with probability ``item_nonresponse`` (per
  question override allowed); a missing answer is written as the first missing-value code with
  probability ``missing_as_code``, else left blank; questions that do not apply to a respondent type
  are blank for it;
* coded items: the answers of the respondents who answer are allotted to the codes in proportion to
  the target shares (largest-remainder rounding), then shuffled, like the k/n behind a published
  percentage; target shares are ``shares`` per code, or ``favourable_share`` split over the favourable
  codes by ``within_favourable`` weights and over the others by ``within_other`` weights (equal weights
  by default);
* 0–10 scores: independent beta-binomial draws with the target mean and ``concentration`` (a + b);
* before/after pairs: beta-binomial margins (``mean_before``/``mean_after``,
  ``concentration_before``/``concentration_after``) joined by a Gaussian copula with ``correlation``,
  so the means are reproduced up to sampling error.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from pipeline.config import StudyConfig
from pipeline.io import atomic_write_text
from pipeline.survey_codebook import Codebook, CodebookError, Question, load_codebooks


@dataclass(frozen=True)
class _Calibration:
    book: Codebook
    published: dict[str, float]

    def error(self, key: str, msg: str) -> CodebookError:
        return CodebookError(f"Survey codebook {self.book.path}: calibration.{key}: {msg}")

    @property
    def section(self) -> dict[str, Any]:
        cal = self.book.calibration
        if not cal:
            raise self.error("", "the codebook has no calibration section; synthetic files need one "
                                "(see docs/surveys.md, 'Synthetic files')")
        return cal

    def target(self, value: Any, key: str) -> float:
        """A number, or ``{published: <key>}`` looked up in the configuration's [published] table."""
        if isinstance(value, dict):
            if set(value) != {"published"}:
                raise self.error(key, f"a target is a number or {{published: <key>}}; found {value!r}")
            name = value["published"]
            if name not in self.published:
                raise self.error(key, f"published figure {name!r} is not in the [published] table of the "
                                     f"study configuration; add it there or give a number")
            return float(self.published[name])
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise self.error(key, f"a target is a number or {{published: <key>}}; found {value!r}")

    def question(self, q: Question) -> dict[str, Any]:
        questions = self.section.get("questions") or {}
        if q.id not in questions:
            raise self.error(f"questions.{q.id}", "missing: every question needs calibration targets")
        return questions[q.id]

    def respondents(self) -> dict[str, int]:
        spec = self.section.get("respondents")
        if isinstance(spec, int) and not self.book.respondent_types:
            return {self.book.respondent_label_en: spec}
        if isinstance(spec, dict) and self.book.respondent_types and set(spec) <= set(self.book.type_keys):
            return {k: int(v) for k, v in spec.items()}
        raise self.error("respondents", f"expected a count (survey without respondent types) or a count per "
                                       f"respondent type {list(self.book.type_keys)}; found {spec!r}")

    def shares(self, q: Question) -> dict[int, float]:
        spec = self.question(q)
        codes = [c.code for c in q.codes]
        where = f"questions.{q.id}"
        if "shares" in spec:
            shares = {int(c): self.target(v, f"{where}.shares.{c}") for c, v in spec["shares"].items()}
            if set(shares) - set(codes):
                raise self.error(f"{where}.shares", f"codes {sorted(set(shares) - set(codes))} are not answer codes")
        elif "favourable_share" in spec:
            fs = self.target(spec["favourable_share"], f"{where}.favourable_share")
            fav = [c for c in codes if c in q.favourable]
            other = [c for c in codes if c not in q.favourable]
            shares = {}
            for group, total, key in ((fav, fs, "within_favourable"), (other, 1 - fs, "within_other")):
                weights = {int(c): float(w) for c, w in (spec.get(key) or {c: 1.0 for c in group}).items()}
                if set(weights) - set(group):
                    raise self.error(f"{where}.{key}", f"codes {sorted(set(weights) - set(group))} are not in "
                                                      f"this group {group}")
                wsum = sum(weights.values())
                for c in group:
                    shares[c] = total * weights.get(c, 0.0) / wsum if wsum else 0.0
        else:
            raise self.error(where, "a coded question needs 'shares' or 'favourable_share'")
        total = sum(shares.values())
        if not 0.98 <= total <= 1.02 or any(v < 0 for v in shares.values()):
            raise self.error(where, f"target shares must be >= 0 and sum to 1; they sum to {total:.3f}")
        return {c: shares.get(c, 0.0) / total for c in codes}


def largest_remainder(shares: dict[int, float], n: int) -> dict[int, int]:
    """Whole counts summing to n, as close as possible to shares × n (Hamilton's method)."""
    codes = list(shares)
    exact = np.array([shares[c] * n for c in codes])
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return dict(zip(codes, counts.tolist(), strict=True))


def _beta_binomial_params(mean: float, lo: int, hi: int, concentration: float, where: str,
                          cal: _Calibration) -> tuple[int, float, float]:
    span = hi - lo
    p = (mean - lo) / span
    if not 0 < p < 1:
        raise cal.error(where, f"target mean {mean} must lie strictly between {lo} and {hi}")
    if concentration <= 0:
        raise cal.error(where, "concentration must be > 0")
    return span, p * concentration, (1 - p) * concentration


def planted_score_distribution(book: Codebook, question_id: str, published: dict[str, float],
                               side: str | None = None):
    """The beta-binomial distribution (scipy frozen, on q.min..q.max after shifting by q.min) from
    which a score question's answers are drawn; ``side`` is 'before' or 'after' for a pair."""
    cal = _Calibration(book, published)
    q = book.question(question_id)
    spec = cal.question(q)
    where = f"questions.{q.id}"
    suffix = f"_{side}" if side else ""
    span, a, b = _beta_binomial_params(cal.target(spec.get(f"mean{suffix}"), f"{where}.mean{suffix}"), q.min,
                                       q.max, float(spec.get(f"concentration{suffix}", 10)), where, cal)
    return sps.betabinom(span, a, b)


def synthetic_survey(book: Codebook, seed: int, published: dict[str, float]) -> pd.DataFrame:
    """One synthetic survey file as text cells (blank = no answer), deterministic in (seed, survey id)."""
    cal = _Calibration(book, published)
    section = cal.section
    rng = np.random.default_rng([int(seed), zlib.crc32(book.id.encode())])
    per_type = cal.respondents()
    types = rng.permutation(np.repeat(list(per_type), list(per_type.values())))
    n = len(types)
    base_nonresponse = float(section.get("item_nonresponse", 0.0))
    as_code = float(section.get("missing_as_code", 0.0))
    prefix = str(section.get("id_prefix", "R"))

    cells: dict[str, np.ndarray] = {book.respondent_id: np.array([f"{prefix}{i + 1:04d}" for i in range(n)])}
    if book.respondent_types:
        code_of = {c.name: c.code for c in book.respondent_types.codes}
        cells[book.respondent_types.column] = np.array([str(code_of[t]) for t in types])

    for q in book.questions:
        spec = cal.question(q)
        nonresponse = float(spec.get("item_nonresponse", base_nonresponse))
        applicable = np.isin(types, list(book.applicable_types(q))) if book.respondent_types else np.ones(n, bool)
        rows = np.flatnonzero(applicable)
        missing_codes = book.missing_codes_of(q)
        columns = {c: np.full(n, "", dtype=object) for c in q.columns}
        # Missingness per column, decided first so the answer draws below do not depend on it.
        missing = {c: rng.random(len(rows)) < nonresponse for c in q.columns}
        coded_missing = {c: rng.random(len(rows)) < as_code for c in q.columns}
        if q.has_codes:
            col = q.columns[0]
            answering = rows[~missing[col]]
            counts = largest_remainder(cal.shares(q), len(answering))
            values = rng.permutation(np.repeat(list(counts), list(counts.values())))
            columns[col][answering] = values.astype(str)
        elif q.type == "score_0_10":
            col = q.columns[0]
            where = f"questions.{q.id}"
            span, a, b = _beta_binomial_params(cal.target(spec.get("mean"), f"{where}.mean"), q.min, q.max,
                                               float(spec.get("concentration", 10)), where, cal)
            draws = q.min + sps.betabinom.rvs(span, a, b, size=len(rows), random_state=rng)
            columns[col][rows] = draws.astype(int).astype(str)
            columns[col][rows[missing[col]]] = ""
        else:
            where = f"questions.{q.id}"
            rho = float(spec.get("correlation", 0.0))
            if not -1 < rho < 1:
                raise cal.error(f"{where}.correlation", "must lie strictly between -1 and 1")
            z = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=len(rows))
            u = np.clip(sps.norm.cdf(z), 1e-12, 1 - 1e-12)
            for j, (col, side) in enumerate(zip(q.columns, ("before", "after"), strict=True)):
                span, a, b = _beta_binomial_params(
                    cal.target(spec.get(f"mean_{side}"), f"{where}.mean_{side}"), q.min, q.max,
                    float(spec.get(f"concentration_{side}", 10)), f"{where}.concentration_{side}", cal)
                draws = q.min + sps.betabinom.ppf(u[:, j], span, a, b)
                columns[col][rows] = draws.astype(int).astype(str)
                columns[col][rows[missing[col]]] = ""
        for col in q.columns:
            if missing_codes:
                use_code = rows[missing[col] & coded_missing[col]]
                columns[col][use_code] = str(missing_codes[0])
            cells[col] = columns[col]
    return pd.DataFrame(cells)


def write_synthetic_surveys(out_dir: Path, seed: int, config: StudyConfig) -> dict[str, Any]:
    """Write one synthetic CSV per codebook under ``<out_dir>/surveys/``; return what was written.

    The result maps each survey id to its path, respondent counts and the resolved calibration
    targets of its indicators (``{indicator id: target}``), for the generator's truth file.
    """
    out = Path(out_dir) / "surveys"
    written: dict[str, Any] = {}
    for book in load_codebooks(config.codebook_paths()):
        frame = synthetic_survey(book, seed, dict(config.published))
        path = out / f"{book.file}.csv"
        atomic_write_text(path, frame.to_csv(index=False, sep=book.csv_separator, lineterminator="\n"))
        by_type = (frame[book.respondent_types.column].value_counts().sort_index().to_dict()
                   if book.respondent_types else {book.respondent_label_en: len(frame)})
        written[book.id] = {
            "path": str(path),
            "respondents": len(frame),
            "respondents_by_type_code": {str(k): int(v) for k, v in by_type.items()},
            "targets": _indicator_targets(book, dict(config.published)),
        }
    return written


def _indicator_targets(book: Codebook, published: dict[str, float]) -> dict[str, float]:
    """The calibration target behind each indicator the survey feeds (what the synthetic data plant)."""
    cal = _Calibration(book, published)
    targets: dict[str, float] = {}
    for q in book.questions:
        spec = cal.question(q)
        for link in q.indicators:
            if link.statistic == "favourable":
                shares = cal.shares(q)
                targets[link.id] = sum(v for c, v in shares.items() if c in q.favourable)
            elif link.statistic == "level":
                targets[link.id] = cal.shares(q)[int(link.level)]
            elif link.statistic == "mean":
                targets[link.id] = cal.target(spec.get("mean"), f"questions.{q.id}.mean")
            elif link.statistic in ("mean_before", "mean_after"):
                side = link.statistic.removeprefix("mean_")
                targets[link.id] = cal.target(spec.get(f"mean_{side}"), f"questions.{q.id}.mean_{side}")
            else:
                targets[link.id] = (cal.target(spec.get("mean_after"), f"questions.{q.id}.mean_after")
                                    - cal.target(spec.get("mean_before"), f"questions.{q.id}.mean_before"))
    return targets
