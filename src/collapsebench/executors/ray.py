"""Ray (``pip install collapsebench[ray]``): the tasks of data-parallel phases as Ray actors.

``executor: {name: ray, address: local | auto | ray://HOST:PORT}``. The driver coordinates the
phases that split into tasks (generate: shards of candidates, validated where they are generated;
evaluate: one task per evaluation) and sends the tasks to a pool of actors, ``workers`` of them
(default: as many as the cluster's CPUs, or GPUs, hold), each asking ``resources.<phase>``
(``cpus_per_task``, ``gpus_per_node``: per actor; ``mem_gb``; ``extra.resources``: custom Ray
resources). An actor is one long-lived worker process: the models a task loads stay in its cache
for the next task of the same phase, so each actor loads a model once. The pool lives for one
phase and is then killed, releasing its memory. The other phases (curate, train) each run as one
Ray task in a fresh worker process.

The data never depends on the number of workers: shards have a fixed size (``generate.shard_size``),
each with a seed derived from the phase seed and its index, each written to its own file, and merged
in order by the driver; 1 worker and 64 give the same samples. An actor that dies (a node lost, a
process killed) fails its task; the task is retried on a fresh actor ``retries`` times, then the
phase fails, and a resume recomputes only the shards that are missing.

A phase's long-lived workers (``PhaseContext.workers``) are actors too, one per worker, each asking
its spec's resources (its ``devices`` as that many GPUs, which Ray picks), with its environment
variables and interpreter (``py_executable``) as the actor's runtime environment; they live until
the phase's block ends.

Workers re-read the run directory and re-import the plug-ins: each task is its spec file's path.
With ``address: local`` a private Ray instance starts in the driver's process (and stops with
it); ``auto`` joins the cluster of this machine, ``ray://`` one elsewhere (its workers need
collapsebench and the run directory on a shared filesystem; ``runtime_env`` is passed to Ray).
Each task's worker (process id, node) is appended to ``<run>/jobs.jsonl``.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ray

from collapsebench.api import NonNegativeInt, PositiveInt, Resources, Task, WorkerSpec
from collapsebench.errors import UserError
from collapsebench.executors import run_task_file
from collapsebench.executors.records import record_job


def run_spec(spec: str) -> dict[str, Any]:
    """Run one task from its spec file here; say where it ran (a user error comes back as data)."""
    from collapsebench.allocator import tune

    tune()  # a Ray worker does not start through the command line
    info = {"pid": os.getpid(), "host": socket.gethostname(), "node": ray.get_runtime_context().get_node_id()}
    try:
        result = run_task_file(spec)
    except UserError as exc:
        return {**info, "user_error": str(exc)}
    return {**info, "result": result}


class Worker:
    """A worker of the phase's pool: runs its tasks one after another in one process."""

    def run(self, spec: str) -> dict[str, Any]:
        return run_spec(spec)


TaskActor: Any = ray.remote(Worker)


@ray.remote(max_calls=1)  # a fresh process per phase: its memory is released when it ends
def run_phase(spec: str) -> dict[str, Any]:
    return run_spec(spec)


@dataclass
class RayHandle:
    task: Task
    resources: Resources
    info: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None


class RayExecutor:
    """Run tasks on Ray; see the module docstring. ``init``: more ``ray.init`` arguments."""

    name = "ray"
    coordinates_in_driver = True

    def __init__(self, address: str = "local", workers: PositiveInt | None = None,
                 retries: NonNegativeInt = 1, runtime_env: dict[str, Any] | None = None,
                 init: dict[str, Any] | None = None):
        self.address, self.workers, self.retries = address, workers, retries
        self.runtime_env, self.init = runtime_env, dict(init or {})
        self.pool: list[Any] = []
        self.pool_key: tuple[Any, ...] | None = None

    # ------------------------------------------------------------------------------ Ray itself
    def connect(self) -> None:
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"include_dashboard": False} if self.address == "local" else {}
        kwargs.update(self.init)
        if self.runtime_env is not None:
            kwargs["runtime_env"] = self.runtime_env
        try:
            ray.init(address=self.address, **kwargs)
        except ConnectionError as exc:
            raise UserError(f"executor ray: cannot reach the Ray cluster at '{self.address}': {exc}") from None

    @staticmethod
    def options(resources: Resources) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_cpus": resources.cpus or 1, "num_gpus": resources.gpus or 0}
        if resources.mem_gb:
            opts["memory"] = int(resources.mem_gb * 2**30)
        if resources.extra.get("resources"):
            opts["resources"] = dict(resources.extra["resources"])
        if resources.extra.get("accelerator_type"):
            opts["accelerator_type"] = resources.extra["accelerator_type"]
        return opts

    def pool_size(self, resources: Resources, tasks: int) -> int:
        """``workers``, or as many actors as the cluster holds at once (at most one per task)."""
        if self.workers:
            return min(self.workers, tasks)
        total = ray.cluster_resources()
        fits = int(total.get("GPU", 0) // resources.gpus) if resources.gpus else int(total.get("CPU", 1) // (resources.cpus or 1))
        return max(1, min(fits, tasks))

    # ------------------------------------------------------------------------------ submit, wait
    def submit(self, task: Task, resources: Resources) -> RayHandle:
        """Note the task; ``wait`` runs the tasks of one call."""
        return RayHandle(task, resources)

    def wait(self, handles: list[RayHandle]) -> None:
        if not handles:
            return
        self.connect()
        phases = [h for h in handles if h.task.context is None]
        if phases:
            refs = [run_phase.options(**self.options(h.resources)).remote(str(h.task.write_spec())) for h in phases]
            for h in phases:
                record_job(h.task.run_dir, executor="ray", key=h.task.key, state="RUNNING")
            for h, ref in zip(phases, refs):
                self._collect(h, ref)
        shards = [h for h in handles if h.task.context is not None]
        if shards:
            self._run_on_pool(shards)
        first = next((h.error for h in handles if h.error is not None), None)
        if first is not None:
            raise first

    def _collect(self, h: RayHandle, ref: Any, actor: Any = None) -> bool:
        """Take one finished task's result; False when its actor died (the task may be retried)."""
        try:
            h.info = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            h.error = RuntimeError(f"task {h.task.key}: its Ray worker died: {exc}")
            record_job(h.task.run_dir, executor="ray", key=h.task.key, state="WORKER_DIED", error=str(exc)[:500])
            return False
        except ray.exceptions.RayTaskError as exc:
            h.error = RuntimeError(f"task {h.task.key} failed on Ray:\n{exc}")
            record_job(h.task.run_dir, executor="ray", key=h.task.key, state="FAILED")
            return True
        h.error = UserError(h.info["user_error"]) if "user_error" in h.info else None
        record_job(h.task.run_dir, executor="ray", key=h.task.key, state="COMPLETED", pid=h.info["pid"],
                   host=h.info["host"], node=h.info["node"], resources=h.resources.as_dict(),
                   actor=actor._actor_id.hex() if actor is not None else None)
        return True

    def _ensure_pool(self, resources: Resources, tasks: int) -> None:
        key = (resources, self.workers)
        size = self.pool_size(resources, tasks)
        if self.pool_key != key:
            self.close()
            self.pool_key = key
        opts = self.options(resources)
        while len(self.pool) < size:
            self.pool.append(TaskActor.options(**opts).remote())

    def _run_on_pool(self, handles: list[RayHandle]) -> None:
        """Each task on the next free actor; a dead actor is replaced and its task retried."""
        self._ensure_pool(handles[0].resources, len(handles))
        todo: deque[tuple[RayHandle, int]] = deque((h, 0) for h in handles)
        idle = list(self.pool)
        running: dict[Any, tuple[RayHandle, int, Any]] = {}
        failed = False
        while (todo and not failed) or running:
            while todo and idle and not failed:
                h, attempt = todo.popleft()
                actor = idle.pop()
                running[actor.run.remote(str(h.task.write_spec()))] = (h, attempt, actor)
                record_job(h.task.run_dir, executor="ray", key=h.task.key, state="RUNNING", actor=actor._actor_id.hex(),
                           attempt=attempt)
            done, _ = ray.wait(list(running), num_returns=1)
            h, attempt, actor = running.pop(done[0])
            if self._collect(h, done[0], actor):
                idle.append(actor)
                failed = failed or h.error is not None
                continue
            self.pool.remove(actor)  # dead: replace it, and retry its task while retries last
            replacement = TaskActor.options(**self.options(h.resources)).remote()
            self.pool.append(replacement)
            idle.append(replacement)
            if attempt < self.retries:
                h.error = None
                todo.appendleft((h, attempt + 1))
            else:
                failed = True

    def start_workers(self, specs: Sequence[WorkerSpec], run_dir: str, name: str) -> RayWorkers:
        self.connect()
        return RayWorkers(self, specs)

    def close(self) -> None:
        """Kill the phase's actors (their processes and the models they hold)."""
        for actor in self.pool:
            ray.kill(actor)
        self.pool = []
        self.pool_key = None


class RayWorkers:
    """A phase's long-lived workers: one actor per spec, killed by ``close``."""

    def __init__(self, executor: RayExecutor, specs: Sequence[WorkerSpec]):
        self.executor = executor
        self.resources = [dataclasses.replace(s.resources or Resources(), gpus=s.gpus) for s in specs]
        self.actors = [TaskActor.options(**executor.options(r), runtime_env=runtime_env(s)).remote()
                       for s, r in zip(specs, self.resources)]
        self.refs: list[Any] = []

    def submit(self, worker: int, task: Task) -> RayFuture:
        actor = self.actors[worker]
        ref = actor.run.remote(str(task.write_spec()))
        self.refs.append(ref)
        record_job(task.run_dir, executor="ray", key=task.key, state="RUNNING", actor=actor._actor_id.hex())
        return RayFuture(self.executor, RayHandle(task, self.resources[worker]), ref, actor)

    def close(self, cancel: bool = False) -> None:
        """Kill the actors once their tasks are done (``cancel``: at once)."""
        if self.refs and not cancel:
            ray.wait(self.refs, num_returns=len(self.refs))
        for actor in self.actors:
            ray.kill(actor)
        self.actors, self.refs = [], []


def runtime_env(spec: WorkerSpec) -> dict[str, Any]:
    """The actor's runtime environment: the worker's variables and interpreter."""
    env: dict[str, Any] = {"env_vars": dict(spec.env)} if spec.env else {}
    if spec.python:
        env["py_executable"] = spec.python
    return env


@dataclass
class RayFuture:
    """A task sent to a worker actor; ``result`` records it in ``jobs.jsonl`` as the pool's tasks are."""

    executor: RayExecutor
    handle: RayHandle
    ref: Any
    actor: Any
    collected: bool = False

    def done(self) -> bool:
        return bool(ray.wait([self.ref], timeout=0)[0])

    def result(self) -> Any:
        if not self.collected:
            self.executor._collect(self.handle, self.ref, self.actor)
            self.collected = True
        if self.handle.error is not None:
            raise self.handle.error
        return self.handle.info["result"]
