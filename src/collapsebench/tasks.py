"""The executors' side of the contract: the units of work a phase hands out (tasks, and long-lived
workers that run several tasks), what they ask of the machine, and the protocols an executor
implements. Re-exported by :mod:`collapsebench.api`, which plug-ins import.

A task names a module-level function and plain data, never a pickled object: wherever it runs,
the worker imports the function by its ``module:qualname`` and rebuilds the phase context from
the run directory. The name is derived from the function object (:func:`target_of`), so a
renamed function breaks where the task is built, not in a worker.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from collapsebench.config import Config
from collapsebench.io import atomic_write


@dataclass(frozen=True)
class Resources:
    """What one task asks of the machine that runs it; executors that schedule (SLURM, Ray) read
    it, the local ones ignore what they cannot enforce. ``None`` leaves a field to the executor's
    own setting (the config's executor-level values are the defaults of every phase); ``extra``
    holds scheduler parameters (``partition``, ``account``, ``constraint``, ``qos``, ...)."""

    cpus: int | None = None
    gpus: int | None = None  # per node (SLURM), per actor or task (Ray)
    mem_gb: float | None = None
    nodes: int | None = None
    timeout_min: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The fields that are set, for the run's job records."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if v is not None and k != "extra"}
        return {**out, **dict(self.extra)}


def phase_resources(config: Config, phase: str) -> Resources:
    """The ``resources.<phase>`` block of the config as :class:`Resources` (empty when absent)."""
    block = config.resources.get(phase)
    if block is None:
        return Resources()
    routing = {k: getattr(block, k) for k in ("partition", "account", "constraint") if getattr(block, k) is not None}
    return Resources(cpus=block.cpus_per_task, gpus=block.gpus_per_node, mem_gb=block.mem_gb, nodes=block.nodes,
                     timeout_min=block.timeout_min, extra={**routing, **block.extra})


def target_of(fn: Callable[..., Any]) -> str:
    """``"module:qualname"`` of a module-level function, checked to import back to ``fn`` (a worker
    finds it by that name); a nested function, a lambda or one of ``__main__`` is refused."""
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not name or module == "__main__" or not name.isidentifier():
        raise TypeError(f"a task runs a module-level function importable by name, not {fn!r}")
    if getattr(sys.modules.get(module), name, None) is not fn:
        raise TypeError(f"task target {module}:{name} does not import back to {fn!r}")
    return f"{module}:{name}"


@dataclass(frozen=True)
class Task:
    """One unit of work: call ``target`` with ``kwargs`` (plain JSON data).

    Workers receive no pickled objects: a task is the name of a module-level function and data, and
    the worker re-reads the run directory's config and re-imports the plug-ins. ``key`` names the
    task in the run's logs; ``context``: (iteration, phase) whose context the target takes first."""

    key: str
    # The function; a "module:qualname" string is the form read back from a spec file (imported by
    # the worker), and the one form a script run as __main__ can name its own functions by.
    target: Callable[..., Any] | str
    kwargs: Mapping[str, Any]
    run_dir: str
    env: Mapping[str, str] = field(default_factory=dict)
    context: tuple[int, str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.target, str):
            target_of(self.target)  # a target no worker could import fails here, where the task is built

    @property
    def target_name(self) -> str:
        """The target as a worker imports it: ``module:qualname``."""
        return self.target if isinstance(self.target, str) else target_of(self.target)

    def spec(self) -> dict[str, Any]:
        """The task as plain data (what a spec file holds)."""
        return {"key": self.key, "target": self.target_name, "kwargs": dict(self.kwargs), "run_dir": self.run_dir,
                "context": self.context}

    def spec_file(self) -> Path:
        return Path(self.run_dir) / ".tasks" / (re.sub(r"[^\w.-]+", "_", self.key) + ".json")

    def write_spec(self, path: Path | None = None) -> Path:
        """Write the spec file a worker runs (``python -m collapsebench task SPEC``); return its path."""
        path = path or self.spec_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(self.spec(), indent=1))
        return path

    def command(self, python: str | None = None) -> list[str]:
        """The command that runs this task in a fresh process (writes its spec file first)."""
        return [python or sys.executable, "-m", "collapsebench", "task", str(self.write_spec())]


class Handle(Protocol):
    task: Task


# ------------------------------------------------------------------------------------ long-lived workers

@dataclass(frozen=True)
class WorkerSpec:
    """One long-lived worker a phase asks for: its interpreter (``python``, default: the driver's),
    environment variables added to its own (``env``), the GPUs it uses (``devices``, as
    ``CUDA_VISIBLE_DEVICES`` numbers) and what it asks of a scheduler (``resources``, default the
    phase's ``resources.<phase>``). On this machine ``devices`` becomes the worker's
    ``CUDA_VISIBLE_DEVICES``; a scheduler (SLURM, Ray) instead gives the worker that many GPUs of
    its choosing, since the numbers of one machine mean nothing on another node."""

    python: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    devices: str | None = None
    resources: Resources | None = None

    @property
    def gpus(self) -> int | None:
        """GPUs to ask a scheduler for: ``resources.gpus``, else the number of ``devices``."""
        if self.resources is not None and self.resources.gpus is not None:
            return self.resources.gpus
        return len(self.devices.split(",")) if self.devices else None


class TaskFuture(Protocol):
    """A task sent to a worker: ``result()`` waits for it and returns what its function returned
    (plain data), or raises its failure (a :class:`UserError` stays one; a worker that died is a
    ``RuntimeError`` naming its log)."""

    def done(self) -> bool: ...

    def result(self) -> Any: ...


class Workers(Protocol):
    """Started workers, one process each, that live until ``close``: ``submit(i, task)`` queues a
    task on worker ``i``, which runs its tasks one after another, so what a task keeps in the
    process (``ctx.models``: an engine, a model) serves the next. ``close`` stops the workers once
    their queued tasks are done (or at once, with ``cancel``) and releases them."""

    def submit(self, worker: int, task: Task) -> TaskFuture: ...

    def close(self, cancel: bool = False) -> None: ...


class WorkerHost(Protocol):
    """What starts long-lived workers (every executor does): ``start_workers(specs, run_dir, name)``
    starts one per spec for the run in ``run_dir``; ``name`` (``<iteration>.<phase>.<name>``) names
    them in its logs and job records."""

    def start_workers(self, specs: Sequence[WorkerSpec], run_dir: str, name: str) -> Workers: ...


# ------------------------------------------------------------------------------------ executors

class Executor(WorkerHost, Protocol):
    """Where tasks run. ``submit`` returns at once (or after running the task, for ``inline``);
    ``wait`` returns when every handle has finished and raises the first failure: a
    :class:`UserError` for a user error in the task, another exception for a bug or a crash.
    Executors that schedule may start the tasks only in ``wait`` (SLURM submits the tasks of one
    ``wait`` as one job array). ``close`` releases what the executor holds (Ray's actors); the
    driver calls it when the step ends. ``start_workers`` (:class:`WorkerHost`) starts long-lived workers
    for a phase that keeps state between its tasks (a vLLM engine per GPU group).

    ``coordinates_in_driver``: for phases that split into tasks (generate, evaluate), run the
    phase's coordinating loop in the driver and send only its tasks here (Ray, SLURM arrays);
    otherwise the whole phase is one task and its own tasks run inside it, in order."""

    name: str
    coordinates_in_driver: bool

    def submit(self, task: Task, resources: Resources) -> Handle: ...

    def wait(self, handles: Sequence[Handle]) -> None: ...

    def close(self) -> None: ...


class Detaching(Protocol):
    """An executor that can also host a driver (``sweep --detach``): ``detach(argv, log_dir, name)``
    starts the command where the executor schedules (a SLURM job) so that it outlives the shell
    that started it, and returns what identifies it (a job id)."""

    def detach(self, argv: list[str], log_dir: Path, name: str) -> str: ...


class ExecutorFactory(Protocol):
    def __call__(self, **kwargs: Any) -> Executor: ...
