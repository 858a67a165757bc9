"""What the side-by-side benchmarks record about the machine, and how they write their result file.

Imported by the benchmark scripts that sit beside it (``python benchmarks/NAME.py`` puts this folder
on the import path)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def machine(threads: int, load_before: tuple[float, float, float]) -> dict[str, Any]:
    """CPUs, platform, torch threads and the load averages around the run: the figures are ratios
    measured side by side, and the load says how crowded the machine was."""
    return {"nproc": os.cpu_count(), "platform": platform.platform(), "threads": threads,
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()]}


def write_result(result: dict[str, Any], out: Path | None, headline: tuple[str, ...]) -> None:
    """Write ``result`` as JSON to ``out`` (none for a quick look) and print its headline keys."""
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in headline}, indent=1))
