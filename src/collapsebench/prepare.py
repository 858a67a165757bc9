"""The config's ``prepare:`` block: folders a run needs before its first step, built by the framework.

A recipe's CPU twin reads stand-ins — a small "pretrained" base model, a quality classifier — that
nothing downloads. Each ``prepare`` step names the folder it makes and how: ``run`` runs another
collapsebench config (its run directory is ``<output>.run/``) and copies ``take`` out of it;
``call`` runs ``function(output, config_dir, **kwargs)``. A built folder holds ``.prepared.json``
with the step's fingerprint (the step, the text of the config or code it runs), so it is built
once and kept, and rebuilt only when that changes. The new folder is made beside the old one and
swapped in only once complete; a folder that exists without the marker (made by hand) is kept and
used as it is. One lock per folder lets concurrent sweep cells wait for the one that builds it.

``validate`` checks the steps (files, the run's config, the function) and treats the folders as
present; ``run`` and every sweep cell build what is missing after validation, before the first step.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collapsebench.config import Config, PrepareStep, load_config
from collapsebench.console import console
from collapsebench.errors import UserError
from collapsebench.io import atomic_write, digest
from collapsebench.plugins import import_object, load_plugins

MARKER = ".prepared.json"


def check_prepare(config: Config) -> list[str]:
    """Every ``prepare`` step's inputs, without building anything; one line per step for ``validate``."""
    lines = []
    for i, step in enumerate(config.prepare):
        key = f"prepare[{i}]"
        out = config.resolve_path(step.output).resolve()
        if step.run is not None:
            nested = load_config(_existing(config, step.run, f"{key}.run"))
            if nested.prepare:
                raise UserError(f"{key}.run: {step.run} has a prepare block of its own; list its steps here instead")
            if step.take is not None and (Path(step.take).is_absolute() or ".." in Path(step.take).parts):
                raise UserError(f"{key}.take: '{step.take}' must be a path inside the run directory")
        else:
            _function(config, step, key)
        state = "ready" if is_ready(config, step) else ("kept (not made by prepare)" if out.exists() else "to build")
        lines.append(f"{key}: {step.output} ({state})")
    return lines


def ensure_prepared(config: Config, run: Callable[[Config], object], *, quiet: bool = False) -> None:
    """Build every ``prepare`` folder that is missing or stale (see the module docstring); ``run``
    runs a nested config to the end (the driver's own entry point, passed in by the driver)."""
    for i, step in enumerate(config.prepare):
        out = config.resolve_path(step.output).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out.parent / f".{out.name}.prepare.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a sweep cell building it holds this until it is in place
            try:
                if is_ready(config, step) or (out.exists() and not (out / MARKER).exists()):
                    continue
                if not quiet:
                    console.print(f"[bold]prepare[{i}][/] building {step.output} ...")
                _build(config, step, f"prepare[{i}]", out, run)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def fingerprint(config: Config, step: PrepareStep) -> str:
    """What the folder is made from, however its paths are written (two recipes that prepare the
    same folder from their own folders agree): the text of the config a ``run`` step runs and what
    it takes, or the function of a ``call`` step, the text of its ``.py`` file and its arguments."""
    if step.run is not None:
        return digest({"run": config.resolve_path(step.run).read_text(), "take": step.take})
    module, _, attr = str(step.call).partition(":")
    code = config.resolve_path(module).read_text() if module.endswith(".py") else module
    return digest({"call": attr, "code": code, "kwargs": step.kwargs})


def is_ready(config: Config, step: PrepareStep) -> bool:
    marker = config.resolve_path(step.output).resolve() / MARKER
    if not marker.exists():
        return False
    try:
        return bool(json.loads(marker.read_text()).get("digest") == fingerprint(config, step))
    except (OSError, ValueError):
        return False


def _build(config: Config, step: PrepareStep, key: str, out: Path, run: Callable[[Config], object]) -> None:
    tmp = out.with_name(f"{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    if step.run is not None:
        run_dir = out.with_name(f"{out.name}.run")
        nested = load_config(config.resolve_path(step.run), [f"output_dir={run_dir}"])
        run(nested)
        source = run_dir / (step.take or f"iter_{nested.iterations:03d}/train/model")
        if not source.exists():
            raise UserError(f"{key}.take: {source} does not exist after running {step.run}")
        shutil.copytree(source, tmp)
    else:
        tmp.mkdir(parents=True)
        _function(config, step, key)(tmp, Path(config.config_dir or "."), **step.kwargs)
    atomic_write(tmp / MARKER, json.dumps({"digest": fingerprint(config, step), "step": step.model_dump(mode="json")}))
    old = out.with_name(f"{out.name}.old")
    if out.exists():
        out.rename(old)  # the stale folder, removed once the new one is in place
    tmp.rename(out)
    if old.exists():
        shutil.rmtree(old)


def _existing(config: Config, path: str, key: str) -> Path:
    resolved = config.resolve_path(path)
    if not resolved.is_file():
        raise UserError(f"{key}: file not found: {resolved}")
    return resolved


def _function(config: Config, step: PrepareStep, key: str) -> Any:
    """The ``call`` target: ``file.py:function`` beside the config (imported like a plug-in file) or
    an importable ``module:function``."""
    target = str(step.call)
    module, _, attr = target.partition(":")
    if not attr:
        raise UserError(f"{key}.call: '{target}' is not of the form 'file.py:function' or 'module:function'")
    if module.endswith(".py"):
        path = _existing(config, module, f"{key}.call")
        load_plugins(config.model_copy(update={"plugins": [str(path)]}))
        from collapsebench.plugins import module_name_for

        module = module_name_for(path)
    fn = import_object(f"{module}:{attr}", what=f"{key}.call")
    if not callable(fn):
        raise UserError(f"{key}.call: '{target}' is not a function")
    return fn
