"""The run directory as the driver writes it: config snapshot, journal (``state.json``), lock,
removal of steps, and ``metrics.jsonl``. Everything read-only lives in :mod:`collapsebench.layout`.

The journal records, per (iteration, phase), status, times, seed, fingerprint and stats. Only the
driver writes it, atomically; phases prove their completion by their committed folders.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from pathlib import Path
from typing import IO, Any

import yaml

from collapsebench.config import Config
from collapsebench.errors import UserError
from collapsebench.io import atomic_write
from collapsebench.layout import LOCK_FILE, RunLayout


class RunDir(RunLayout):
    """A run directory with write access: only the driver holds one."""

    def __init__(self, path: str | Path):
        super().__init__(path)
        self._lock_fh: IO[str] | None = None

    def save_config(self, config: Config) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.config_file, yaml.safe_dump(config.dump(), sort_keys=False))

    def write_state(self, state: dict[str, Any]) -> None:
        # one step per line: readable, and encoded by json's C encoder (indent= would not use it)
        head = {k: v for k, v in state.items() if k != "steps"}
        lines = [f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True, default=float)}" for k, v in state["steps"].items()]
        body = json.dumps(head, sort_keys=True)[:-1] + (", " if head else "") + '"steps": {\n' + ",\n".join(lines) + "\n}}\n"
        atomic_write(self.state_file, body)

    def lock(self) -> None:
        """Hold an exclusive lock on the run directory (released when the process dies)."""
        self.path.mkdir(parents=True, exist_ok=True)
        fh = open(self.path / LOCK_FILE, "a+")  # noqa: SIM115 - held open for as long as the lock
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            owner = fh.read().strip() or "another process"
            fh.close()
            raise UserError(f"run directory {self.path} is in use by {owner}; wait for it or stop it") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        self._lock_fh = fh

    def unlock(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

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


def now() -> float:
    return round(time.time(), 3)
