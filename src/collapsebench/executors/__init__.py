"""Executors: where tasks run (the executors registry holds their factories).

A phase is a task (:func:`collapsebench.phases.execute` with the run directory, iteration and phase)
and so is each shard of a phase that splits its work (``PhaseContext.map_tasks``). Workers run
``python -m collapsebench task SPEC.json``: the spec names a function and plain data, and the
worker re-reads the run directory's config and re-imports the plug-ins; no object is pickled.
A phase's long-lived workers (``PhaseContext.workers``) run several such tasks each, one after
another in one process (:mod:`collapsebench.executors.workers`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from collapsebench.api import Task, run_task
from collapsebench.errors import UserError


def run_task_file(path: str | Path) -> Any:
    """Run the task described by a spec file written by :meth:`collapsebench.api.Task.command`."""
    from collapsebench.models.loading import quiet_libraries

    quiet_libraries()
    file = Path(path)
    if not file.is_file():
        raise UserError(f"task spec not found: {file}")
    spec = json.loads(file.read_text())
    context = (int(spec["context"][0]), str(spec["context"][1])) if spec.get("context") else None
    return run_task(Task(key=spec["key"], target=spec["target"], kwargs=spec["kwargs"], run_dir=spec["run_dir"],
                         context=context))

