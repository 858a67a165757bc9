"""`collapsebench validate`: schema, plug-ins, registry names, plug-in arguments, and (in a child
process, since they import torch) construction of the backends' argument objects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from collapsebench import registry as R
from collapsebench.config import Config, Spec
from collapsebench.plugins import load_plugins

# (config key, registry, number of positional arguments before the keyword arguments)
def specs(config: Config) -> Iterator[tuple[str, R.Registry, Spec, int]]:
    yield "data.source", R.data_sources, config.data.source, 1
    for i, s in enumerate(config.data.preprocess):
        yield f"data.preprocess[{i}]", R.preprocessors, s, 2
    yield "curate.regime", R.regimes, config.curate.regime, 3
    for i, s in enumerate(config.curate.preprocess):
        yield f"curate.preprocess[{i}]", R.preprocessors, s, 2
    yield "train.trainer", R.trainers, config.train.trainer, 2
    for i, stage in enumerate(config.train.stages):
        yield f"train.stages[{i}].trainer", R.trainers, stage.trainer_spec(config.train.trainer), 2
        if stage.data.regime is not None:
            yield f"train.stages[{i}].data.regime", R.regimes, stage.data.regime, 3
    yield "generate.generator", R.generators, config.generate.generator, 1
    yield "generate.prompts", R.prompt_sources, config.generate.prompts, 3
    for i, s in enumerate(config.generate.validators):
        yield f"generate.validators[{i}]", R.validators, s, 2
    for i, s in enumerate(config.evaluate.evaluations):
        yield f"evaluate.evaluations[{i}]", R.evaluations, s, 1
    for i, s in enumerate(config.tracking):
        yield f"tracking[{i}]", R.trackers, s, 2
    if isinstance(config.executor, Spec):
        yield "executor", R.executors, config.executor, 3
    else:
        for phase, s in config.executor.items():
            yield f"executor.{phase}", R.executors, s, 3


def validate_config(config: Config) -> list[str]:
    """Check plug-ins, names and arguments without heavy imports; return what was checked."""
    load_plugins(config)
    checked = []
    for key, reg, spec, skip in specs(config):
        reg.check_kwargs(spec.name, spec.kwargs, key=key, skip=skip)
        checked.append(f"{key}: {spec.name} -> {reg.target(spec.name)}")
    return checked


def check_backends(config: Config) -> list[str]:
    """Build each chosen plug-in's backend objects through its ``check_config(config, **kwargs)``
    attribute (e.g. TrainingArguments, GenerationConfig). Imports the backend libraries."""
    load_plugins(config)
    done = []
    for key, reg, spec, _ in specs(config):
        check: Any = getattr(reg.get(spec.name, key=key), "check_config", None)
        if check is not None:
            check(config, **spec.kwargs)
            done.append(f"{key}: {spec.name} arguments build")
    return done
