"""generate: S(k) = generate(M(k)) with the configured generator, prompts and validators."""

from __future__ import annotations

from typing import Any

from collapsebench.context import PhaseContext
from collapsebench.registry import generators


def run(ctx: PhaseContext) -> dict[str, Any]:
    spec = ctx.config.generate.generator
    return generators.get(spec.name, key="generate.generator")(ctx, **spec.kwargs) or {}


def num_samples(ctx: PhaseContext) -> int:
    """Accepted samples to produce: generate.num_samples, or the number of real training rows."""
    return ctx.config.generate.num_samples or len(ctx.real())
