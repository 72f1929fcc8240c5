"""The project installs quietly and ships what it needs (issue 17, part 5).

Builds a wheel from a copy of the sources with pip (build isolation, as a fresh clone does) and checks
that the build backend has nothing to warn about and that the package data (report templates and
texts, study configuration, codebooks, the committed sample) is inside the wheel.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "matching", "indicators", "surveys", "reports", "study", "data_samples")
# Lines a build may print that come from the machine's pip configuration, not from this project.
ENVIRONMENT_NOISE = ("WARNING: Location 'file://",)


def _source_copy(dest: Path) -> Path:
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("packaging")
    src = _source_copy(tmp / "src")
    out = tmp / "wheel"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(src), "-w", str(out)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and "No matching distribution found" in proc.stderr:
        pytest.skip("no package index to fetch the build backend from: " + proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1
    return wheels[0], proc.stdout + proc.stderr


@pytest.mark.slow
def test_the_build_prints_no_packaging_warning(built_wheel: tuple[Path, str]):
    _, output = built_wheel
    noise = [line for line in output.splitlines()
             if line.strip() and not line.startswith(ENVIRONMENT_NOISE)]
    assert noise == [], "the build backend printed:\n" + "\n".join(noise)


@pytest.mark.slow
def test_the_wheel_ships_code_and_package_data(built_wheel: tuple[Path, str]):
    wheel, _ = built_wheel
    names = set(zipfile.ZipFile(wheel).namelist())
    for pkg in PACKAGES:
        assert f"{pkg}/__init__.py" in names, pkg
    expected = ["pipeline/config/equilibres.toml", "reports/texts/fr.toml", "reports/texts/en.toml",
                "reports/templates/report.html.j2", "data_samples/truth_default.toml"]
    assert [n for n in expected if n not in names] == []
    assert any(n.startswith("pipeline/config/codebooks/") for n in names)
    assert any(n.startswith("data_samples/sample/") and n.endswith(".parquet") for n in names)
    assert any(n.startswith("reports/static/") for n in names)
    # tests and benchmarks are not part of the distribution
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
