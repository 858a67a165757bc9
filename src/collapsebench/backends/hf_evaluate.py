"""Cross-entropy and perplexity of the iteration's model on the held-out REAL data."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from collapsebench.backends.scoring import load_causal_lm, sequence_logprobs
from collapsebench.context import PhaseContext


def perplexity(ctx: PhaseContext, batch_size: int = 16, max_documents: int | None = None) -> dict[str, Any]:
    """Token-weighted cross-entropy (nats/token) and perplexity on the holdout; per-document
    values go to ``per_document.parquet`` (id, tokens, nll, perplexity)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    model, tokenizer = load_causal_lm(ctx.model_dir())
    holdout = ctx.holdout()
    if max_documents:
        holdout = holdout.select(range(min(max_documents, len(holdout))))
    field = ctx.text_field
    total_nll, total_tokens = 0.0, 0
    schema = pa.schema([("id", pa.string()), ("tokens", pa.int64()), ("nll", pa.float64()), ("perplexity", pa.float64())])
    with pq.ParquetWriter(ctx.out_dir / "per_document.parquet", schema) as writer, \
            ctx.progress("perplexity", len(holdout)) as advance:
        for batch in holdout.select_columns(["id", field]).iter(batch_size=max(batch_size * 8, 64)):
            logp, n = sequence_logprobs(model, tokenizer, batch[field], batch_size=batch_size)
            total_nll -= float(logp.sum())
            total_tokens += int(n.sum())
            nll = -logp
            writer.write_table(pa.table({"id": batch["id"], "tokens": n, "nll": nll,
                                         "perplexity": np.exp(nll / np.maximum(n, 1))}, schema=schema))
            advance(len(batch["id"]))
    ce = total_nll / max(total_tokens, 1)
    out = {"holdout_cross_entropy": ce, "holdout_perplexity": math.exp(ce), "holdout_tokens": total_tokens}
    out.update(per_part(ctx))
    return out


def per_part(ctx: PhaseContext) -> dict[str, float]:
    """Holdout perplexity per part when the regime cut the data into parts (``fresh_real``): the
    curate phase's ``parts.parquet`` ties each held-out document to a part (token-weighted)."""
    import pyarrow.parquet as pq

    parts_file = ctx.phase_dir(ctx.iteration, "curate") / "parts.parquet"
    if not parts_file.exists():
        return {}
    parts = pq.read_table(parts_file, columns=["id", "part", "role"]).to_pydict()
    part_of = {i: p for i, p, r in zip(parts["id"], parts["part"], parts["role"]) if r == "holdout"}
    docs = pq.read_table(ctx.out_dir / "per_document.parquet", columns=["id", "tokens", "nll"]).to_pydict()
    nll: dict[int, float] = {}
    tokens: dict[int, int] = {}
    for i, n, x in zip(docs["id"], docs["tokens"], docs["nll"]):
        if i in part_of:
            nll[part_of[i]] = nll.get(part_of[i], 0.0) + x
            tokens[part_of[i]] = tokens.get(part_of[i], 0) + n
    return {f"holdout_perplexity/part_{p}": math.exp(nll[p] / max(tokens[p], 1)) for p in sorted(nll)}
