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


def real_parts(ctx: "PhaseContext", n: int, tokenizer: Any, parts: int | None = None,
               tokens: int = 16) -> "datasets.Dataset":
    """Regenerate the real documents of every part the model has seen (parts 0..k-1 at iteration k,
    see :mod:`collapsebench.curation.parts`): each document's first ``tokens`` tokens are its
    prompt and its id the sample's ``parent``; the documents are cycled to fill ``n`` samples."""
    from collapsebench.curation.parts import bounds
    from collapsebench.errors import UserError

    real = ctx.real()
    n_parts = parts or ctx.config.iterations
    _, hi = bounds(len(real), min(ctx.iteration, n_parts) - 1, n_parts)
    if n < hi:
        raise UserError(f"generate.num_samples: {n} samples cannot regenerate the {hi} documents of parts "
                        f"0..{ctx.iteration - 1} (generate.prompts: real_parts); raise it to at least {hi}")
    field = ctx.text_field

    def cut(batch: dict[str, list]) -> dict[str, list]:
        ids = tokenizer(batch[field], add_special_tokens=False)["input_ids"]
        return {"prompt": tokenizer.batch_decode([x[:tokens] for x in ids]), "parent": batch["id"]}

    rows = np.arange(n) % hi
    picked = real.select(rows).select_columns([field, "id"])
    return picked.map(cut, batched=True, batch_size=1000, remove_columns=[field, "id"],
                      cache_file_name=str(ctx.cache_dir / "prompts.arrow"))
