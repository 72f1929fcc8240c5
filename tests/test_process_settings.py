"""The allocation settings of the `equilibres` process (study/process.py): in effect in the command's
process and in the processes it starts, a user's own settings kept, switchable off, skipped off glibc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from study import process

ROOT = Path(__file__).resolve().parents[1]
VARIABLES = [*process.LIBRARY_ENVIRONMENT, *process.GLIBC_SETTINGS]

#: Imports the command line as the `equilibres` script does, then reports what is in effect: in this
#: process (Arrow's memory pool, the variables) and in a child process it starts (as a sweep worker).
PROBE = """
import json, os, subprocess, sys
import study.cli
import pyarrow
child = subprocess.run([sys.executable, "-c", "import os, json, pyarrow; print(json.dumps("
                        "[pyarrow.default_memory_pool().backend_name, dict(os.environ)]))"],
                       capture_output=True, text=True, check=True)
pool, child_env = json.loads(child.stdout)
print(json.dumps({"pool": pyarrow.default_memory_pool().backend_name, "env": dict(os.environ),
                  "child_pool": pool, "child_env": child_env,
                  "settings": {"mode": study.cli.PROCESS_SETTINGS.mode,
                               "mallopt": study.cli.PROCESS_SETTINGS.mallopt}}))
"""


def probe(**env: str) -> dict:
    clean_env = {k: v for k, v in os.environ.items() if k not in VARIABLES and k != process.SWITCH}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env={**clean_env, **env}, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_command_process_and_its_children_use_the_tuned_allocation():
    seen = probe()
    assert seen["settings"]["mode"] == "tuned"
    assert seen["pool"] == "system" and seen["child_pool"] == "system"
    for name, value in process.LIBRARY_ENVIRONMENT.items():
        assert seen["env"][name] == value and seen["child_env"][name] == value
    if process.glibc() is not None:
        assert seen["settings"]["mallopt"] == {"M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": 2**31 - 1}
        assert seen["child_env"]["MALLOC_MMAP_MAX_"] == "0"


def test_a_users_own_setting_is_kept():
    import pyarrow

    if "mimalloc" not in pyarrow.supported_memory_backends():
        pytest.skip("this pyarrow has no mimalloc pool to choose")
    seen = probe(ARROW_DEFAULT_MEMORY_POOL="mimalloc")
    assert seen["pool"] == "mimalloc" and seen["env"]["ARROW_DEFAULT_MEMORY_POOL"] == "mimalloc"
    assert seen["env"]["NUMPY_MADVISE_HUGEPAGE"] == "0"  # the others still set


def test_switched_off_the_libraries_defaults_stay():
    seen = probe(EQUILIBRES_ALLOCATOR="default")
    assert seen["settings"] == {"mode": "default", "mallopt": {}}
    assert not any(name in seen["env"] or name in seen["child_env"] for name in VARIABLES)
    assert seen["pool"] == seen["child_pool"]  # the library's own default, as in a plain process


def test_only_unset_variables_are_set_and_reported():
    env = {"NUMPY_MADVISE_HUGEPAGE": "1"}
    done = process.apply_process_settings(env)
    assert env["NUMPY_MADVISE_HUGEPAGE"] == "1" and done.kept == {"NUMPY_MADVISE_HUGEPAGE": "1"}
    assert env["ARROW_DEFAULT_MEMORY_POOL"] == "system" and "ARROW_DEFAULT_MEMORY_POOL" in done.applied
    assert "ARROW_DEFAULT_MEMORY_POOL=system (set)" in done.render()


def test_without_glibc_only_the_library_variables_are_set(monkeypatch):
    monkeypatch.setattr(process, "glibc", lambda: None)
    env: dict[str, str] = {}
    done = process.apply_process_settings(env)
    assert env == process.LIBRARY_ENVIRONMENT and done.mallopt == {}
    assert any("not glibc" in why for why in done.skipped)


def test_an_unknown_switch_value_keeps_the_defaults():
    env = {process.SWITCH: "fast"}
    done = process.apply_process_settings(env)
    assert env == {process.SWITCH: "fast"} and done.mode == "default" and "'fast'" in done.skipped[0]
