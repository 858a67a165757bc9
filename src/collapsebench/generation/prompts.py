"""Prompt sources: what each generated sample starts from. ``fn(ctx, n, tokenizer, **kw)`` returns a
dataset of ``n`` rows with ``prompt`` (text) and ``parent`` (source document id or "")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import datasets

    from collapsebench.context import PhaseContext


def unconditional(ctx: "PhaseContext", n: int, tokenizer: Any) -> "datasets.Dataset":
    """Every sample starts from BOS alone."""
    import datasets

    return datasets.Dataset.from_dict({"prompt": [""] * n, "parent": [""] * n})


def real_prefix(ctx: "PhaseContext", n: int, tokenizer: Any, tokens: int = 16) -> "datasets.Dataset":
    """The first ``tokens`` tokens of real training documents drawn uniformly (with replacement)."""
    real = ctx.real()
    rows = np.random.default_rng(ctx.seed).integers(0, len(real), size=n)
    field = ctx.text_field

    def cut(batch: dict[str, list]) -> dict[str, list]:
        ids = tokenizer(batch[field], add_special_tokens=False)["input_ids"]
        return {"prompt": tokenizer.batch_decode([x[:tokens] for x in ids]), "parent": batch["id"]}

    picked = real.select(rows).select_columns([field, "id"])
    return picked.map(cut, batched=True, batch_size=1000, remove_columns=[field, "id"],
                      cache_file_name=str(ctx.cache_dir / "prompts.arrow"))
