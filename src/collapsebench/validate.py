"""`collapsebench validate`: schema, plug-ins, registry names, plug-in arguments bound and
type-checked against their signatures, and (in a child process, since they import torch) the
construction of the backends' argument objects through each entry's ``check``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from collapsebench import registry as R
from collapsebench.config import Config, Spec
from collapsebench.errors import UserError
from collapsebench.plugins import import_object, load_plugins


def specs(config: Config) -> Iterator[tuple[str, R.Registry[Any], Spec]]:
    """Every plug-in choice of the config: (config key, registry, spec)."""
    yield "data.source", R.data_sources, config.data.source
    for i, s in enumerate(config.data.preprocess):
        yield f"data.preprocess[{i}]", R.preprocessors, s
    yield "curate.regime", R.regimes, config.curate.regime
    for i, s in enumerate(config.curate.preprocess):
        yield f"curate.preprocess[{i}]", R.preprocessors, s
    yield "train.trainer", R.trainers, config.train.trainer
    yield from _loss("train.trainer", config.train.trainer)
    for i, stage in enumerate(config.train.stages):
        yield f"train.stages[{i}].trainer", R.trainers, stage.trainer_spec(config.train.trainer)
        yield from _loss(f"train.stages[{i}].trainer", stage.trainer_spec(config.train.trainer))
        if stage.data.regime is not None:
            yield f"train.stages[{i}].data.regime", R.regimes, stage.data.regime
    if config.train.launcher is not None:
        yield "train.launcher", R.launchers, config.train.launcher
    yield "generate.generator", R.generators, config.generate.generator
    yield "generate.prompts", R.prompt_sources, config.generate.prompts
    for i, s in enumerate(config.generate.validators):
        yield f"generate.validators[{i}]", R.validators, s
    for i, s in enumerate(config.evaluate.evaluations):
        yield f"evaluate.evaluations[{i}]", R.evaluations, s
    for i, s in enumerate(config.tracking):
        yield f"tracking[{i}]", R.trackers, s
    if isinstance(config.executor, Spec):
        yield "executor", R.executors, config.executor
    else:
        for phase, s in config.executor.items():
            yield f"executor.{phase}", R.executors, s


def _loss(key: str, trainer: Spec) -> Iterator[tuple[str, R.Registry[Any], Spec]]:
    """A trainer's ``loss`` argument is a plug-in choice of its own (losses registry)."""
    loss = trainer.kwargs.get("loss")
    if loss is not None:
        try:
            yield f"{key}.loss", R.losses, Spec.model_validate(loss)
        except ValueError:
            raise UserError(f"{key}.loss must be a name or {{name: ..., <kwargs>}}, got {loss!r}") from None


def validate_config(config: Config) -> list[str]:
    """Check plug-ins, names and arguments without heavy imports; return what was checked."""
    load_plugins(config)
    checked = []
    for key, reg, spec in specs(config):
        reg.check_kwargs(spec.name, spec.kwargs, key=key)
        checked.append(f"{key}: {spec.name} -> {reg.target(spec.name)}")
    return checked


def check_backends(config: Config) -> list[str]:
    """Build each chosen plug-in's backend objects through its entry's ``check`` (e.g.
    TrainingArguments, GenerationConfig). Imports the backend libraries."""
    load_plugins(config)
    done = []
    for key, reg, spec in specs(config):
        check = reg.entry(spec.name, key=key).check
        if check is not None:
            kwargs = reg.check_kwargs(spec.name, spec.kwargs, key=key)
            import_object(check, what=f"check of {reg.kind} '{spec.name}'")(config, kwargs)
            done.append(f"{key}: {spec.name} arguments build")
    return done
