"""The contract between the framework and its plug-ins: one protocol per plug-in kind, the phase
context every plug-in receives (defined in :mod:`collapsebench.context`), and the executor's units
of work (tasks, long-lived workers: :mod:`collapsebench.tasks`), all importable from here.

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
Executor            ``submit(task, resources) -> handle``, ``wait(handles)``, ``close()``,
                    ``start_workers(specs, run_dir, name) -> Workers``; one that
                    can host a detached sweep driver is also ``Detaching``: ``detach(argv, log_dir,
                    name) -> job id``
Launcher            ``fn(ctx, **kw) -> Launch``: the command that starts the train phase's ranks
Tracker             ``log_iteration(iteration, metrics, samples)``, ``finish()``
==================  =========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from pydantic import Field

from collapsebench.context import MODELS, ObjectCache, PhaseContext, PhaseWorkers, SyntheticHistory, context_for, run_task
from collapsebench.tasks import (
    Detaching,
    Executor,
    ExecutorFactory,
    Handle,
    Resources,
    Task,
    TaskFuture,
    WorkerHost,
    Workers,
    WorkerSpec,
    phase_resources,
    target_of,
)

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


# ------------------------------------------------------------------------------------ launchers

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
    "NonNegativeFloat", "NonNegativeInt", "PositiveFloat", "PositiveInt",
    "DataSource", "Dataset", "Detaching", "Evaluation", "Executor", "ExecutorFactory", "Generator", "Handle",
    "ItemBuilder", "Launch", "Launcher", "Loss", "MODELS",
    "Model", "ObjectCache", "PhaseContext", "PhaseWorkers", "Preprocessor", "PromptSource", "Regime", "Resources",
    "SyntheticHistory", "Task", "TaskFuture", "Tensor", "Tokenizer", "Tracker", "TrackerFactory", "Trainer",
    "Validator", "Verdict", "WorkerHost", "WorkerSpec", "Workers", "context_for", "phase_resources", "run_task",
    "target_of",
]
