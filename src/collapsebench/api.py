"""The contract between the framework and its plug-ins: one protocol per plug-in kind, the phase
context every plug-in receives, and the executor's units of work.

Plug-ins import this module (and :mod:`collapsebench.data`, :mod:`collapsebench.io`), never the
phases or the driver. Every plug-in takes the phase context first, then its own keyword arguments
from the config (checked against its signature by :class:`collapsebench.registry.Registry`):

==================  =========================================================================
protocol            call
==================  =========================================================================
DataSource          ``fn(ctx, **kw) -> Dataset``: real data (a text column, or vectors ``x``)
Regime              ``fn(ctx, real, synthetic, **kw) -> Dataset``: D(k) from the real data and
                    S(1..k-1) (``synthetic``, a lazy sequence, oldest first)
Preprocessor        ``fn(ctx, dataset, **kw) -> Dataset``
PromptSource        ``fn(ctx, n, tokenizer, **kw) -> Dataset`` with ``prompt`` and ``parent``
Validator           ``fn(ctx, batch, **kw) -> list[Verdict | bool | tuple]``, one per row
Loss                ``fn(logits, labels, **kw) -> scalar tensor``
Trainer             ``fn(ctx, dataset, **kw) -> dict``: writes ``ctx.out_dir / "model"``
Generator           ``fn(ctx, **kw) -> dict``: writes ``ctx.out_dir / "samples"``
Evaluation          ``fn(ctx, **kw) -> dict[str, float]``
ItemBuilder         ``fn(ctx, **kw) -> list[dict]``: knowledge items (``context``, ``true``, ``false``,
                    ``slice``) for the ``knowledge`` evaluation
Executor            ``submit(task, resources) -> handle``, ``wait(handles)``, ``close()``; one that
                    can host a detached sweep driver is also ``Detaching``: ``detach(argv, log_dir,
                    name) -> job id``
Launcher            ``fn(ctx, **kw) -> Launch``: the command that starts the train phase's ranks
Tracker             ``log_iteration(iteration, metrics, samples)``, ``finish()``
==================  =========================================================================
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol, overload

from pydantic import Field

from collapsebench.config import PHASES, Config
from collapsebench.errors import UserError
from collapsebench.io import atomic_write, phase_seed
from collapsebench.layout import RunLayout, iter_name

if TYPE_CHECKING:
    from datasets import Dataset as Dataset
    from torch import Tensor as Tensor
    from transformers import PreTrainedModel as Model
    from transformers import PreTrainedTokenizerBase as Tokenizer
else:  # names for annotations: the libraries are imported only where they are used
    Dataset = "datasets.Dataset"
    Tensor = "torch.Tensor"
    Model = "transformers.PreTrainedModel"
    Tokenizer = "transformers.PreTrainedTokenizerBase"


# ------------------------------------------------------------------------------------ argument domains
# Plug-in arguments are checked against their annotations (registry.Registry.call): these name the
# domains most plug-ins need, so that a value out of its domain is a config error naming its key.

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Count = Annotated[int, Field(ge=1, le=10**9)]  # rows, samples, documents: large, but not absurd
Probability = Annotated[float, Field(ge=0, le=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


# ------------------------------------------------------------------------------------ validators

@dataclass(frozen=True)
class Verdict:
    """A validator's decision on one sample: keep it or not, why not, and an optional score
    (stored in the sample's ``score_<validator>`` column)."""

    keep: bool
    reason: str = ""
    score: float | None = None


# ------------------------------------------------------------------------------------ executors

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


@dataclass(frozen=True)
class Task:
    """One unit of work: call ``target`` (``"module:function"``) with ``kwargs`` (plain JSON data).

    Workers receive no pickled objects: a task is a name and data, and the worker re-reads the run
    directory's config and re-imports the plug-ins. ``key`` names the task in the run's logs."""

    key: str
    target: str
    kwargs: Mapping[str, Any]
    run_dir: str
    env: Mapping[str, str] = field(default_factory=dict)
    context: tuple[int, str] | None = None  # (iteration, phase): the target takes that phase's context first

    def spec_file(self) -> Path:
        return Path(self.run_dir) / ".tasks" / (re.sub(r"[^\w.-]+", "_", self.key) + ".json")

    def write_spec(self) -> Path:
        """Write the spec file a worker runs (``python -m collapsebench task SPEC``); return its path."""
        path = self.spec_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps({"key": self.key, "target": self.target, "kwargs": dict(self.kwargs),
                                       "run_dir": self.run_dir, "context": self.context}, indent=1))
        return path

    def command(self, python: str | None = None) -> list[str]:
        """The command that runs this task in a fresh process (writes its spec file first)."""
        return [python or sys.executable, "-m", "collapsebench", "task", str(self.write_spec())]


class Handle(Protocol):
    task: Task


class Executor(Protocol):
    """Where tasks run. ``submit`` returns at once (or after running the task, for ``inline``);
    ``wait`` returns when every handle has finished and raises the first failure: a
    :class:`UserError` for a user error in the task, another exception for a bug or a crash.
    Executors that schedule may start the tasks only in ``wait`` (SLURM submits the tasks of one
    ``wait`` as one job array). ``close`` releases what the executor holds (Ray's actors); the
    driver calls it when the step ends.

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


@dataclass(frozen=True)
class Launch:
    """How a launcher starts the ranks of a distributed train phase: ``command`` is the launcher's
    argv up to the module it runs (``-m collapsebench task SPEC`` is appended), ``env`` is added to
    every rank's environment. ``keep_global_batch``: each rank trains on ``1 / world size`` of the
    configured per-device batch, so the data, the optimizer steps and the tokens per step stay
    those of one process. ``timeout_min``: how long a collective waits for a silent rank."""

    command: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    keep_global_batch: bool = True
    timeout_min: float = 30.0


class Launcher(Protocol):
    def __call__(self, ctx: PhaseContext, /, **kwargs: Any) -> Launch: ...


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
        path = self.out_dir / ".cache"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ------------------------------------------------------------------ progress, tasks, release
    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A rich progress bar; yields ``advance(n)``."""
        from collapsebench.console import progress_bar

        with progress_bar(f"[{iter_name(self.iteration)}/{self.phase}] {description}", total) as advance:
            yield advance

    def task(self, name: str, target: str, **kwargs: Any) -> Task:
        """A task of this phase: ``target(ctx, **kwargs)`` with ``kwargs`` plain data; a worker
        rebuilds ``ctx`` from the run directory (:func:`context_for`)."""
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

    def close(self) -> None:
        """Release what the phase loaded (models, GPU memory)."""
        self.models.clear()


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
    directory) when it has one, else with its keyword arguments alone."""
    from collapsebench.plugins import import_object

    target = import_object(task.target, what=f"task {task.key}")
    if task.context is None:
        return target(**task.kwargs)
    return target(ctx if ctx is not None else context_for(task.run_dir, *task.context), **task.kwargs)


# ------------------------------------------------------------------------------------ protocols

class DataSource(Protocol):
    def __call__(self, ctx: PhaseContext, /, **kwargs: Any) -> Dataset: ...


class Regime(Protocol):
    def __call__(self, ctx: PhaseContext, real: Dataset, synthetic: Sequence[Dataset], /, **kwargs: Any) -> Dataset: ...


class Preprocessor(Protocol):
    def __call__(self, ctx: PhaseContext, dataset: Dataset, /, **kwargs: Any) -> Dataset: ...


class PromptSource(Protocol):
    def __call__(self, ctx: PhaseContext, n: int | None, tokenizer: Tokenizer, /, **kwargs: Any) -> Dataset: ...


class Validator(Protocol):
    def __call__(self, ctx: PhaseContext, batch: dict[str, list[Any]], /,
                 **kwargs: Any) -> Sequence[Verdict | bool | tuple[Any, ...]]: ...


class Loss(Protocol):
    def __call__(self, logits: Tensor, labels: Tensor, /, **kwargs: Any) -> Any: ...


class Trainer(Protocol):
    def __call__(self, ctx: PhaseContext, dataset: Dataset, /, **kwargs: Any) -> dict[str, Any]: ...


class Generator(Protocol):
    def __call__(self, ctx: PhaseContext, /, **kwargs: Any) -> dict[str, Any]: ...


class Evaluation(Protocol):
    def __call__(self, ctx: PhaseContext, /, **kwargs: Any) -> dict[str, Any]: ...


class ItemBuilder(Protocol):
    def __call__(self, ctx: PhaseContext, /, **kwargs: Any) -> list[dict[str, Any]]: ...


class Tracker(Protocol):
    def log_iteration(self, iteration: int, metrics: dict[str, Any], samples: Dataset | None) -> None: ...

    def finish(self) -> None: ...


class TrackerFactory(Protocol):
    def __call__(self, config: dict[str, Any], run_dir: Path, /, **kwargs: Any) -> Tracker: ...


__all__ = [
    "Count", "NonNegativeFloat", "NonNegativeInt", "PositiveFloat", "PositiveInt", "Probability",
    "DataSource", "Dataset", "Detaching", "Evaluation", "Executor", "ExecutorFactory", "Generator", "Handle",
    "ItemBuilder", "Launch", "Launcher", "Loss", "MODELS",
    "Model", "ObjectCache", "PhaseContext", "Preprocessor", "PromptSource", "Regime", "Resources",
    "SyntheticHistory", "Task", "Tensor", "Tokenizer", "Tracker", "TrackerFactory", "Trainer", "Validator",
    "Verdict", "context_for", "phase_resources", "run_task",
]
