"""The one I/O module: atomic writes, the build-directory layout, run locks.

Stages never touch files; runners call these helpers. Every output is written to a temporary file in
the same directory and renamed into place, so a failed or interrupted run leaves the previous output
intact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd


class PipelineError(RuntimeError):
    """An error a user can act on; the CLI prints its message (no traceback) and exits non-zero."""

    exit_code = 2


class LockError(PipelineError):
    exit_code = 3


@contextlib.contextmanager
def _atomic_target(path: Path) -> Iterator[Path]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates the file readable by its owner only; an output gets the usual mode (umask).
    os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    with _atomic_target(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with _atomic_target(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str, ensure_ascii=False))


def atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    with _atomic_target(path) as tmp:
        frame.to_parquet(tmp, index=False)


def atomic_write_csv(path: Path, frame: pd.DataFrame) -> None:
    with _atomic_target(path) as tmp:
        frame.to_csv(tmp, index=False)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write to; it is renamed to ``path`` only if the block succeeds."""
    with _atomic_target(path) as tmp:
        yield tmp


@contextlib.contextmanager
def build_lock(build: Path, step: str) -> Iterator[None]:
    """An exclusive lock on a build directory, so two runs cannot interleave their writes."""
    import fcntl

    build = Path(build)
    build.mkdir(parents=True, exist_ok=True)
    lock_path = build / ".lock"
    fh = open(lock_path, "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another run"
        fh.close()
        raise LockError(
            f"Build directory {build} is locked by {holder}. Wait for it to finish, or use another "
            f"--out directory. If no run is active, delete {lock_path}."
        ) from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"'equilibres {step}' (pid {os.getpid()})")
        fh.flush()
        yield
    finally:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory so far, in MiB (Linux ru_maxrss is in KiB).

    A process-lifetime peak: in `equilibres run`, a later step reports at least the peak of the
    earlier ones. ``children=True`` also counts finished children and live descendants (the Spark JVM
    of the cleaning engine).
    """
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if not children:
        return round(own, 1)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return round(max(own, kids, live_children_peak_mb()), 1)


def live_children_peak_mb() -> float:
    """The largest peak resident memory (VmHWM) among the live descendants of this process, in MiB."""
    me = str(os.getpid())
    peak = 0.0
    try:
        entries = os.listdir("/proc")
    except OSError:  # pragma: no cover - not Linux
        return 0.0
    parents: dict[str, str] = {}
    for pid in entries:
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                parents[pid] = fh.read().rsplit(")", 1)[1].split()[1]
        except OSError:
            continue
    descendants, frontier = set(), {me}
    while frontier:
        nxt = {p for p, pp in parents.items() if pp in frontier and p not in descendants}
        descendants |= nxt
        frontier = nxt
    for pid in descendants:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            continue
    return peak


# Files at most this large are hashed in full (sha256, streamed); larger ones by size, mtime and a
# sha256 of 32 evenly spaced 1 MiB blocks plus the last one, so a 10 GB extract is fingerprinted in
# well under a second. Any rewrite of a file changes its mtime, so the sample cannot miss an edit
# made by a normal tool.
FULL_HASH_MAX_BYTES = 256 * 1024 * 1024
SAMPLE_BLOCKS = 32
HASH_BLOCK = 1024 * 1024
HASH_METHOD = (f"sha256 of the whole file up to {FULL_HASH_MAX_BYTES // 2**20} MiB; above, sha256 of "
               f"size, mtime and {SAMPLE_BLOCKS}+1 sampled 1 MiB blocks")


def file_hash(path: Path) -> dict[str, Any]:
    """The content fingerprint of one file: ``{"sha256", "size", "method"}`` (see HASH_METHOD).

    The one file hasher of the project: steps record ``file_hash(p)["sha256"]`` (or its first 16
    characters) for the inputs they read.
    """
    path = Path(path)
    st = path.stat()
    h = hashlib.sha256()
    if st.st_size <= FULL_HASH_MAX_BYTES:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(HASH_BLOCK), b""):
                h.update(chunk)
        return {"sha256": h.hexdigest(), "size": st.st_size, "method": "sha256"}
    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    with open(path, "rb") as fh:
        step = max(1, (st.st_size - HASH_BLOCK) // SAMPLE_BLOCKS)
        for off in [*range(0, st.st_size - HASH_BLOCK, step)][:SAMPLE_BLOCKS] + [st.st_size - HASH_BLOCK]:
            fh.seek(off)
            h.update(fh.read(HASH_BLOCK))
    return {"sha256": h.hexdigest(), "size": st.st_size, "method": "sampled-sha256+size+mtime"}


ROLLBACK_DIR = "rollback"


@contextlib.contextmanager
def restore_on_failure(root: Path, *dirs: Path) -> Iterator[None]:
    """Leave the files under ``dirs`` exactly as they were if the block fails or is interrupted.

    Each file is written atomically, but a step writes several files: without this, a failure after
    the first rename would leave new outputs beside an old manifest. Before the block, every file
    under ``dirs`` is hard-linked (copied where links are impossible) into ``<root>/tmp/rollback``;
    writers replace files by rename, so the links keep the previous contents at no copy cost. If the
    block raises (KeyboardInterrupt included), the previous files are put back and the files the
    block created are removed; if it succeeds, the snapshot is dropped. A snapshot left behind by a
    killed run (SIGKILL, power cut) is restored the next time a step enters this block. The caller
    must hold :func:`build_lock`, so no other run writes meanwhile.
    """
    import shutil

    root = Path(root)
    # One snapshot per set of directories, so a leftover of another step is never applied here.
    snap = root / "tmp" / ROLLBACK_DIR / "+".join(str(Path(d).relative_to(root)).replace("/", "_") for d in dirs)
    done = snap / ".complete"
    if snap.exists():
        if done.exists():
            _rollback(root, snap, dirs)
        shutil.rmtree(snap, ignore_errors=True)
    for d in dirs:
        for f in _files_under(Path(d)):
            target = snap / f.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(f, target)
            except OSError:
                shutil.copy2(f, target)
    snap.mkdir(parents=True, exist_ok=True)
    done.touch()
    try:
        yield
    except BaseException:
        _rollback(root, snap, dirs)
        shutil.rmtree(snap, ignore_errors=True)
        raise
    shutil.rmtree(snap, ignore_errors=True)


def _files_under(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file()) if d.is_dir() else []


def _rollback(root: Path, snap: Path, dirs: tuple[Path, ...]) -> None:
    saved = {p.relative_to(snap) for p in _files_under(snap) if p.name != ".complete"}
    for d in dirs:
        for f in _files_under(Path(d)):
            if f.relative_to(root) not in saved:
                f.unlink(missing_ok=True)
    for rel in sorted(saved):
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(snap / rel, target)
