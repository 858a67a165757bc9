"""The phase context every plug-in receives (:class:`PhaseContext`), the model cache it owns, and
how a task of a phase runs with it (:func:`run_task`). Re-exported by :mod:`collapsebench.api`,
which plug-ins import."""

from __future__ import annotations

import dataclasses
import functools
import gc
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from collapsebench.config import PHASES, Config
from collapsebench.errors import UserError
from collapsebench.io import SCRATCH, phase_seed
from collapsebench.layout import RunLayout, iter_name
from collapsebench.tasks import Executor, Resources, Task, TaskFuture, WorkerHost, Workers, WorkerSpec, phase_resources

if TYPE_CHECKING:
    from datasets import Dataset as Dataset
else:  # a name for annotations: datasets is imported only where it is used
    Dataset = "datasets.Dataset"


# ------------------------------------------------------------------------------------ model cache

class ObjectCache:
    """Objects a phase loads once and shares between its plug-ins and tasks (models, tokenizers),
    keyed by what they were loaded from; released when the phase ends (:meth:`PhaseContext.close`)."""

    def __init__(self) -> None:
        self._objects: dict[tuple[Any, ...], Any] = {}

    def get(self, key: tuple[Any, ...], load: Callable[[], Any]) -> Any:
        if key not in self._objects:
            self._objects[key] = load()
        return self._objects[key]

    def clear(self) -> None:
        """Drop the objects. A loaded model holds no reference cycle, so dropping the last
        reference frees its memory; on a GPU a full collection (anything a plug-in left in a
        cycle) and the CUDA cache's release follow, so the next phase finds the device empty. On
        the CPU that collection is skipped: with torch and transformers loaded it takes about a
        third of a second, 8% of a small generate phase."""
        self._objects.clear()
        torch = sys.modules.get("torch")  # release GPU memory only where torch is already in use
        if torch is not None and torch.cuda.is_available():
            gc.collect()
            torch.cuda.empty_cache()


MODELS = ObjectCache()  # one per process: a worker process runs one phase's tasks at a time


# ------------------------------------------------------------------------------------ the context

class SyntheticHistory(Sequence[Dataset]):
    """S(1..k-1) as a sequence whose datasets are opened only when a regime touches them, so a
    regime that reads only the latest generation costs O(1) per iteration, not O(k)."""

    def __init__(self, ctx: PhaseContext):
        self.ctx = ctx
        self.iterations = list(range(1, ctx.iteration))

    def __len__(self) -> int:
        return len(self.iterations)

    @overload
    def __getitem__(self, index: int) -> Dataset: ...

    @overload
    def __getitem__(self, index: slice) -> list[Dataset]: ...

    def __getitem__(self, index: int | slice) -> Dataset | list[Dataset]:
        if isinstance(index, slice):
            return [self.ctx.samples(k) for k in self.iterations[index]]
        return self.ctx.samples(self.iterations[index])


@dataclass
class PhaseContext:
    """What a phase, and every plug-in it calls, receives: the config, where the run is, where to
    write (``out_dir``, the phase's ``<phase>.tmp/``, renamed on commit), the derived seed, a
    logger, progress bars, the shared model cache, and the executor for the phase's tasks."""

    config: Config
    run_dir: Path
    iteration: int
    phase: str
    seed: int
    out_dir: Path
    executor: Executor | None = None  # runs map_tasks; None: in this process, in order
    models: ObjectCache = field(default_factory=lambda: MODELS)
    worker_host: WorkerHost | None = None  # starts workers() without an executor; None: in a task, none

    def replace(self, **changes: Any) -> PhaseContext:
        return dataclasses.replace(self, **changes)

    @functools.cached_property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)

    @property
    def section(self) -> Any:
        """This phase's config section (``config.train`` for the train phase, ...)."""
        return getattr(self.config, self.phase)

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"collapsebench.{iter_name(self.iteration)}.{self.phase}")

    # ------------------------------------------------------------------ committed phases
    def phase_dir(self, iteration: int, phase: str) -> Path:
        return self.layout.phase_dir(iteration, phase)

    def require(self, iteration: int, phase: str, item: str = "") -> Path:
        path = self.phase_dir(iteration, phase) / item
        if not path.exists():
            raise UserError(f"{path} is missing: phase {phase} of iteration {iteration} has not been committed")
        return path

    @property
    def real_dir(self) -> Path:
        """The real training split, prepared once (iteration 0)."""
        return self.require(0, "curate", "real")

    @property
    def holdout_dir(self) -> Path:
        """The held-out real data every evaluation reads: a fraction of ``data.source``, or the
        separate evaluation source ``data.evaluation``."""
        return self.require(0, "curate", "holdout")

    @property
    def tokenizer_dir(self) -> Path | None:
        """The tokenizer trained on the real data at iteration 0, if one was trained."""
        path = self.phase_dir(0, "curate") / "tokenizer"
        return path if path.exists() else None

    def model_dir(self, iteration: int | None = None) -> Path:
        """The model trained at ``iteration`` (default: this iteration)."""
        return self.require(self.iteration if iteration is None else iteration, "train", "model")

    # ------------------------------------------------------------------ datasets (memory-mapped)
    def load(self, path: Path) -> Dataset:
        import datasets

        return datasets.load_from_disk(str(path))

    def real(self) -> Dataset:
        return self.load(self.real_dir)

    def holdout(self) -> Dataset:
        return self.load(self.holdout_dir)

    def dataset(self, iteration: int | None = None) -> Dataset:
        """The curated training dataset D(k)."""
        return self.load(self.require(self.iteration if iteration is None else iteration, "curate", "dataset"))

    def samples(self, iteration: int | None = None) -> Dataset:
        """The accepted synthetic samples S(k) generated by iteration k's model."""
        return self.load(self.require(self.iteration if iteration is None else iteration, "generate", "samples"))

    def synthetic(self) -> SyntheticHistory:
        """S(1..k-1), opened lazily."""
        return SyntheticHistory(self)

    def num_samples(self) -> int:
        """Accepted samples to generate: ``generate.num_samples``, or the number of real training rows."""
        return self.config.generate.num_samples or len(self.real())

    @property
    def text_field(self) -> str:
        return self.config.data.text_field

    @property
    def cache_dir(self) -> Path:
        """Scratch space for `datasets` cache files, inside the phase's work folder (not committed)."""
        path = self.out_dir / SCRATCH  # removed when the phase is committed (io.seal_folder)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ------------------------------------------------------------------ progress, tasks, release
    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A rich progress bar; yields ``advance(n)``."""
        from collapsebench.console import progress_bar

        with progress_bar(f"[{iter_name(self.iteration)}/{self.phase}] {description}", total) as advance:
            yield advance

    def task(self, name: str, target: Callable[..., Any], **kwargs: Any) -> Task:
        """A task of this phase: ``target(ctx, **kwargs)``, ``target`` a module-level function and
        ``kwargs`` plain data; a worker rebuilds ``ctx`` from the run directory (:func:`context_for`)."""
        return Task(key=f"{self.iteration}.{self.phase}/{name}", target=target, run_dir=str(self.run_dir),
                    kwargs=kwargs, context=(self.iteration, self.phase))

    def map_tasks(self, tasks: Sequence[Task], resources: Resources | None = None) -> None:
        """Run tasks of this phase on its executor (in this process, in order, with this context,
        when it has none)."""
        if self.executor is None:
            for task in tasks:
                run_task(task, self)
            return
        resources = resources or phase_resources(self.config, self.phase)
        handles = [self.executor.submit(t, resources) for t in tasks]
        self.executor.wait(handles)

    @contextmanager
    def workers(self, specs: Sequence[WorkerSpec], name: str = "worker") -> Iterator[PhaseWorkers]:
        """Long-lived workers for this phase, one per spec (its interpreter, environment, GPUs and
        resources), started by the phase's executor (on this machine without one): each runs the
        tasks sent to it one after another in one process, so what a task keeps in ``ctx.models``
        (an engine) serves the next. They stop when the block ends (at once if it raises)::

            with ctx.workers([WorkerSpec(devices="0"), WorkerSpec(devices="1")], name="vllm") as pool:
                futures = [pool.submit(i, generate_shards, jobs=mine[i]) for i in range(len(pool))]
                results = [f.result() for f in futures]
        """
        host = self.executor if self.executor is not None else self.worker_host
        if host is None:
            raise RuntimeError("long-lived workers are started by a phase, not by one of its tasks")
        if not hasattr(host, "start_workers"):
            raise UserError(f"executor '{getattr(host, 'name', host)}' cannot start long-lived workers")
        resources = phase_resources(self.config, self.phase)
        specs = [s if s.resources is not None else dataclasses.replace(s, resources=resources) for s in specs]
        started = host.start_workers(specs, str(self.run_dir), f"{self.iteration}.{self.phase}.{name}")
        try:
            yield PhaseWorkers(self, started, len(specs), name)
        except BaseException:
            started.close(cancel=True)
            raise
        started.close()

    def close(self) -> None:
        """Release what the phase loaded (models, GPU memory)."""
        self.models.clear()


class PhaseWorkers:
    """The workers of :meth:`PhaseContext.workers`: ``submit(i, fn, **kwargs)`` runs
    ``fn(ctx, **kwargs)`` on worker ``i`` (``fn`` a module-level function, ``kwargs`` plain data)."""

    def __init__(self, ctx: PhaseContext, workers: Workers, count: int, name: str):
        self.ctx, self._workers, self._count, self.name = ctx, workers, count, name
        self._sent = 0

    def __len__(self) -> int:
        return self._count

    def submit(self, worker: int, fn: Callable[..., Any], /, **kwargs: Any) -> TaskFuture:
        if not 0 <= worker < self._count:
            raise IndexError(f"worker {worker} of {self._count}")
        self._sent += 1
        return self._workers.submit(worker, self.ctx.task(f"{self.name}{worker}-{self._sent:05d}", fn, **kwargs))


def context_for(run_dir: str | Path, iteration: int, phase: str, *, out_dir: Path | None = None) -> PhaseContext:
    """The phase context of (iteration, phase) of a run directory, with its user plug-ins imported:
    what a worker builds from a task's plain data."""
    from collapsebench.plugins import load_plugins

    if phase not in PHASES:
        raise UserError(f"unknown phase '{phase}' (one of {', '.join(PHASES)})")
    layout = RunLayout(run_dir)
    config = layout.load_config()
    load_plugins(config)
    return PhaseContext(config=config, run_dir=layout.path, iteration=iteration, phase=phase,
                        seed=phase_seed(config.seed, iteration, phase),
                        out_dir=out_dir or layout.tmp_dir(iteration, phase))


def run_task(task: Task, ctx: PhaseContext | None = None) -> Any:
    """Run a task here: its target with its phase's context first (``ctx``, or rebuilt from the run
    directory, which imports the user's plug-ins first) when it has one, else with its keyword
    arguments alone."""
    from collapsebench.plugins import import_object

    if task.context is not None and ctx is None:
        ctx = context_for(task.run_dir, *task.context)
    target = import_object(task.target, what=f"task {task.key}") if isinstance(task.target, str) else task.target
    if task.context is None:
        return target(**task.kwargs)
    return target(ctx, **task.kwargs)
