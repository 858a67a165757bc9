"""evaluate: m(k) = evaluate(M(k), S(k)); every evaluation's numbers merge into metrics.json."""

from __future__ import annotations

import json
import math
from typing import Any

from collapsebench.context import PhaseContext
from collapsebench.errors import UserError
from collapsebench.registry import evaluations


def run(ctx: PhaseContext) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for i, spec in enumerate(ctx.config.evaluate.evaluations):
        key = f"evaluate.evaluations[{i}]"
        result = evaluations.get(spec.name, key=key)(ctx, **spec.kwargs) or {}
        for name, value in result.items():
            if name in metrics:
                raise UserError(f"{key}: evaluation '{spec.name}' returns '{name}', already returned by another")
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            metrics[name] = value
    (ctx.out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True, default=float))
    return {"evaluations": [s.name for s in ctx.config.evaluate.evaluations]}
