"""What the framework asks of a config's plug-ins: every plug-in choice (:func:`choices`), the
digests of the user code each part runs (:func:`code_digests`), and the readers of what the
plug-ins declare (:class:`collapsebench.registry.core.Declarations`): the regime's ``mix_args``
for the fingerprints, its ``needs`` for generation's default target, the evaluations' headline
metrics. Each reads a declaration, never a plug-in's name."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from collapsebench.config import Config, Spec, chain
from collapsebench.errors import UserError
from collapsebench.io import digest
from collapsebench.plugins import import_object, load_plugins
from collapsebench.registry.core import Entry, Registry
from collapsebench.registry.instances import (
    ALL,
    data_sources,
    evaluations,
    executors,
    generators,
    launchers,
    losses,
    preprocessors,
    prompt_sources,
    regimes,
    trackers,
    trainers,
    validators,
)


def declared(registry: Registry[Any], name: str) -> Entry[Any] | None:
    """The entry of a registered name (with its declarations), None for a name this process does not
    know (a user plug-in that is not loaded here): readers of finished runs go on without it."""
    try:
        return registry.entry(name)
    except UserError:
        return None


def hook(target: str) -> Callable[..., Any]:
    """A declared ``"module:function"`` hook, imported."""
    return cast(Callable[..., Any], import_object(target, what="declared hook"))


def mix_args(config: Config) -> tuple[str, ...]:
    """The arguments the run's curation regime declares as leaving iteration 1 alone (``mix_args``),
    read after the config's plug-ins are loaded, so a user's regime counts wherever fingerprints
    are computed."""
    load_plugins(config)
    entry = declared(regimes, config.curate.regime.name)
    return entry.mix_args if entry else ()


def fingerprints(config: Config, iterations: int | None = None) -> dict[str, str]:
    """Every step's fingerprint (``"k.phase"``, :func:`collapsebench.config.chain`) with what the
    config's plug-ins declare: the regime's ``mix_args`` and the digests of user plug-in code."""
    return chain(config, mix_args=mix_args(config), code=code_digests(config), iterations=iterations)


def synthetic_need(spec: Spec, real_rows: int, real_tokens: int | None, iteration: int,
                   key: str = "curate.regime") -> tuple[str, int] | None:
    """What the regime ``spec`` will draw from the samples at ``iteration``, as (unit, amount), from
    its ``needs`` hook with its bound arguments; None when it declares none."""
    entry = regimes.entry(spec.name, key=key)
    if entry.needs is None:
        return None
    need = hook(entry.needs)(regimes.bind(spec.name, spec.kwargs, key=key), real_rows, real_tokens, iteration)
    return None if need is None else (str(need[0]), int(need[1]))


def headline_metrics(config: Config) -> list[str]:
    """The headline metrics of a run: those its evaluations declare (``headline``), in the config's
    order. Evaluations of plug-ins that cannot be loaded here contribute none."""
    with contextlib.suppress(UserError):
        load_plugins(config)
    out: list[str] = []
    for spec in config.evaluate.evaluations:
        entry = declared(evaluations, spec.name)
        out.extend(m for m in (entry.headline if entry else ()) if m not in out)
    return out


def choices(config: Config) -> Iterator[tuple[str, Registry[Any], Spec]]:
    """Every plug-in choice of the config: (config key, registry, spec), the key starting with the
    config section that chose it; after each, the arguments its plug-in declares plug-in choices
    of their own (``plugin_args``)."""
    for key, registry, spec in _choices(config):
        yield key, registry, spec
        yield from _plugin_args(key, registry, spec)


def _choices(config: Config) -> Iterator[tuple[str, Registry[Any], Spec]]:
    yield "data.source", data_sources, config.data.source
    if config.data.evaluation is not None:
        yield "data.evaluation", data_sources, config.data.evaluation
    for i, s in enumerate(config.data.preprocess):
        yield f"data.preprocess[{i}]", preprocessors, s
    yield "curate.regime", regimes, config.curate.regime
    for i, s in enumerate(config.curate.preprocess):
        yield f"curate.preprocess[{i}]", preprocessors, s
    yield "train.trainer", trainers, config.train.trainer
    yield from _loss("train.trainer", config.train.trainer)
    for i, stage in enumerate(config.train.stages):
        yield f"train.stages[{i}].trainer", trainers, stage.trainer_spec(config.train.trainer)
        yield from _loss(f"train.stages[{i}].trainer", stage.trainer_spec(config.train.trainer))
        if stage.data.regime is not None:
            yield f"train.stages[{i}].data.regime", regimes, stage.data.regime
    if config.train.launcher is not None:
        yield "train.launcher", launchers, config.train.launcher
    yield "generate.generator", generators, config.generate.generator
    yield "generate.prompts", prompt_sources, config.generate.prompts
    for i, s in enumerate(config.generate.validators):
        yield f"generate.validators[{i}]", validators, s
    for i, s in enumerate(config.evaluate.evaluations):
        yield f"evaluate.evaluations[{i}]", evaluations, s
    for i, s in enumerate(config.tracking):
        yield f"tracking[{i}]", trackers, s
    if isinstance(config.executor, Spec):
        yield "executor", executors, config.executor
    else:
        for phase, s in config.executor.items():
            yield f"executor.{phase}", executors, s


def _spec(key: str, value: Any) -> Spec:
    try:
        return Spec.model_validate(value)
    except ValueError:
        raise UserError(f"{key} must be a name or {{name: ..., <kwargs>}}, got {value!r}") from None


def _plugin_args(key: str, registry: Registry[Any], spec: Spec) -> Iterator[tuple[str, Registry[Any], Spec]]:
    """The arguments of ``spec`` that its plug-in declares plug-in choices of their own (``plugin_args``)."""
    entry = declared(registry, spec.name)
    for arg, kind in (entry.plugin_args if entry else {}).items():
        if spec.kwargs.get(arg) is not None:
            yield f"{key}.{arg}", ALL[kind], _spec(f"{key}.{arg}", spec.kwargs[arg])


def _loss(key: str, trainer: Spec) -> Iterator[tuple[str, Registry[Any], Spec]]:
    """A trainer's ``loss`` argument is a plug-in choice of its own (losses registry)."""
    loss = trainer.kwargs.get("loss")
    if loss is not None:
        yield f"{key}.loss", losses, _spec(f"{key}.loss", loss)

PARTS = {"data": "prepare", "curate": "curate", "train": "train", "generate": "generate", "evaluate": "evaluate"}


def code_digests(config: Config) -> dict[str, str]:
    """Per part of the loop (the fingerprint sections of ``config.fingerprints``), a digest of the
    source files of the user plug-ins it runs, so editing a plug-in's code marks the steps that ran
    it as stale. Built-in plug-ins are the framework's: they are versioned with it, not hashed."""
    files: dict[str, set[str]] = {}
    for key, reg, spec in choices(config):
        part = PARTS.get(key.split(".")[0].split("[")[0])
        location = reg.entry(spec.name, key=key).location
        if part is None or location.startswith("collapsebench."):
            continue
        module = importlib.import_module(location.partition(":")[0])
        source = getattr(module, "__file__", None)
        if source:
            files.setdefault(part, set()).add(source)
    return {part: digest(sorted((Path(f).name, hashlib.sha256(Path(f).read_bytes()).hexdigest()) for f in found))
            for part, found in files.items()}
