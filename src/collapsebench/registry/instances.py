"""The registries of collapsebench, one per kind of plug-in, and :data:`ALL` by name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from collapsebench.registry.core import Registry

if TYPE_CHECKING:
    from collapsebench.api import (
        DataSource,
        Evaluation,
        ExecutorFactory,
        Generator,
        ItemBuilder,
        Launcher,
        Loss,
        Preprocessor,
        PromptSource,
        Regime,
        TrackerFactory,
        Trainer,
        Validator,
    )

# ------------------------------------------------------------------------------------ the registries
# skip = positional arguments before the keyword arguments (see collapsebench.api for each protocol)
data_sources: Registry[DataSource] = Registry("data source", skip=1)  # (ctx)
regimes: Registry[Regime] = Registry("curation regime", skip=3)  # (ctx, real, synthetic)
preprocessors: Registry[Preprocessor] = Registry("preprocessor", skip=2)  # (ctx, dataset)
prompt_sources: Registry[PromptSource] = Registry("prompt source", skip=3)  # (ctx, n, tokenizer)
validators: Registry[Validator] = Registry("validator", skip=2)  # (ctx, batch)
losses: Registry[Loss] = Registry("loss", skip=2)  # (logits, labels)
trainers: Registry[Trainer] = Registry("trainer", skip=2)  # (ctx, dataset)
generators: Registry[Generator] = Registry("generator", skip=1)  # (ctx)
evaluations: Registry[Evaluation] = Registry("evaluation", skip=1)  # (ctx)
item_builders: Registry[ItemBuilder] = Registry("item builder", skip=1)  # (ctx)
executors: Registry[ExecutorFactory] = Registry("executor", skip=0)  # (**kwargs) -> Executor
launchers: Registry[Launcher] = Registry("launcher", skip=1)  # (ctx) -> Launch
trackers: Registry[TrackerFactory] = Registry("tracker", skip=2)  # (config, run_dir) -> Tracker

ALL: dict[str, Registry[Any]] = {
    "data_sources": data_sources,
    "regimes": regimes,
    "preprocessors": preprocessors,
    "prompt_sources": prompt_sources,
    "validators": validators,
    "losses": losses,
    "trainers": trainers,
    "generators": generators,
    "evaluations": evaluations,
    "item_builders": item_builders,
    "executors": executors,
    "launchers": launchers,
    "trackers": trackers,
}
