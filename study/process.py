"""Process settings of the `equilibres` command: how this process and its workers get fresh memory.

The steps allocate and free arrays of hundreds of megabytes (a scale-1 cohort is 5 million rows).
With the libraries' defaults each of them is fresh memory from the kernel, page-faulted in and
handed back: at scale 1, `equilibres match` spent 18 s of system time on that against 8.6 s of
user time (22.7 s wall on the 2-core machine; benchmarks/results/match_step.json). Four settings,
together, bring it to about 10 s (system time 2 s):

* ``ARROW_DEFAULT_MEMORY_POOL=system``: Arrow allocates with malloc (below) rather than jemalloc,
  which returns freed pages to the kernel early;
* ``NUMPY_MADVISE_HUGEPAGE=0``: NumPy does not ask for transparent huge pages (on a VM with THP in
  ``madvise`` mode every large array then pays the defragmentation of its first touch);
* glibc's ``M_MMAP_MAX = 0`` and ``M_TRIM_THRESHOLD`` = 2 GiB: large blocks come from the heap and
  freed memory stays in the process for the next array instead of being unmapped and faulted again.
  Peak memory does not grow (it is reused, not kept in addition); it is released when the process
  ends, and the commands are short-lived.

Arrow and NumPy read their variables when they are first imported, so :func:`apply_process_settings`
runs before anything imports them (first thing in :mod:`study.cli`). Variables set in the
environment are inherited by every child process (the sweep's workers, spawned or forked; glibc reads
``MALLOC_MMAP_MAX_`` / ``MALLOC_TRIM_THRESHOLD_`` at start-up), and the current process, whose
allocator has already started, gets the same two settings through ``mallopt``.

A variable the user has set is left as it is (and the matching ``mallopt`` is then not called);
``EQUILIBRES_ALLOCATOR=default`` turns all of it off. On a C library other than glibc (musl,
macOS) the glibc part is skipped.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass, field

#: The switch: ``default`` keeps the libraries' own allocation settings.
SWITCH = "EQUILIBRES_ALLOCATOR"
SWITCH_VALUES = ("tuned", "default")

#: Read by Arrow and NumPy when first imported (any C library).
LIBRARY_ENVIRONMENT = {"ARROW_DEFAULT_MEMORY_POOL": "system", "NUMPY_MADVISE_HUGEPAGE": "0"}

#: glibc's tunables: the variable its child processes read at start-up -> the ``mallopt`` parameter
#: (name, number in malloc.h) and the value. 2 GiB - 1 is the largest threshold ``mallopt`` takes.
GLIBC_SETTINGS = {
    "MALLOC_MMAP_MAX_": ("M_MMAP_MAX", -4, 0),
    "MALLOC_TRIM_THRESHOLD_": ("M_TRIM_THRESHOLD", -1, 2**31 - 1),
}

#: Modules whose import reads the variables: if already imported, setting them now is too late.
READERS = {"ARROW_DEFAULT_MEMORY_POOL": "pyarrow", "NUMPY_MADVISE_HUGEPAGE": "numpy"}


@dataclass(frozen=True)
class ProcessSettings:
    """What :func:`apply_process_settings` did.

    ``applied``: the variables it set (name -> value); ``kept``: those already set by the user, left
    as they were; ``mallopt``: the glibc parameters set in this process; ``skipped``: why a part was
    not applied (switched off, not glibc, imported too late)."""

    mode: str
    applied: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)
    mallopt: dict[str, int] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    def render(self) -> str:
        lines = [f"allocation settings: {self.mode} ({SWITCH}={'|'.join(SWITCH_VALUES)})"]
        lines += [f"  {k}={v} (set)" for k, v in self.applied.items()]
        lines += [f"  {k}={v} (already set, kept)" for k, v in self.kept.items()]
        lines += [f"  mallopt({k}, {v})" for k, v in self.mallopt.items()]
        lines += [f"  skipped: {why}" for why in self.skipped]
        return "\n".join(lines)


def glibc() -> ctypes.CDLL | None:
    """The running glibc, or None (another C library, or none found)."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (AttributeError, OSError, ValueError):
        return None


def apply_process_settings(environ: MutableMapping[str, str] | None = None) -> ProcessSettings:
    """Set the allocation settings of the module doc for this process and its children (see there).
    Call it before numpy or pyarrow is imported; ``environ`` is for tests (default ``os.environ``)."""
    env = os.environ if environ is None else environ
    mode = env.get(SWITCH, "tuned").strip().lower() or "tuned"
    if mode not in SWITCH_VALUES:
        # Not a user error worth stopping a run for: the libraries' defaults are safe, only slower.
        return ProcessSettings(mode="default", skipped=(f"{SWITCH}={env[SWITCH]!r} is not one of "
                                                        f"{', '.join(SWITCH_VALUES)}: defaults kept",))
    if mode == "default":
        return ProcessSettings(mode=mode, skipped=(f"{SWITCH}=default",))
    applied: dict[str, str] = {}
    kept: dict[str, str] = {}
    skipped: list[str] = []
    libc = glibc()
    wanted = dict(LIBRARY_ENVIRONMENT)
    if libc is not None:
        wanted.update({name: str(value) for name, (_, _, value) in GLIBC_SETTINGS.items()})
    else:
        skipped.append("not glibc: malloc settings left as they are")
    for name, value in wanted.items():
        if name in env:
            kept[name] = env[name]
        else:
            env[name] = value
            applied[name] = value
            if READERS.get(name) in sys.modules:
                skipped.append(f"{READERS[name]} was imported before: {name} applies to child processes only")
    done: dict[str, int] = {}
    if libc is not None:
        for name, (parameter, number, value) in GLIBC_SETTINGS.items():
            if name in applied and libc.mallopt(number, value) == 1:
                done[parameter] = value
    return ProcessSettings(mode=mode, applied=applied, kept=kept, mallopt=done, skipped=tuple(skipped))
