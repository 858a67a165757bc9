"""Executors: where a phase runs. Workers get no pickled objects: they re-read the run directory's
config and re-import the plug-ins (``collapsebench phase RUN_DIR ITER.PHASE``)."""

from __future__ import annotations

import os
import subprocess as sp
import sys
from pathlib import Path

from collapsebench.errors import UserError


def inline(run_dir: Path, iteration: int, phase: str) -> None:
    """In the driver's own process (tests, CPU work)."""
    from collapsebench.phases import execute

    execute(run_dir, iteration, phase)


def subprocess(run_dir: Path, iteration: int, phase: str, env: dict[str, str] | None = None) -> None:
    """In a fresh Python process, so its memory (GPU memory included) is released when it ends."""
    cmd = [sys.executable, "-m", "collapsebench", "phase", str(run_dir), f"{iteration}.{phase}"]
    result = sp.run(cmd, env={**os.environ, **(env or {})})
    if result.returncode == 2:
        raise UserError(f"phase {iteration}.{phase} failed in its worker process (message above)")
    if result.returncode != 0:
        raise RuntimeError(f"phase {iteration}.{phase}: worker process exited with status {result.returncode}")
