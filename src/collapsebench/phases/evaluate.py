"""evaluate: m(k) = evaluate(M(k), S(k)); every evaluation's numbers merge into metrics.json."""

from __future__ import annotations

import math
from typing import Any

from collapsebench.api import PhaseContext
from collapsebench.errors import UserError
from collapsebench.io import write_json
from collapsebench.registry import evaluations


def run(ctx: PhaseContext) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for i, spec in enumerate(ctx.config.evaluate.evaluations):
        key = f"evaluate.evaluations[{i}]"
        result = evaluations.call(spec.name, ctx, key=key, kwargs=spec.kwargs) or {}
        for name, value in result.items():
            if name in metrics:
                raise UserError(f"{key}: evaluation '{spec.name}' returns '{name}', already returned by another")
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            metrics[name] = value
    write_json(ctx.out_dir / "metrics.json", metrics)
    return {"evaluations": [s.name for s in ctx.config.evaluate.evaluations]}
