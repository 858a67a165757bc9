"""generate: S(k) = generate(M(k)) with the configured generator, prompts and validators."""

from __future__ import annotations

from typing import Any

from collapsebench.api import PhaseContext
from collapsebench.registry import generators


def run(ctx: PhaseContext) -> dict[str, Any]:
    spec = ctx.config.generate.generator
    return generators.call(spec.name, ctx, key="generate.generator", kwargs=spec.kwargs) or {}
