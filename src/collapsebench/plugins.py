"""User plug-ins named in the config's ``plugins:`` list: ``.py`` paths or importable modules.

Imported in the driver and again in every worker process, so registrations made at import time
(``@trainers.register(...)``) are seen wherever a phase runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from collapsebench.config import Config
from collapsebench.errors import UserError

_loaded: set[str] = set()


def load_plugins(config: Config) -> None:
    for entry in config.plugins:
        if entry in _loaded:
            continue
        if entry.endswith(".py") or "/" in entry:
            path = config.resolve_path(entry).resolve()
            if not path.is_file():
                raise UserError(f"plugins: file not found: {path}")
            name = f"collapsebench_plugin_{path.stem}_{abs(hash(str(path))) % 10**8}"
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            try:
                importlib.import_module(entry)
            except ModuleNotFoundError as exc:
                if exc.name and entry.startswith(exc.name):
                    raise UserError(f"plugins: module '{entry}' not found") from None
                raise
        _loaded.add(entry)
