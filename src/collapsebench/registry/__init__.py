"""The registries of collapsebench and the generic :class:`Registry` (:mod:`.core`), one instance
per kind of plug-in (:mod:`.instances`), the built-ins with their declarations (:mod:`.builtins`),
and what the framework reads from a config's plug-ins (:mod:`.declared`).

Everything is importable from here: ``from collapsebench.registry import regimes, Registry``.
"""

from collapsebench.registry import builtins as _builtins  # noqa: F401 - registers the built-ins
from collapsebench.registry.core import Argument, Declarations, Description, Entry, Registry
from collapsebench.registry.declared import (
    PARTS,
    choices,
    code_digests,
    declared,
    fingerprints,
    headline_metrics,
    hook,
    mix_args,
    synthetic_need,
)
from collapsebench.registry.instances import (
    ALL,
    data_sources,
    evaluations,
    executors,
    generators,
    item_builders,
    launchers,
    losses,
    preprocessors,
    prompt_sources,
    regimes,
    trackers,
    trainers,
    validators,
)

__all__ = [
    "ALL", "PARTS", "Argument", "Declarations", "Description", "Entry", "Registry", "choices", "code_digests",
    "data_sources", "declared", "evaluations", "fingerprints", "executors", "generators", "headline_metrics", "hook",
    "item_builders", "launchers", "losses", "mix_args", "preprocessors", "prompt_sources", "regimes",
    "synthetic_need", "trackers", "trainers", "validators",
]
