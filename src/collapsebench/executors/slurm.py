"""SLURM through submitit (``pip install collapsebench[slurm]``): one job per phase, one job array
for the tasks a phase splits into (generation shards, evaluations), ``tasks_per_job`` of them in
each job of the array.

``executor: {name: slurm, partition: debug, ...}``: the executor's settings are the defaults of
every job; ``resources.<phase>`` in the config overrides them for that phase's jobs. The driver
stays where it was started (a login node, or inside an allocation), submits, and polls; it holds
no resources of its own while the jobs run.

A job runs ``collapsebench.executors.slurm:TaskJob``, which holds only the path of the task's spec
file: the job re-reads the run directory and re-imports the plug-ins like every worker. On a
timeout or a preemption SLURM signals the job (``signal_delay_s`` before the limit); submitit then
requeues it (at most ``max_requeues`` times for timeouts, without limit for preemptions) and the
requeued job runs the same task again, which resumes inside the phase: training from the Trainer's
latest checkpoint, generation from its finished shards.

A phase's long-lived workers (``PhaseContext.workers``) are one job each (:class:`WorkerJob`),
asking the worker's resources (its ``devices`` as that many GPUs, which SLURM picks) with its
interpreter, its environment variables exported by the job script; each runs the loop of
:mod:`collapsebench.executors.workers`, fed through its queue folder in the run directory (on the
shared filesystem). A worker job requeued after a timeout or a preemption goes on with the task it
had not finished.

Every change of a job's state is appended to ``<run>/jobs.jsonl`` (job id, task, state, log
files, resources asked for); ``collapsebench status`` shows the jobs that are queued or running.
A job left running by a driver that died is cancelled when a driver submits the same task again,
so two jobs never write one phase.

Over 300 lines: tasks (job arrays), long-lived workers and a detached driver share the job
parameters and the records of one SLURM submission path, kept in one module.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import socket
import subprocess as sp
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit

from collapsebench.api import NonNegativeInt, PositiveFloat, PositiveInt, Resources, Task, WorkerSpec
from collapsebench.errors import UserError
from collapsebench.executors import run_task_file
from collapsebench.executors.records import FINAL, live_jobs, record_job, slurm_states
from collapsebench.executors.workers import FileFuture, Queue, queue_folder, serve
from collapsebench.layout import RunLayout


class TaskJob(submitit.helpers.Checkpointable):
    """What a SLURM job runs: its tasks, one after another, from their spec files, in the job's
    process (so the models the first loads serve the next). Checkpointable: on a timeout or a
    preemption submitit pickles it with the tasks it has finished and requeues it; the requeued
    job goes on with the next task, which resumes inside its phase."""

    def __init__(self, specs: list[str]):
        self.specs = list(specs)
        self.results: list[dict[str, Any]] = []

    def __call__(self) -> list[dict[str, Any]]:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "job_id": os.environ.get("SLURM_JOB_ID"),
                "restarts": int(os.environ.get("SLURM_RESTART_COUNT", "0"))}
        while len(self.results) < len(self.specs):
            try:
                run_task_file(self.specs[len(self.results)])
            except UserError as exc:  # a user error stays one in the driver (exit status 2), not a traceback
                self.results.append({**info, "user_error": str(exc)})
                break
            self.results.append(info)
        return self.results


class WorkerJob(submitit.helpers.Checkpointable):
    """What a long-lived worker's job runs: the loop over its queue. Checkpointable: requeued after
    a timeout or a preemption, it goes on with the first task it had not finished."""

    def __init__(self, queue: str, poll_s: float):
        self.queue, self.poll_s = queue, poll_s

    def __call__(self) -> dict[str, Any]:
        return serve(self.queue, self.poll_s)


@dataclass
class SlurmHandle:
    task: Task
    parameters: dict[str, Any]
    job: Any = None  # submitit.SlurmJob once submitted
    index: int = 0  # the task's place among its job's tasks
    state: str = ""
    info: dict[str, Any] = field(default_factory=dict)


class SlurmExecutor:
    """Submit tasks as SLURM jobs through submitit; see the module docstring.

    Settings (defaults of every job; ``resources.<phase>`` overrides them): ``partition``,
    ``account``, ``constraint``, ``nodes``, ``gpus_per_node``, ``cpus_per_task``, ``mem_gb``,
    ``timeout_min``; ``signal_delay_s`` (the warning before the time limit that lets a job requeue
    itself; keep it well under the limit), ``max_requeues`` (after timeouts), ``array_parallelism``,
    ``tasks_per_job`` (tasks of a phase run one after another in one job of the array, loading
    their model once: fewer, longer jobs), ``setup`` (shell lines run before each job, e.g.
    ``module load cuda``), ``python`` (the jobs' interpreter), ``extra`` (more submitit SLURM
    parameters, e.g. ``qos``, ``exclusive``), ``poll_s`` (how often the driver looks),
    ``driver_timeout_min`` (the time limit of a detached sweep driver's job, :meth:`detach`)."""

    name = "slurm"
    coordinates_in_driver = True

    def __init__(self, partition: str | None = None, account: str | None = None, constraint: str | None = None,
                 nodes: PositiveInt = 1, gpus_per_node: NonNegativeInt = 0,
                 cpus_per_task: PositiveInt = 1, mem_gb: PositiveFloat | None = None,
                 timeout_min: PositiveInt = 60, signal_delay_s: NonNegativeInt = 120,
                 max_requeues: NonNegativeInt = 3, array_parallelism: PositiveInt = 256,
                 tasks_per_job: PositiveInt = 1, setup: list[str] | None = None,
                 python: str | None = None, extra: dict[str, Any] | None = None,
                 poll_s: PositiveFloat = 1.0,
                 driver_timeout_min: PositiveInt = 7 * 24 * 60):
        self.defaults: dict[str, Any] = {"partition": partition, "account": account, "constraint": constraint,
                                         "nodes": nodes, "gpus_per_node": gpus_per_node, "cpus_per_task": cpus_per_task,
                                         "mem_gb": mem_gb, "timeout_min": timeout_min, **(extra or {})}
        self.signal_delay_s, self.max_requeues, self.array_parallelism = signal_delay_s, max_requeues, array_parallelism
        self.setup, self.python, self.poll_s = list(setup or []), python or sys.executable, poll_s
        self.tasks_per_job, self.driver_timeout_min = tasks_per_job, driver_timeout_min

    # ------------------------------------------------------------------------------ parameters
    def parameters(self, resources: Resources) -> dict[str, Any]:
        """The job's request: the executor's settings, overridden by the phase's resources."""
        asked = {"nodes": resources.nodes, "gpus_per_node": resources.gpus, "cpus_per_task": resources.cpus,
                 "mem_gb": resources.mem_gb, "timeout_min": resources.timeout_min}
        merged = {**self.defaults, **{k: v for k, v in asked.items() if v is not None}, **dict(resources.extra)}
        return {k: v for k, v in merged.items() if v is not None}

    def _submitit_parameters(self, request: dict[str, Any], name: str) -> dict[str, Any]:
        params = dict(request)
        mem_gb = params.pop("mem_gb", None)
        out: dict[str, Any] = {"time": params.pop("timeout_min"), "job_name": name, "ntasks_per_node": 1,
                               "signal_delay_s": self.signal_delay_s, "array_parallelism": self.array_parallelism,
                               "setup": self.setup, **params}
        if mem_gb is not None:
            out["mem"] = f"{int(mem_gb * 1024)}M"
        if not out.get("gpus_per_node"):
            out.pop("gpus_per_node", None)
        if out["nodes"] > 1:  # the task runs once; a launcher starts its ranks on every node (srun)
            out["srun_args"] = ["--nodes=1", "--ntasks=1"]
        return out

    # ------------------------------------------------------------------------------ submit, wait
    def submit(self, task: Task, resources: Resources) -> SlurmHandle:
        """Note the task; ``wait`` submits the tasks of one call as one job (or one job array)."""
        return SlurmHandle(task, self.parameters(resources))

    def wait(self, handles: list[SlurmHandle]) -> None:
        if not handles:
            return
        run_dir = handles[0].task.run_dir
        cancel_stale(run_dir, {h.task.key for h in handles})
        groups: dict[str, list[SlurmHandle]] = {}
        for h in handles:
            groups.setdefault(json.dumps(h.parameters, sort_keys=True), []).append(h)
        try:
            for group in groups.values():
                self._submit_group(run_dir, group)
            self._poll(run_dir, handles)
        except BaseException:  # the driver is stopping: leave no job writing behind its back
            live = [h.job.job_id for h in handles if h.job is not None and h.state not in FINAL]
            if live:
                sp.run(["scancel", *live], check=False, capture_output=True)
            raise
        failures = [self._failure(h) for h in handles]
        first = next((f for f in failures if f is not None), None)
        if first is not None:
            raise first

    def _submit_group(self, run_dir: str, group: list[SlurmHandle]) -> None:
        folder = Path(run_dir) / "logs" / "slurm" / "%j"
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=self.max_requeues, python=self.python)
        name = "cb-" + group[0].task.key.split("/")[0]
        executor.update_parameters(**self._submitit_parameters(group[0].parameters, name))
        k = self.tasks_per_job
        chunks = [group[i : i + k] for i in range(0, len(group), k)]
        work = [TaskJob([str(h.task.write_spec()) for h in chunk]) for chunk in chunks]
        if len(chunks) == 1:
            jobs = [executor.submit(work[0])]
        else:
            with executor.batch():
                jobs = [executor.submit(w) for w in work]
        if group[0].parameters.get("nodes", 1) > 1:
            # the task runs once, on the first node (``_submitit_parameters``), but submitit counts a
            # task per node and would wait for the others' results: follow the first task alone
            jobs = [submitit.SlurmJob(folder=folder, job_id=job.job_id) for job in jobs]
        for chunk, job in zip(chunks, jobs):
            for i, h in enumerate(chunk):
                h.job, h.index = job, i
        for h in group:
            h.state = "SUBMITTED"
            record_job(run_dir, executor="slurm", key=h.task.key, job_id=h.job.job_id, state=h.state,
                       log=str(h.job.paths.stdout), stderr=str(h.job.paths.stderr), resources=h.parameters)

    def _poll(self, run_dir: str, handles: list[SlurmHandle]) -> None:
        waiting: dict[str, list[SlurmHandle]] = {}
        for h in handles:
            waiting.setdefault(h.job.job_id, []).append(h)
        while waiting:
            for job_id, tasks in list(waiting.items()):
                job = tasks[0].job
                if job.done():  # its final state is recorded with its result
                    del waiting[job_id]
                    continue
                state = str(job.state).split()[0]
                if state != tasks[0].state and state != "UNKNOWN":  # sacct lags the submission by a moment
                    for h in tasks:
                        h.state = state
                        record_job(run_dir, executor="slurm", key=h.task.key, job_id=job_id, state=state)
            if waiting:
                time.sleep(self.poll_s)

    def _failure(self, h: SlurmHandle) -> Exception | None:
        key, job_id, log = h.task.key, h.job.job_id, h.job.paths.stderr
        try:
            results = h.job.result()
        except submitit.core.utils.FailedJobError as exc:
            record_job(h.task.run_dir, executor="slurm", key=key, job_id=job_id, state="FAILED")
            return RuntimeError(f"task {key}: SLURM job {job_id} failed (log {log}):\n{exc}")
        except submitit.core.utils.UncompletedJobError as exc:
            record_job(h.task.run_dir, executor="slurm", key=key, job_id=job_id, state="UNCOMPLETED")
            return RuntimeError(f"task {key}: SLURM job {job_id} ended without a result (cancelled, out of time or "
                                f"memory, or its node failed; log {log}): {exc}")
        if h.index >= len(results):  # an earlier task of its job failed with a user error
            record_job(h.task.run_dir, executor="slurm", key=key, job_id=job_id, state="NOT_RUN")
            return None
        h.info = results[h.index]
        record_job(h.task.run_dir, executor="slurm", key=key, job_id=job_id, state="COMPLETED", log=str(log),
                   pid=h.info.get("pid"), host=h.info.get("host"), restarts=h.info.get("restarts"),
                   user_error=h.info.get("user_error"))
        if "user_error" in h.info:
            return UserError(h.info["user_error"])
        return None

    def start_workers(self, specs: Sequence[WorkerSpec], run_dir: str, name: str) -> SlurmWorkers:
        return SlurmWorkers(self, specs, run_dir, name)

    def close(self) -> None:
        """Nothing to release: every job has ended in ``wait``."""

    # ------------------------------------------------------------------------------ a detached driver
    def detach(self, argv: list[str], log_dir: Path, name: str) -> str:
        """Run ``argv`` (a sweep's driver) as one SLURM job with the executor's settings, one CPU and
        ``driver_timeout_min``; its job id. The driver then submits the cells' jobs from inside it
        and holds nothing else, so the shell that started the sweep can go: ``sweep --detach``."""
        executor = submitit.SlurmExecutor(folder=Path(log_dir) / "%j", max_num_timeout=0, python=self.python)
        request = {**self.defaults, "nodes": 1, "gpus_per_node": 0, "cpus_per_task": 1,
                   "timeout_min": self.driver_timeout_min}
        executor.update_parameters(**self._submitit_parameters({k: v for k, v in request.items() if v is not None},
                                                               name))
        job = executor.submit(submitit.helpers.CommandFunction(argv, env={**os.environ, "COLLAPSEBENCH_PROGRESS": "0"}))
        return str(job.job_id)


class SlurmWorkers:
    """A phase's long-lived workers: one SLURM job per spec (see the module docstring)."""

    def __init__(self, executor: SlurmExecutor, specs: Sequence[WorkerSpec], run_dir: str, name: str):
        self.executor, self.run_dir, self.name = executor, run_dir, name
        self.keys = [f"{name}.w{i}" for i in range(len(specs))]
        cancel_stale(run_dir, set(self.keys))
        self.queues: list[Queue] = []
        self.jobs: list[Any] = []
        for key, spec in zip(self.keys, specs):
            queue = Queue(queue_folder(run_dir, name, len(self.queues)))
            request = executor.parameters(dataclasses.replace(spec.resources or Resources(), gpus=spec.gpus))
            params = executor._submitit_parameters(request, f"cb-{key}")
            params["setup"] = [*params["setup"], *(f"export {k}={shlex.quote(v)}" for k, v in spec.env.items())]
            submitter = submitit.SlurmExecutor(folder=Path(run_dir) / "logs" / "slurm" / "%j",
                                               max_num_timeout=executor.max_requeues, python=spec.python or executor.python)
            submitter.update_parameters(**params)
            job = submitter.submit(WorkerJob(str(queue.folder), executor.poll_s))
            record_job(run_dir, executor="slurm", key=key, job_id=job.job_id, state="SUBMITTED",
                       log=str(job.paths.stdout), stderr=str(job.paths.stderr), resources=request)
            self.queues.append(queue)
            self.jobs.append(job)

    def submit(self, worker: int, task: Task) -> FileFuture:
        return FileFuture(task.key, self.queues[worker].put(task), lambda: self.ended(worker), self.executor.poll_s)

    def ended(self, worker: int) -> str | None:
        """Why worker ``worker``'s job is gone (its state and log), or None while it is queued or runs."""
        job = self.jobs[worker]
        if not job.done():
            return None
        return f"worker {self.keys[worker]}: SLURM job {job.job_id} ended ({job.state}); log {job.paths.stderr}"

    def close(self, cancel: bool = False) -> None:
        """Stop the jobs once their queued tasks are done (``cancel``: cancel them); record how they ended."""
        for queue, job in zip(self.queues, self.jobs):
            if cancel:
                job.cancel(check=False)
            else:
                queue.stop()
        for key, job in zip(self.keys, self.jobs):
            while not job.done():
                time.sleep(self.executor.poll_s)
            state, info = "CANCELLED", {}
            if not cancel:
                try:
                    state, info = "COMPLETED", job.result()
                except submitit.core.utils.FailedJobError:
                    state = "FAILED"
                except submitit.core.utils.UncompletedJobError:
                    state = "UNCOMPLETED"
            record_job(self.run_dir, executor="slurm", key=key, job_id=job.job_id, state=state, pid=info.get("pid"),
                       host=info.get("host"), tasks=info.get("tasks"))
        for queue in self.queues:
            queue.remove()


def cancel_stale(run_dir: str, keys: set[str]) -> None:
    """Cancel the jobs of ``keys`` that an earlier driver left queued or running, and wait until
    SLURM has ended them, so the phase they would write is redone by one job only."""
    live = {r["job_id"]: r for r in live_jobs(RunLayout(run_dir).read_jobs())
            if r.get("executor") == "slurm" and r["key"] in keys}
    states = slurm_states(list(live))
    stale = [j for j in live if states.get(j, "UNKNOWN") not in FINAL and j in states]
    if not stale:
        return
    sp.run(["scancel", *stale], check=False, capture_output=True)
    deadline = time.time() + 120
    while time.time() < deadline and any(slurm_states(stale).get(j) not in FINAL for j in stale):
        time.sleep(1)
    for j in stale:
        record_job(run_dir, executor="slurm", key=live[j]["key"], job_id=j, state="CANCELLED",
                   reason="left by an earlier driver")
