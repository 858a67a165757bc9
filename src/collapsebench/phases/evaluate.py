"""evaluate: m(k) = evaluate(M(k), S(k)); every evaluation's numbers merge into metrics.json.

Each evaluation is a task of the phase (:func:`evaluate_one`), which writes its numbers to
``results/<i>.json`` in the work folder; the phase merges them in the config's order. In one
process (the default) the tasks run in order and share the phase's model cache; under an executor
that coordinates in the driver (Ray, SLURM) they run side by side. A resumed phase keeps the
evaluations that had finished.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from collapsebench.api import PhaseContext
from collapsebench.errors import UserError
from collapsebench.io import write_json
from collapsebench.registry import evaluations


def result_file(ctx: PhaseContext, index: int) -> Path:
    return ctx.out_dir / "results" / f"{index:03d}.json"


def evaluate_one(ctx: PhaseContext, index: int) -> None:
    """Run evaluation ``index`` of ``evaluate.evaluations``; write its numbers."""
    spec = ctx.config.evaluate.evaluations[index]
    result = evaluations.call(spec.name, ctx, key=f"evaluate.evaluations[{index}]", kwargs=spec.kwargs) or {}
    result_file(ctx, index).parent.mkdir(exist_ok=True)
    write_json(result_file(ctx, index), result)


def run(ctx: PhaseContext) -> dict[str, Any]:
    specs = ctx.config.evaluate.evaluations
    ctx.map_tasks([ctx.task(f"evaluation{i:03d}", evaluate_one, index=i)
                   for i in range(len(specs)) if not result_file(ctx, i).exists()])
    metrics: dict[str, Any] = {}
    for i, spec in enumerate(specs):
        key = f"evaluate.evaluations[{i}]"
        for name, value in json.loads(result_file(ctx, i).read_text()).items():
            if name in metrics:
                raise UserError(f"{key}: evaluation '{spec.name}' returns '{name}', already returned by another")
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            metrics[name] = value
    write_json(ctx.out_dir / "metrics.json", metrics)
    shutil.rmtree(ctx.out_dir / "results", ignore_errors=True)
    return {"evaluations": [s.name for s in specs]}
