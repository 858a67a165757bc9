"""Durable writes, content digests and seed derivation: the primitives every layer shares.

Everything a run commits goes through these writers, so that a reader (or a resumed run) sees a
file's old content or its new content, never a mix, whenever the writer dies: write a temporary
file next to the target, fsync it, rename it over the target, fsync the folder.

Durability can be batched (:func:`deferred_sync`): a driver that commits many small steps at once
(the batched driver of vector worlds) skips the per-file fsyncs, about 6 ms each on a VM disk, and
makes everything durable with one :func:`sync` before its renames and one after.

Seeds: one derivation, :func:`derive_seed`, a hash of the parts joined by ``:``. Per-(iteration,
phase) seeds (:func:`phase_seed`) and per-shard seeds use it with different widths, so the seeds
(and every output) of existing runs stay what they were.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import hashlib
import json
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

STATS_FILE = "stats.json"
SCRATCH = ".cache"  # a work folder's scratch space, removed before it is committed


_DEFERRED: contextvars.ContextVar[bool] = contextvars.ContextVar("deferred_sync", default=False)


@contextlib.contextmanager
def deferred_sync() -> Iterator[None]:
    """Inside: the writers of this module skip their fsyncs; the caller makes the files durable
    with :func:`sync` before it relies on them (before the renames that commit them), or never,
    for files derived from committed ones and rewritten anyway (a run's cards)."""
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def sync() -> None:
    """Everything written so far reaches the disk: one flush instead of one fsync per file."""
    os.sync()


def cache_folder(name: str) -> Path:
    """``~/.cache/collapsebench/<name>``: where what is kept between runs lives (tokenized
    corpora, the report's compiled template), one folder per kind."""
    return Path.home() / ".cache" / "collapsebench" / name


def _fsync(fd: int) -> None:
    if not _DEFERRED.get():
        os.fsync(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    if _DEFERRED.get():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a fsynced temporary file and a rename."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            _fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_with(path: Path, write: Callable[[Path], Any]) -> None:
    """Let ``write(tmp_path)`` produce the file (e.g. a Parquet writer), then fsync and rename it."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            _fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON (numpy scalars as floats), atomically."""
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True, default=float))


def commit_folder(tmp: Path, final: Path, stats: dict[str, Any]) -> None:
    """Write ``stats.json`` into the work folder ``tmp`` and rename it to ``final`` (atomic).

    The same protocol commits a phase (``<phase>.tmp`` → ``<phase>``) and a part of a phase that
    resumes by parts (a training stage): the committed folder is the proof that the work finished."""
    seal_folder(tmp, stats)
    publish_folder(tmp, final)


def seal_folder(tmp: Path, stats: dict[str, Any]) -> None:
    """The first half of :func:`commit_folder`: ``stats.json`` written, scratch space removed."""
    json.dumps(stats, default=float)  # fail before committing if the stats are not serialisable
    write_json(tmp / STATS_FILE, stats)
    shutil.rmtree(tmp / SCRATCH, ignore_errors=True)


def publish_folder(tmp: Path, final: Path) -> None:
    """The second half of :func:`commit_folder`: the rename that commits a sealed work folder."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def is_committed(folder: Path) -> bool:
    return (folder / STATS_FILE).exists()


def read_stats(folder: Path) -> dict[str, Any]:
    stats: dict[str, Any] = json.loads((folder / STATS_FILE).read_text())
    return stats


def digest(obj: Any) -> str:
    """A short content hash of JSON-able data (key order does not matter)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def derive_seed(*parts: object, hex_digits: int = 15) -> int:
    """A seed from any parts (the experiment seed, an iteration, a phase name, a shard index).

    ``hex_digits`` sets the width: 15 (60 bits) by default, 8 for per-phase seeds."""
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:hex_digits], 16)


def phase_seed(seed: int, iteration: int, phase: str) -> int:
    """The seed of one (iteration, phase), derived from the experiment seed; recorded in the journal."""
    return derive_seed(seed, iteration, phase, hex_digits=8)


# ------------------------------------------------------------------------------------ process locks

HEARTBEAT_S = 20.0  # a lock holder touches its file this often
STALE_S = 120.0  # a holder on another machine silent this long is presumed dead


class FileLock:
    """An exclusive lock on a file, held by one process (the kernel releases it when the process
    dies), naming its holder (``pid host``) and beating a heartbeat (the file's mtime) so a holder
    on another machine, where the kernel lock does not reach, can be told alive from dead."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fh: Any = None
        self._stop = threading.Event()

    def acquire(self) -> bool:
        """Take the lock if it is free; False if another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held open for as long as the lock
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} {socket.gethostname()}")
        fh.flush()
        self._fh = fh
        self._stop.clear()
        threading.Thread(target=self._beat, daemon=True).start()
        return True

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        if self._fh is not None:
            self._stop.set()
            self._fh.seek(0)
            self._fh.truncate()  # no holder named any more
            self._fh.flush()
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def holder(self) -> tuple[int, str, float] | None:
        """(pid, host, seconds since its heartbeat) of the process holding the lock, or None."""
        if not self.path.exists():
            return None
        with open(self.path) as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pid, host = _owner(fh.read())
                return pid, host, time.time() - self.path.stat().st_mtime
            fcntl.flock(fh, fcntl.LOCK_UN)
            pid, host = _owner(fh.read())
        if host and host != socket.gethostname() and time.time() - self.path.stat().st_mtime < STALE_S:
            return pid, host, time.time() - self.path.stat().st_mtime  # alive elsewhere: flock cannot tell
        return None


def _owner(text: str) -> tuple[int, str]:
    parts = text.split()
    if len(parts) >= 2 and parts[0] == "pid" and parts[1].isdigit():
        return int(parts[1]), parts[2] if len(parts) > 2 else ""
    return 0, ""
