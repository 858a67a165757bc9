"""What the generate phase commits from its validated shards: ``samples/`` (S(k), the accepted
samples that meet the target), ``rejected/`` (with ``rejected_by`` and ``reason``) and
``candidates/``: every candidate the model made, whatever became of it.

Accepted plus rejected is not every candidate: the last round's accepted surplus (accepted samples
past the target) is in neither. An audit of the model's samples, as the framework paper runs one
("For each model, we generate 1000 samples [...] Then, we score each sample using the classifier",
App. C), must see fresh samples of the model, not the ones a filter let through, or a classifier
that filters looks satisfied by construction. So ``candidates/`` holds them all, in generation
order (round, shard, row), with ``status``: ``accepted`` (in ``samples/``), ``surplus`` (accepted
by the validators, past the target) or ``rejected``; the evaluations that score samples choose
among them with ``on`` (:mod:`collapsebench.evaluations.candidates`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from collapsebench.api import PhaseContext
from collapsebench.models.tokens import COLUMN as TOKENS
from collapsebench.models.tokens import PROMPT_COLUMN

STATUS = ("accepted", "surplus", "rejected")


def budget_tokens(table: Any) -> np.ndarray:
    """Each row's tokens a budget counts: ``n_tokens`` less the kept prompt's (``n_prompt_tokens``)."""
    from collapsebench.data import numeric_column

    tokens = numeric_column(table, TOKENS).astype(np.int64)
    if PROMPT_COLUMN in table.column_names:
        tokens = tokens - numeric_column(table, PROMPT_COLUMN).astype(np.int64)
    return tokens


def finalize(ctx: PhaseContext, files: list[Path], samples: int | None, tokens: int | None,
             keys: list[str]) -> tuple[int, dict[str, Any]]:
    """Write ``samples/`` (the accepted samples that meet the target: the first ``samples``, or the
    shortest run whose generated tokens reach ``tokens``; in order, with lineage and their token
    ids), ``rejected/`` and ``candidates/``; remove the shards. Returns the number of samples and,
    over them, the share that re-tokenizing would change (``retokenization_changed``), the U+FFFD
    characters decoding made (``replacement_chars``) and their tokens (``tokens``)."""
    import datasets

    from collapsebench.data import add_lineage, numeric_column, save

    ds = datasets.Dataset.from_parquet([str(f) for f in files], cache_dir=str(ctx.cache_dir))
    flags = ds.data.column("accepted").to_numpy(zero_copy_only=False).astype(bool)
    accepted = np.flatnonzero(flags)
    if tokens is not None:  # the shortest run of accepted samples whose generated tokens reach the target
        reach = np.cumsum(budget_tokens(ds.select(accepted)))
        keep_rows = accepted[: int(np.searchsorted(reach, tokens)) + 1]
    else:
        keep_rows = accepted[:samples]
    score_cols = [f"score_{k}" for k in keys]
    base = ["parent", "prompt", ctx.text_field, *score_cols]
    it = ctx.iteration
    counts = [TOKENS] + ([PROMPT_COLUMN] if PROMPT_COLUMN in ds.column_names else [])

    kept = ds.select(keep_rows)
    stats = {"retokenization_changed": float(1 - numeric_column(kept, "retokenizes_same").mean()) if len(kept) else 0.0,
             "replacement_chars": int(numeric_column(kept, "replacement_chars").sum()),
             "tokens": int(numeric_column(kept, TOKENS).sum())}
    samples_ds = add_lineage(kept.select_columns([*base, "input_ids", *counts]), origin="synthetic", generation=it,
                             prefix=f"g{it:03d}-")  # keeps each sample's parent
    save(samples_ds.select_columns(["id", "origin", "generation", *base, "input_ids", *counts]), ctx.out_dir / "samples")
    rejected = ds.select(np.flatnonzero(~flags)).select_columns([*base, "rejected_by", "reason"])
    rejected = add_lineage(rejected, origin="synthetic", generation=it, prefix=f"g{it:03d}-rejected-")
    save(rejected, ctx.out_dir / "rejected")
    status = np.where(flags, "surplus", "rejected").astype(object)
    status[keep_rows] = "accepted"
    candidates = ds.select_columns([*base, *counts, "rejected_by", "reason"]).add_column("status", status.tolist())
    candidates = add_lineage(candidates, origin="synthetic", generation=it, prefix=f"g{it:03d}-candidate-")
    save(candidates, ctx.out_dir / "candidates")
    del ds, kept, samples_ds, rejected, candidates
    shard_dir = ctx.out_dir / "shards"
    for f in shard_dir.iterdir():
        f.unlink()
    shard_dir.rmdir()
    return len(keep_rows), stats
