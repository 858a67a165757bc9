"""Checking a config before anything runs: one path for ``collapsebench validate`` and ``run``.

:func:`validate_config` (no torch): the user's plug-ins import; every plug-in choice names a
registered plug-in; its arguments bind to its signature and pass their annotated types and domains;
the plug-ins fit together (text plug-ins on text data, a generator for the model the trainer
makes, ...); input files exist and hold the configured column; hub models and datasets are in the
local cache (else they are listed as downloads). :func:`check_backends` then builds the backends'
own argument objects (``TrainingArguments``, ``GenerationConfig``), which imports torch: ``validate``
runs it in a child process, ``run`` in its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from collapsebench import registry as R
from collapsebench.config import Config
from collapsebench.errors import UserError
from collapsebench.plugins import import_object, load_plugins
from collapsebench.registry import choices


@dataclass
class Report:
    checked: list[str] = field(default_factory=list)  # "key: plug-in -> module:attr"
    downloads: list[str] = field(default_factory=list)  # hub names not in the local cache
    prepare: list[str] = field(default_factory=list)  # "prepare[i]: folder (ready | to build | kept ...)"


def validate_config(config: Config) -> Report:
    """Everything that can be checked without torch (see the module docstring)."""
    from collapsebench.prepare import check_prepare

    load_plugins(config)
    report = Report(prepare=check_prepare(config))
    for key, reg, spec in choices(config):
        kwargs = reg.check_kwargs(spec.name, spec.kwargs, key=key)
        entry = reg.entry(spec.name, key=key)
        if entry.preflight is not None:
            report.downloads += import_object(entry.preflight, what=f"preflight of {reg.kind} '{spec.name}'")(
                config, kwargs)
        report.checked.append(f"{key}: {spec.name} -> {reg.target(spec.name)}")
    check_fit(config)
    report.downloads += model_downloads(config)
    report.downloads = list(dict.fromkeys(report.downloads))
    return report


def check_fit(config: Config) -> None:
    """Plug-ins that declare the data or model they work with must agree with the data source and
    the trainer (an LM generator on a toy model is a config error, not a crash in phase 3)."""
    source = R.data_sources.entry(config.data.source.name)
    trainer_keys = [("train.trainer", config.train.trainer)] + [
        (f"train.stages[{i}].trainer", s.trainer_spec(config.train.trainer)) for i, s in enumerate(config.train.stages)]
    models = {R.trainers.entry(spec.name).model for _, spec in trainer_keys} - {None}
    made = next(iter(models)) if len(models) == 1 else None
    for key, reg, spec in choices(config):
        entry = reg.entry(spec.name, key=key)
        if entry.data and source.data and entry.data != source.data:
            raise UserError(f"{key}: {reg.kind} '{spec.name}' works on {entry.data} data, but data.source "
                            f"'{config.data.source.name}' gives {source.data} data")
        if reg is not R.trainers and entry.model and made and entry.model != made:
            raise UserError(f"{key}: {reg.kind} '{spec.name}' needs a {entry.model} model, but train.trainer "
                            f"'{config.train.trainer.name}' makes a {made} model")


def model_downloads(config: Config) -> list[str]:
    """``model.base`` and ``model.tokenizer.path`` when they are hub names not in the local cache."""
    from collapsebench.sources.files import local_or_hub

    out = []
    for key, name in (("model.base", config.model.base), ("model.tokenizer.path", config.model.tokenizer.path)):
        if name:
            out += local_or_hub(config, name, key)
    return out


def check_backends(config: Config) -> list[str]:
    """Build each chosen plug-in's backend objects through its entry's ``check`` (e.g.
    TrainingArguments, GenerationConfig). Imports the backend libraries."""
    load_plugins(config)
    done = []
    for key, reg, spec in choices(config):
        check = reg.entry(spec.name, key=key).check
        if check is not None:
            kwargs = reg.check_kwargs(spec.name, spec.kwargs, key=key)
            import_object(check, what=f"check of {reg.kind} '{spec.name}'")(config, kwargs)
            done.append(f"{key}: {spec.name} arguments build")
    return done
