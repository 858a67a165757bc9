"""User plug-ins named in the config's ``plugins:`` list: ``.py`` paths or importable modules.

Imported in the driver and again in every worker process, so registrations made at import time
(``@trainers.register(...)``) are seen wherever a phase runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from collapsebench.config import Config
from collapsebench.errors import UserError, missing_backend
from collapsebench.io import digest

_loaded: set[str] = set()


def import_object(target: str, *, what: str = "plug-in") -> Any:
    """Import ``"package.module:attr"`` and return the attribute."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr or module_name.startswith(".") or any(not p for p in module_name.split(".")):
        raise UserError(f"{what} '{target}' is not of the form 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UserError(f"{what} '{target}': module '{module_name}' not found") from None
        if (error := missing_backend(exc.name, what)) is not None:  # e.g. the slurm executor without submitit
            raise error from None
        raise
    obj: Any = module
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise UserError(f"{what} '{target}': module '{module_name}' has no attribute '{attr}'") from None
    return obj


def module_name_for(path: Path) -> str:
    """The module name a plug-in file is imported under (unique per path)."""
    return f"collapsebench_plugin_{path.stem}_{digest(str(path))[:8]}"


def load_plugins(config: Config) -> None:
    """Import the config's plug-ins once per process: ``.py`` files (relative to the config's
    folder) under a module name derived from their path, or importable absolute module names."""
    for entry in config.plugins:
        if entry.endswith(".py") or "/" in entry:
            path = config.resolve_path(entry).resolve()
            if str(path) in _loaded:
                continue
            if not path.is_file() or path.suffix != ".py":
                raise UserError(f"plugins: '{entry}' is not a Python file ({path})")
            name = module_name_for(path)
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise UserError(f"plugins: cannot import {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            _loaded.add(str(path))
        elif entry not in _loaded:
            if not entry or any(not part.isidentifier() for part in entry.split(".")):
                raise UserError(f"plugins: '{entry}' is neither a .py file nor an absolute module name")
            try:
                importlib.import_module(entry)
            except ModuleNotFoundError as exc:
                if exc.name and entry.startswith(exc.name):
                    raise UserError(f"plugins: module '{entry}' not found") from None
                raise
            _loaded.add(entry)
