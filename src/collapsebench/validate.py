"""Checking a config before anything runs: one path for ``collapsebench validate`` and ``run``.

:func:`validate_config` (no torch): the user's plug-ins import; every plug-in choice names a
registered plug-in; its arguments bind to its signature and pass their annotated types and domains;
the plug-ins fit together (text plug-ins on text data, a generator for the model the trainer
makes, ...); input files exist and hold the configured column; hub models and datasets are in the
local cache (else they are listed as downloads); and, first, that the optional backends the chosen
plug-ins import (trl, vllm, lm-eval, ray, submitit, wandb, httpx) are installed, so a missing one
is one message naming the extra to install before any cell starts. :func:`check_backends` then builds the backends'
own argument objects (``TrainingArguments``, ``GenerationConfig``), which imports torch: ``validate``
runs it in a child process, ``run`` in its own.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from collapsebench import registry as R
from collapsebench.config import Config
from collapsebench.errors import EXTRAS, UserError, missing_backend
from collapsebench.plugins import import_object, load_plugins
from collapsebench.registry import choices


@dataclass
class Report:
    checked: list[str] = field(default_factory=list)  # "key: plug-in -> module:attr"
    downloads: list[str] = field(default_factory=list)  # hub names not in the local cache
    prepare: list[str] = field(default_factory=list)  # "prepare[i]: folder (ready | to build | kept ...)"
    installs: list[str] = field(default_factory=list)  # GPU plug-ins' backends not installed here


def validate_config(config: Config) -> Report:
    """Everything that can be checked without torch (see the module docstring)."""
    from collapsebench.prepare import check_prepare

    load_plugins(config)
    report = Report(prepare=check_prepare(config), installs=check_installed(config))
    for key, reg, spec in choices(config):
        kwargs = reg.check_kwargs(spec.name, spec.kwargs, key=key)
        entry = reg.entry(spec.name, key=key)
        if entry.preflight is not None:
            preflight = import_object(entry.preflight, what=f"preflight of {reg.kind} '{spec.name}'")
            with backend_errors(f"{key}: {reg.kind} '{spec.name}'"):
                report.downloads += preflight(config, kwargs)
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
            checker = import_object(check, what=f"check of {reg.kind} '{spec.name}'")
            with backend_errors(f"{key}: {reg.kind} '{spec.name}'"):
                checker(config, kwargs)
            done.append(f"{key}: {spec.name} arguments build")
    return done


def check_installed(config: Config, *, strict: bool = False) -> list[str]:
    """Refuse, in one message, a chosen plug-in whose module imports an optional backend that is not
    installed. The plug-ins import their backends inside the functions that use them (so that
    ``validate`` imports no torch), so the module's source is read, not run; an import guarded by
    ``except ImportError`` is the module's own business and is left out.

    A plug-in that needs a GPU (vllm) is validated on one machine and run on another, so unless
    ``strict`` (``run``, ``sweep``: it runs from here) its missing backend is returned as a note. A
    plug-in given an interpreter of its own (``python:``, e.g. the vllm generator's workers in a
    vLLM virtual environment) imports its backend there, not here: it is not checked."""
    load_plugins(config)  # their registrations first (once a process)
    notes = []
    for key, reg, spec in choices(config):
        if spec.kwargs.get("python"):
            continue
        module = reg.target(spec.name).partition(":")[0]
        for root in sorted(backend_imports(module) | set(reg.entry(spec.name).backends)):
            if installed(root):
                continue
            error = missing_backend(root, f"{key}: {reg.kind} '{spec.name}'") or UserError(root)
            if strict or not reg.entry(spec.name).gpu:
                raise error
            notes.append(str(error))
    return notes


@functools.cache
def backend_imports(module: str) -> set[str]:
    """The optional backends (keys of ``errors.EXTRAS``) that ``module``'s source imports unguarded."""
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return set()  # reported by the registry with the plug-in's name
    if found is None or not found.origin or not found.origin.endswith(".py"):
        return set()
    with open(found.origin, encoding="utf-8") as fh:
        source = fh.read()
    if not re.search(r"\b(?:" + "|".join(map(re.escape, EXTRAS)) + r")\b", source):
        return set()  # no backend named anywhere: nothing to parse (a parse cost a toy run 5 ms a module)
    tree = ast.parse(source)
    guarded = {id(node) for block in ast.walk(tree) if isinstance(block, ast.Try)
               and any(_catches_import_error(h) for h in block.handlers)
               for stmt in block.body for node in ast.walk(stmt)}
    guarded |= {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                for stmt in block.body for node in ast.walk(stmt)}
    roots = set()
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            roots |= {a.name.partition(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.partition(".")[0])
    return roots & set(EXTRAS)


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError", "Exception") for n in names)


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (None in ``sys.modules`` blocks it)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@contextmanager
def backend_errors(what: str) -> Iterator[None]:
    """A backend that fails to import while a check runs becomes the one missing-backend message."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if (error := missing_backend(exc.name, what)) is not None:
            raise error from None
        raise
