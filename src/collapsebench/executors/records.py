"""The run's record of what the scheduling executors ran: ``<run>/jobs.jsonl``, one line per change
of a job's state (SLURM job id or Ray worker, task, state, log files, resources asked for), and
the live states that ``collapsebench status`` shows. No scheduler library is imported here."""

from __future__ import annotations

import json
import os
import subprocess as sp
import time
from pathlib import Path
from typing import Any

from collapsebench.layout import RunLayout

# states after which a job does nothing more (SLURM's, and ours: COMPLETED/FAILED/WORKER_DIED)
FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
                   "DEADLINE", "PREEMPTED", "UNCOMPLETED", "WORKER_DIED", "NOT_RUN"})


def record_job(run_dir: str | Path, **record: Any) -> None:
    """Append one record to the run's ``jobs.jsonl`` (what ran where: job ids, states, logs,
    resources); ``status`` shows the jobs whose last state is not final. Written by the executor
    in the driver, one line per write (appends of one line do not interleave)."""
    line = json.dumps({"time": round(time.time(), 3), **record}, sort_keys=True, default=str) + "\n"
    path = RunLayout(run_dir).jobs_file
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def last_states(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The latest record of every job (keyed by executor and job id, or task for Ray), older fields kept."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        key = (r.get("executor", ""), str(r.get("job_id") or r.get("key")))
        last[key] = {**last.get(key, {}), **r}
    return last


def live_jobs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The jobs whose last recorded state is not final, oldest first."""
    return [r for r in last_states(records).values() if r.get("state") not in FINAL]


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """Live states from ``sacct`` (empty where SLURM's tools are not on this machine)."""
    if not job_ids:
        return {}
    try:
        out = sp.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)], capture_output=True,
                     text=True, timeout=10, check=False)
    except (OSError, sp.TimeoutExpired):
        return {}
    states = {}
    for line in out.stdout.splitlines():
        job, _, state = line.partition("|")
        states[job] = state.split()[0] if state else ""
    return states
