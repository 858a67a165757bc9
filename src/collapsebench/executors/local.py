"""Executors on this machine: ``inline`` (in the driver's process) and ``subprocess`` (a fresh
Python process per task, so its memory, GPU memory included, is released when it ends).

Both start a phase's long-lived workers (``PhaseContext.workers``) as child processes of the
phase's process (:class:`ProcessWorkers`): a worker has an interpreter and environment of its own,
which no thread of the driver can have.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import signal
import subprocess as sp
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from collapsebench.api import Resources, Task, WorkerSpec, run_task
from collapsebench.errors import UserError
from collapsebench.executors.workers import FileFuture, Queue, queue_folder

LOG_TAIL = 3000  # characters of a failed task's log quoted in the error


def _die_with_parent() -> None:
    """In the worker, before it starts: ask Linux to terminate it when its parent (the driver)
    dies, so a killed driver leaves no worker writing into a folder a resumed run will reuse."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class InlineHandle:
    task: Task
    error: BaseException | None = None


class InlineExecutor:
    """Runs each task in this process when it is submitted (tests, CPU work, the default)."""

    name = "inline"
    coordinates_in_driver = False

    def submit(self, task: Task, resources: Resources) -> InlineHandle:
        handle = InlineHandle(task)
        try:
            run_task(task)
        except Exception as exc:  # re-raised by wait(), after the other handles
            handle.error = exc
        return handle

    def wait(self, handles: list[InlineHandle]) -> None:
        for handle in handles:
            if handle.error is not None:
                raise handle.error

    def start_workers(self, specs: Sequence[WorkerSpec], run_dir: str, name: str) -> ProcessWorkers:
        return ProcessWorkers(specs, run_dir, name)

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class ProcessHandle:
    task: Task
    env: dict[str, str]
    log: Path | None
    proc: sp.Popen[bytes] | None = None
    log_fh: IO[bytes] | None = field(default=None, repr=False)


class SubprocessExecutor:
    """Runs each task as ``python -m collapsebench task SPEC`` in a fresh process.

    ``workers``: how many run at once (tasks beyond that wait for a free slot); ``env``: extra
    environment for every task (a task's own ``env`` wins); ``python``: the workers' interpreter
    (e.g. a separate environment with vLLM); ``logs``: write each task's output to
    ``<run>/logs/<task>.log`` instead of this terminal and quote its end when it fails."""

    name = "subprocess"
    coordinates_in_driver = False

    def __init__(self, workers: int = 1, env: dict[str, str] | None = None, python: str | None = None,
                 logs: bool = False):
        if workers < 1:
            raise UserError(f"executor subprocess: workers must be >= 1, got {workers}")
        self.workers, self.env, self.python, self.logs = workers, dict(env or {}), python, logs

    def submit(self, task: Task, resources: Resources) -> ProcessHandle:
        log = Path(task.run_dir) / "logs" / (task.spec_file().stem + ".log") if self.logs else None
        return ProcessHandle(task, {**os.environ, **self.env, **task.env}, log)

    def _start(self, handle: ProcessHandle) -> None:
        out = None
        if handle.log is not None:
            handle.log.parent.mkdir(parents=True, exist_ok=True)
            out = handle.log_fh = open(handle.log, "wb")  # noqa: SIM115 - closed when the process ends
        handle.proc = sp.Popen(handle.task.command(self.python), env=handle.env, stdout=out,
                               stderr=sp.STDOUT if out else None, preexec_fn=_die_with_parent)

    def wait(self, handles: list[ProcessHandle]) -> None:
        pending: deque[ProcessHandle] = deque(handles)
        running: list[ProcessHandle] = []
        failures: list[ProcessHandle] = []
        while pending or running:
            while pending and len(running) < self.workers:
                handle = pending.popleft()
                self._start(handle)
                running.append(handle)
            for handle in [h for h in running if h.proc is not None and h.proc.poll() is not None]:
                running.remove(handle)
                if handle.log_fh is not None:
                    handle.log_fh.close()
                if handle.proc is not None and handle.proc.returncode != 0:
                    failures.append(handle)
            if running:
                time.sleep(0.05)
        if failures:
            raise self._failure(failures[0])

    def start_workers(self, specs: Sequence[WorkerSpec], run_dir: str, name: str) -> ProcessWorkers:
        return ProcessWorkers([s if s.python else dataclasses.replace(s, python=self.python) for s in specs],
                              run_dir, name, env=self.env)

    def close(self) -> None:
        """Nothing to release: every worker process has ended in ``wait``."""

    def _failure(self, handle: ProcessHandle) -> Exception:
        assert handle.proc is not None
        code, key = handle.proc.returncode, handle.task.key
        tail = ""
        if handle.log is not None and handle.log.exists():
            tail = ":\n" + handle.log.read_text(errors="replace")[-LOG_TAIL:]
        if code == 2:
            return UserError(f"task {key} failed in its worker process" + (tail or " (message above)"))
        return RuntimeError(f"task {key}: worker process exited with status {code}{tail}")




class ProcessWorkers:
    """Long-lived workers as child processes, ``python -m collapsebench worker QUEUE``, each fed
    through its queue folder (:mod:`collapsebench.executors.workers`); their output goes to
    ``<run>/logs/<name>.w<i>.log``. ``env`` is added to every worker's environment before its own."""

    poll_s = 0.05

    def __init__(self, specs: Sequence[WorkerSpec], run_dir: str, name: str, env: dict[str, str] | None = None):
        self.name = name
        self.queues: list[Queue] = []
        self.procs: list[sp.Popen[bytes]] = []
        self.logs: list[Path] = []
        logs = Path(run_dir) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for i, spec in enumerate(specs):
            queue = Queue(queue_folder(run_dir, name, i))
            devices = {"CUDA_VISIBLE_DEVICES": spec.devices} if spec.devices is not None else {}
            log = logs / f"{name}.w{i}.log"
            with open(log, "wb") as out:  # the child keeps its own descriptor
                proc = sp.Popen([spec.python or sys.executable, "-m", "collapsebench", "worker", str(queue.folder)],
                                env={**os.environ, **(env or {}), **spec.env, **devices}, stdout=out,
                                stderr=sp.STDOUT, preexec_fn=_die_with_parent)
            self.queues.append(queue)
            self.procs.append(proc)
            self.logs.append(log)

    def submit(self, worker: int, task: Task) -> FileFuture:
        return FileFuture(task.key, self.queues[worker].put(task), lambda: self.ended(worker), self.poll_s)

    def ended(self, worker: int) -> str | None:
        """Why worker ``worker`` is gone (its status and the end of its log), or None while it runs."""
        code = self.procs[worker].poll()
        if code is None:
            return None
        tail = self.logs[worker].read_text(errors="replace")[-LOG_TAIL:]
        return f"worker {self.name}.w{worker} (pid {self.procs[worker].pid}) exited with status {code}:\n{tail}"

    def close(self, cancel: bool = False) -> None:
        """Stop the workers once their queued tasks are done (``cancel``: at once); remove the queues."""
        for queue, proc in zip(self.queues, self.procs):
            if cancel:
                proc.terminate()
            else:
                queue.stop()
        for proc in self.procs:
            try:
                proc.wait(timeout=30 if cancel else None)
            except sp.TimeoutExpired:  # deaf to SIGTERM
                proc.kill()
                proc.wait()
        for queue in self.queues:
            queue.remove()
