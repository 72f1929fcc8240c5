"""Issue 18: re-running one step never yields a report that mixes old and new results.

Every step records what it was computed from (pipeline/provenance.py); a step run alone and the
report refuse results that no longer follow from their inputs; `equilibres run` re-runs exactly the
out-of-date steps, as make does. Runs on the committed sample, through the command line. What ran is
read from the ``finished_at`` each step records in its params.json, never from timings.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import bad_inputs as bi
import pandas as pd
import pytest

from pipeline.io import PipelineError
from pipeline.paths import BuildPaths
from pipeline.provenance import (
    StepProvenance,
    build_chain,
    check_chain,
    inconsistencies,
    outdated,
    read_provenance,
    stale_steps,
)

pytestmark = pytest.mark.slow

STEPS = ("clean", "match", "indicators", "surveys", "sensitivity", "report")


def _ok(*args: object) -> str:
    out = bi.cli(*map(str, args))
    assert out.exit_code == 0, out.text
    return out.text


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A build of the sample, report included (the sweep is left out: it is slow and not needed)."""
    if not (bi.SAMPLE_DIR / "IR_BEN_R.parquet").exists():
        pytest.skip(f"the committed sample extract is missing from {bi.SAMPLE_DIR}")
    out = tmp_path_factory.mktemp("prov") / "build"
    _ok("run", "--data", bi.SAMPLE_DIR, "--out", out, "--no-sweep", "--no-pdf")
    return out


@pytest.fixture()
def build(base: Path, tmp_path: Path) -> Path:
    # copytree keeps modification times, so the recorded output hashes stay trusted without re-reading.
    return Path(shutil.copytree(base, tmp_path / "build"))


def _finished(build: Path) -> dict[str, str]:
    """When each step last finished, from its params.json."""
    out = {}
    for step in STEPS:
        record = read_provenance(BuildPaths(build), step)
        assert record is not None, f"the params.json of {step} holds no provenance"
        out[step] = record.finished_at
    return out


def _reran(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {s for s in before if before[s] != after[s]}


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_every_step_records_its_settings_code_inputs_and_outputs(base: Path):
    chain = check_chain(BuildPaths(base))
    assert [r.step for r in chain] == ["clean", "match", "indicators", "surveys", "sensitivity"]
    assert all(isinstance(r, StepProvenance) and r.settings_hash and r.code and r.finished_at for r in chain)
    by_step = {r.step: r for r in chain}
    # A consumer's input hash is its producer's output hash: the chain links up.
    assert by_step["match"].inputs["cohort"] == by_step["clean"].outputs["cohort"].sha256
    assert by_step["indicators"].inputs["matched"] == by_step["match"].outputs["matched"].sha256
    assert any(k.startswith("extract:") for k in by_step["clean"].inputs)
    assert any(k.startswith("extract:surveys") or "surveys" in k for k in by_step["surveys"].inputs)
    report = read_provenance(BuildPaths(base), "report")
    assert report is not None and report.inputs["indicators"] == by_step["indicators"].outputs["indicators"].sha256


def test_rematch_then_report_is_refused_naming_the_stale_output(build: Path):
    html = build / "report" / "report.html"
    html.unlink()
    _ok("match", "--out", build, "--caliper", "0.05")
    out = bi.cli("report", "--data", bi.SAMPLE_DIR, "--out", build, "--no-pdf")
    assert out.exit_code == 2, out.text
    for fragment in ("indicators/", "matching/matched.parquet", "`equilibres indicators --out", "--refresh"):
        assert fragment in out.text, out.text
    assert not html.exists()  # nothing mixed was rendered
    # A step run alone that reads the stale results refuses them too; one that does not is free to run.
    assert [s.step for s in stale_steps(BuildPaths(build))] == ["indicators", "sensitivity"]


def test_report_refresh_reruns_the_stale_steps_then_renders_one_chain(build: Path):
    _ok("match", "--out", build, "--caliper", "0.05")
    before = _finished(build)
    _ok("report", "--data", bi.SAMPLE_DIR, "--out", build, "--no-pdf", "--refresh")
    after = _finished(build)
    assert _reran(before, after) == {"indicators", "sensitivity", "report"}
    chain = {r.step: r for r in check_chain(BuildPaths(build))}
    assert chain["indicators"].inputs["matched"] == chain["match"].outputs["matched"].sha256
    caliper = json.loads((build / "matching" / "params.json").read_text(encoding="utf-8"))["matching"]["caliper"]
    assert caliper == 0.05  # --refresh redoes what follows the new matching, it does not undo it


def test_indicators_alone_refuses_a_hand_edited_matching_output(build: Path):
    with open(build / "matching" / "balance.csv", "a", encoding="utf-8") as fh:
        fh.write(",".join(["age"] * 5) + "\n")
    out = bi.cli("indicators", "--out", build, "--replicates", "99")
    assert out.exit_code == 2, out.text
    assert "matching/balance.csv was modified" in out.text and "`equilibres match --out" in out.text, out.text
    out = bi.cli("report", "--data", bi.SAMPLE_DIR, "--out", build, "--no-pdf")
    assert out.exit_code == 2 and "matching/balance.csv was modified" in out.text, out.text


def test_sweep_alone_refuses_a_hand_edited_cohort_and_writes_nothing(build: Path):
    path = build / "clean" / "cohort.parquet"
    pd.read_parquet(path).iloc[:-1].to_parquet(path, index=False)
    out = bi.cli("sweep", "--out", build)
    assert out.exit_code == 2, out.text
    assert "clean/cohort.parquet was modified" in out.text and "`equilibres clean --data" in out.text, out.text
    assert not (build / "sweep" / "sweep.csv").exists()


def test_a_rewritten_matched_table_is_detected(build: Path):
    path = build / "matching" / "matched.parquet"
    pd.read_parquet(path).iloc[:-1].to_parquet(path, index=False)
    assert any("matched.parquet was modified" in r for r in inconsistencies(BuildPaths(build), "match"))
    with pytest.raises(PipelineError, match="matched.parquet was modified"):
        check_chain(BuildPaths(build))


def test_a_file_touched_but_unchanged_is_not_stale(build: Path):
    path = build / "indicators" / "eol.csv"
    path.write_bytes(path.read_bytes())  # new modification time, same content
    assert stale_steps(BuildPaths(build)) == []


def test_run_with_a_new_matching_setting_reruns_matching_and_what_follows(build: Path, tmp_path: Path):
    before = _finished(build)
    cfg = _config(tmp_path, "[matching]\ncaliper = 0.05\n")
    assert "[matching]" in " ".join(outdated(BuildPaths(build), "match", _load(cfg)))
    text = _ok("run", "--data", bi.SAMPLE_DIR, "--out", build, "--no-sweep", "--no-pdf", "--config", cfg)
    assert _reran(before, _finished(build)) == {"match", "indicators", "sensitivity", "report"}
    assert "Re-run: match, indicators, sensitivity, report" in text, text
    assert check_chain(BuildPaths(build))


def test_run_after_a_cleaning_switch_reruns_cleaning_and_everything_after(build: Path, tmp_path: Path):
    before = _finished(build)
    cfg = _config(tmp_path, "[cleaning]\ndrop_dpn_qlf_71 = false\n")
    _ok("run", "--data", bi.SAMPLE_DIR, "--out", build, "--no-sweep", "--no-pdf", "--config", cfg)
    # The surveys do not read the cleaning outputs: they are reused.
    assert _reran(before, _finished(build)) == {"clean", "match", "indicators", "sensitivity", "report"}
    assert check_chain(BuildPaths(build))


def test_run_after_a_report_setting_rerenders_only_the_report(build: Path, tmp_path: Path):
    before = _finished(build)
    cfg = _config(tmp_path, "[report]\nagreement_tolerance = 0.2\n")
    text = _ok("run", "--data", bi.SAMPLE_DIR, "--out", build, "--no-sweep", "--no-pdf", "--config", cfg)
    assert _reran(before, _finished(build)) == {"report"}
    assert "Re-run: report; reused (up to date): clean, match, indicators, surveys, sensitivity." in text, text


def test_run_with_nothing_changed_reruns_nothing(build: Path):
    before = _finished(build)
    text = _ok("run", "--data", bi.SAMPLE_DIR, "--out", build, "--no-sweep", "--no-pdf")
    assert _reran(before, _finished(build)) == set()
    assert "Re-run: nothing" in text, text


def test_a_build_without_any_record_is_not_checked(tmp_path: Path):
    from report_fixture import make_fixture_build

    build = make_fixture_build(tmp_path / "b")
    assert check_chain(BuildPaths(build)) == [] and build_chain(BuildPaths(build)) == []


def _load(path: Path):
    from pipeline.config import load_config

    return load_config(path)
