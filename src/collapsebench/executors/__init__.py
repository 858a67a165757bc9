"""Executors: where tasks run (the executors registry holds their factories).

A phase is a task (``collapsebench.phases:execute`` with the run directory, iteration and phase)
and so is each shard of a phase that splits its work (``PhaseContext.map_tasks``). Workers run
``python -m collapsebench task SPEC.json``: the spec names a function and plain data, and the
worker re-reads the run directory's config and re-imports the plug-ins; no object is pickled.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from collapsebench.api import Task, run_task
from collapsebench.errors import UserError
from collapsebench.layout import RunLayout


def run_task_file(path: str | Path) -> Any:
    """Run the task described by a spec file written by :meth:`collapsebench.api.Task.command`."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"task spec not found: {file}")
    spec = json.loads(file.read_text())
    context = (int(spec["context"][0]), str(spec["context"][1])) if spec.get("context") else None
    return run_task(Task(key=spec["key"], target=spec["target"], kwargs=spec["kwargs"], run_dir=spec["run_dir"],
                         context=context))


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
