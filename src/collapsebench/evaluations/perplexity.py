"""Perplexity: of the iteration's model on held-out REAL data (``perplexity``), and of the
iteration's samples under one fixed reference model (``reference_perplexity``).

Both score documents with one loop (:func:`score_documents`, framing each as BOS + tokens + EOS,
see :mod:`collapsebench.models.scoring`) and write one row per document to a Parquet file in the
evaluation folder, with the same columns: ``id``, ``generation``, ``tokens`` (scored tokens),
``logprob`` (their summed log-probability, nats) and ``log_ppl`` (``-logprob / tokens``), for
histograms across generations.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from collapsebench.api import Dataset, PhaseContext
from collapsebench.errors import UserError
from collapsebench.evaluations.common import require_column
from collapsebench.models.loading import cached_causal_lm
from collapsebench.models.scoring import sequence_logprobs


def score_documents(ctx: PhaseContext, model_dir: str | Path, dataset: Dataset, path: Path, *, batch_size: int,
                    read_batch: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Score every document of ``dataset`` (its text field), write ``path`` (see the module
    docstring) batch by batch; return (logprob, tokens) per document."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    field = ctx.text_field
    require_column(dataset, field, what=what)
    model, tok = cached_causal_lm(ctx, model_dir)
    schema = pa.schema([("id", pa.string()), ("generation", pa.int64()), ("tokens", pa.int64()),
                        ("logprob", pa.float64()), ("log_ppl", pa.float64())])
    all_lp, all_n = [np.zeros(0)], [np.zeros(0, dtype=np.int64)]
    columns = [c for c in ("id", "generation", field) if c in dataset.column_names]
    with pq.ParquetWriter(str(path), schema) as writer, ctx.progress(what, len(dataset)) as advance:
        for batch in dataset.select_columns(columns).iter(batch_size=read_batch):
            texts = batch[field]
            lp, n = sequence_logprobs(model, tok, texts, batch_size=batch_size)
            ids = batch.get("id") or [str(i) for i in range(len(texts))]
            generation = batch.get("generation") or [0] * len(texts)
            writer.write_table(pa.table({"id": [str(i) for i in ids], "generation": list(map(int, generation)),
                                         "tokens": n, "logprob": lp,
                                         "log_ppl": np.where(n > 0, -lp / np.maximum(n, 1), np.nan)}, schema=schema))
            all_lp.append(lp)
            all_n.append(n)
            advance(len(texts))
    return np.concatenate(all_lp), np.concatenate(all_n)


def perplexity(ctx: PhaseContext, batch_size: int = 16, max_documents: int | None = None,
               group_by: str | None = None) -> dict[str, Any]:
    """Token-weighted cross-entropy (nats/token) and perplexity of the iteration's model on the
    holdout; per-document values in ``per_document.parquet``. ``group_by``: a column of the held-out
    data (e.g. ``topic``, or a source or slice column of your data) to report
    ``holdout_perplexity/<column>=<value>`` per group as well."""
    holdout = ctx.holdout()
    if max_documents:
        holdout = holdout.select(range(min(max_documents, len(holdout))))
    if group_by is not None and group_by not in holdout.column_names:
        raise UserError(f"perplexity.group_by: the held-out data has no column '{group_by}'; "
                        f"columns: {', '.join(holdout.column_names)}")
    logprob, tokens = score_documents(ctx, ctx.model_dir(), holdout, ctx.out_dir / "per_document.parquet",
                                      batch_size=batch_size, read_batch=max(batch_size * 8, 64),
                                      what="held-out real data")
    ce = float(-logprob.sum() / max(int(tokens.sum()), 1))
    out: dict[str, Any] = {"holdout_cross_entropy": ce, "holdout_perplexity": math.exp(ce),
                           "holdout_tokens": int(tokens.sum())}
    if group_by is not None:
        groups = np.asarray([str(v) for v in holdout[group_by]])
        for value in sorted(set(groups.tolist())):
            rows = groups == value
            out[f"holdout_perplexity/{group_by}={value}"] = math.exp(-logprob[rows].sum() / max(tokens[rows].sum(), 1))
    return out


def log_ppl_summary(logprob: np.ndarray, tokens: np.ndarray, prefix: str = "ref") -> dict[str, float]:
    """Mean / median per-document log-perplexity and token-weighted perplexity."""
    logprob = np.asarray(logprob, dtype=np.float64)
    tokens = np.asarray(tokens, dtype=np.float64)
    keep = tokens > 0
    if not keep.any():
        return {f"{prefix}_logppl_mean": math.nan, f"{prefix}_logppl_median": math.nan, f"{prefix}_ppl": math.nan}
    log_ppl = -logprob[keep] / tokens[keep]
    return {
        f"{prefix}_logppl_mean": float(log_ppl.mean()),
        f"{prefix}_logppl_median": float(np.median(log_ppl)),
        f"{prefix}_ppl": float(math.exp(-logprob[keep].sum() / tokens[keep].sum())),
    }


def reference_perplexity(ctx: PhaseContext, *, reference: int | str = 1, batch_size: int = 16,
                         read_batch: int = 1000) -> dict[str, float]:
    """Per-document perplexity of the iteration's samples under a fixed reference model, so the
    numbers of all iterations share a scale; ``reference`` is an iteration number (its trained
    model) or a model folder / hub name. Writes ``ref_perplexity.parquet``."""
    if isinstance(reference, bool) or not isinstance(reference, (int, str)):
        raise UserError(f"reference_perplexity: 'reference' must be an iteration number or a model path, got {reference!r}")
    if isinstance(reference, int):
        if not 1 <= reference <= ctx.iteration:
            raise UserError(f"reference_perplexity: reference iteration {reference} is not in 1..{ctx.iteration}")
        model_path: str | Path = ctx.model_dir(reference)
    else:
        local = ctx.config.resolve_path(reference)
        model_path = local if local.exists() else reference
    logprob, tokens = score_documents(ctx, model_path, ctx.samples(), ctx.out_dir / "ref_perplexity.parquet",
                                      batch_size=batch_size, read_batch=read_batch, what="samples")
    return log_ppl_summary(logprob, tokens)
