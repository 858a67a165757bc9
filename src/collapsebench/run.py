"""The run directory as the driver writes it: config snapshot, journal (``state.json``), lock,
removal of steps, and ``metrics.jsonl``. Everything read-only lives in :mod:`collapsebench.layout`.

The journal (:mod:`collapsebench.journal`) records, per (iteration, phase), status, times, seed,
fingerprint and stats. Only the driver writes it, atomically; phases prove their completion by their
committed folders.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any

import yaml

from collapsebench import journal
from collapsebench.config import Config
from collapsebench.errors import UserError
from collapsebench.io import STALE_S, FileLock, atomic_write
from collapsebench.journal import RunState
from collapsebench.layout import LOCK_FILE, RunLayout


class RunDir(RunLayout):
    """A run directory with write access: only the driver holds one."""

    def __init__(self, path: str | Path):
        super().__init__(path)
        self._lock = FileLock(self.path / LOCK_FILE)

    def save_config(self, config: Config) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.config_file, yaml.safe_dump(config.dump(), sort_keys=False))

    def write_state(self, state: RunState) -> None:
        atomic_write(self.state_file, journal.dumps(state))

    def lock(self) -> None:
        """Hold the run directory's lock (released when the process dies): one driver at a time."""
        if not self._lock.acquire():
            holder = self._lock.holder()
            who = f"pid {holder[0]} on {holder[1]}" if holder else "another process"
            raise UserError(f"run directory {self.path} is in use by {who}; wait for it or stop it")

    def unlock(self) -> None:
        self._lock.release()

    def stop_worker(self, iteration: int, phase: str, patience: float = 30.0) -> int | None:
        """Stop a process still working on a step that the driver is about to run (an orphan of a
        killed driver): on this machine it is terminated; on another one the driver waits for its
        heartbeat to go stale. Returns the pid that was stopped."""
        lock = FileLock(self.step_lock(iteration, phase))
        holder = lock.holder()
        if holder is None:
            return None
        pid, host, _ = holder
        if host != socket.gethostname() or pid <= 0:
            deadline = time.time() + STALE_S + patience
            while lock.holder() is not None:
                if time.time() > deadline:
                    raise UserError(f"step {iteration}.{phase} is still worked on by pid {pid} on {host}; "
                                    "stop that process (or its job) and run again")
                time.sleep(1.0)
            return None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.time() + patience
            while lock.holder() is not None and time.time() < deadline:
                time.sleep(0.1)
            if lock.holder() is None:
                return pid
        raise UserError(f"step {iteration}.{phase}: pid {pid} holds its lock and does not stop")

    def remove_step(self, iteration: int, phase: str) -> None:
        for path in (self.phase_dir(iteration, phase), self.tmp_dir(iteration, phase)):
            if path.exists():
                shutil.rmtree(path)

    def rebuild_metrics(self, iteration: int | None = None) -> list[dict[str, Any]]:
        """Rewrite metrics.jsonl from the committed phases (one row per evaluated iteration).

        With ``iteration``, rows of earlier iterations are kept from the file (they cannot have
        changed: steps run in order) and only that iteration's row is read from its folders."""
        evaluated = list(self.evaluated_iterations())
        if iteration is None:
            rows = [self.metrics_row(k) for k in evaluated]
        else:
            kept = {r["iteration"]: r for r in self.read_metrics() if r["iteration"] < iteration}
            rows = [kept.get(k) or self.metrics_row(k) for k in evaluated if k <= iteration]
        atomic_write(self.metrics_file, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        return rows
