"""Long-lived workers fed through files of the run directory: the queue that the local processes
(:mod:`collapsebench.executors.local`) and the SLURM jobs (:mod:`collapsebench.executors.slurm`)
of ``PhaseContext.workers`` read. Ray's workers are actors and need no queue.

A worker's queue is a folder, ``<run>/.workers/<iteration>.<phase>.<name>/w<i>/``: the driver
writes ``task-<n>.json`` (a task's spec, numbered from 1) and, to end the worker, ``stop``; the
worker (``python -m collapsebench worker FOLDER``, or a SLURM job) runs the tasks in order and
writes each one's outcome to ``task-<n>.out.json``. Files, not pipes, because a SLURM job on
another node sees only the shared filesystem; every write is atomic (rename), so a reader never
sees half a file.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collapsebench.errors import UserError
from collapsebench.executors import run_task_file
from collapsebench.io import atomic_write
from collapsebench.tasks import Task


def queue_folder(run_dir: str, name: str, worker: int) -> Path:
    return Path(run_dir) / ".workers" / name / f"w{worker}"


class Queue:
    """One worker's queue folder, as the driver sees it."""

    def __init__(self, folder: Path):
        self.folder = folder
        shutil.rmtree(folder, ignore_errors=True)  # what an earlier driver left: its tasks are not ours
        folder.mkdir(parents=True)
        self.sent = 0

    def put(self, task: Task) -> Path:
        """Queue ``task``; the path its outcome will be written to."""
        self.sent += 1
        task.write_spec(self.folder / f"task-{self.sent:06d}.json")
        return outcome_file(self.folder, self.sent)

    def stop(self) -> None:
        atomic_write(self.folder / "stop", "")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def outcome_file(folder: Path, n: int) -> Path:
    return folder / f"task-{n:06d}.out.json"


def serve(folder: str | Path, poll_s: float = 0.05) -> dict[str, Any]:
    """The worker's loop: run tasks 1, 2, ... of the queue as they appear, write each outcome, and
    return (where it ran) once ``stop`` is there and no task is left. A task's failure is written
    as its outcome (the worker goes on); only a crash of the process ends the worker. A task with
    an outcome is skipped: a requeued SLURM worker goes on with the first task it had not finished."""
    from collapsebench.models.loading import quiet_libraries

    quiet_libraries()
    folder = Path(folder)
    n = 1
    while True:
        spec = folder / f"task-{n:06d}.json"
        if outcome_file(folder, n).exists():
            n += 1
        elif spec.exists():
            atomic_write(outcome_file(folder, n), json.dumps(run_outcome(spec), default=str))
            n += 1
        elif (folder / "stop").exists():
            return {"pid": os.getpid(), "host": socket.gethostname(), "tasks": n - 1}
        else:
            time.sleep(poll_s)


def run_outcome(spec: Path) -> dict[str, Any]:
    """Run one task; its outcome as data: its result, or its failure (a user error kept apart)."""
    where = {"pid": os.getpid(), "host": socket.gethostname()}
    try:
        return {**where, "result": run_task_file(spec)}
    except UserError as exc:
        return {**where, "user_error": str(exc)}
    except Exception as exc:  # reported to the driver, which raises it there
        return {**where, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


class FileFuture:
    """A task queued on a file-fed worker. ``ended()`` says why the worker is gone (None while it
    lives), so a worker that dies fails its tasks instead of leaving the driver waiting."""

    def __init__(self, key: str, out: Path, ended: Callable[[], str | None], poll_s: float):
        self.key, self.out, self.ended, self.poll_s = key, out, ended, poll_s

    def done(self) -> bool:
        return self.out.exists() or self.ended() is not None

    def result(self) -> Any:
        while not self.out.exists():
            gone = self.ended()
            if gone is not None and not self.out.exists():
                raise RuntimeError(f"task {self.key}: {gone}")
            time.sleep(self.poll_s)
        outcome = json.loads(self.out.read_text())
        if "user_error" in outcome:
            raise UserError(outcome["user_error"])
        if "error" in outcome:
            raise RuntimeError(f"task {self.key} failed in its worker (pid {outcome['pid']} on {outcome['host']}): "
                               f"{outcome['error']}\n{outcome['traceback']}")
        return outcome["result"]
