"""train: M(k) = train(D(k)) with the configured trainer."""

from __future__ import annotations

from typing import Any

from collapsebench.context import PhaseContext
from collapsebench.registry import trainers


def run(ctx: PhaseContext) -> dict[str, Any]:
    spec = ctx.config.train.trainer
    stats = trainers.get(spec.name, key="train.trainer")(ctx, ctx.dataset(), **spec.kwargs)
    return {"init": ctx.config.model.init, **(stats or {})}
