"""Distribution shift of the samples away from the real data.

``reference_perplexity``: every sample of the iteration is scored by one fixed reference model
(iteration 1's model by default, or any model folder), so the numbers of all iterations share a
scale. Per-document values go to ``ref_perplexity.parquet`` in the evaluation folder (columns
``id``, ``generation``, ``n_tokens``, ``logprob``, ``log_ppl``) for histograms across generations;
the metrics are the mean and median per-document log-perplexity and the token-weighted corpus
perplexity.

``unigram_kl``: KL(synthetic || real) between unigram distributions over the shared tokenisation
(:mod:`collapsebench.evaluation.common`), with add-k smoothing over the union vocabulary V:
p(w) = (c(w) + k) / (N + k |V|). Texts are counted batch by batch, never all loaded at once.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from collapsebench.errors import UserError
from collapsebench.evaluation.common import require_column, tokenize


def count_unigrams(text_batches: Iterable[Iterable[str]]) -> Counter:
    """Token counts over batches of texts."""
    counts: Counter = Counter()
    for batch in text_batches:
        for text in batch:
            counts.update(tokenize(text))
    return counts


def dataset_text_batches(dataset: Any, field: str, batch_size: int = 1000) -> Iterable[list[str]]:
    for batch in dataset.iter(batch_size=batch_size):
        yield batch[field]


def unigram_kl(p_counts: Counter, q_counts: Counter, k: float = 1.0) -> float:
    """KL(p || q) in nats between add-k smoothed unigram distributions over the union vocabulary."""
    if k <= 0:
        raise UserError(f"unigram_kl: smoothing k must be > 0, got {k}")
    vocab = list(set(p_counts) | set(q_counts))
    if not vocab:
        return math.nan
    p = np.array([p_counts.get(w, 0) for w in vocab], dtype=np.float64) + k
    q = np.array([q_counts.get(w, 0) for w in vocab], dtype=np.float64) + k
    p /= p.sum()
    q /= q.sum()
    return float(np.sum(p * (np.log(p) - np.log(q))))


def log_ppl_summary(logprob: np.ndarray, n_tokens: np.ndarray, prefix: str = "ref") -> dict[str, float]:
    """Mean / median per-document log-perplexity and token-weighted perplexity."""
    logprob = np.asarray(logprob, dtype=np.float64)
    n_tokens = np.asarray(n_tokens, dtype=np.float64)
    keep = n_tokens > 0
    if not keep.any():
        return {f"{prefix}_logppl_mean": math.nan, f"{prefix}_logppl_median": math.nan, f"{prefix}_ppl": math.nan}
    log_ppl = -logprob[keep] / n_tokens[keep]
    return {
        f"{prefix}_logppl_mean": float(log_ppl.mean()),
        f"{prefix}_logppl_median": float(np.median(log_ppl)),
        f"{prefix}_ppl": float(math.exp(-logprob[keep].sum() / n_tokens[keep].sum())),
    }


def reference_perplexity(ctx: Any, *, reference: int | str = 1, batch_size: int = 16,
                         read_batch: int = 1000) -> dict[str, float]:
    """Evaluation: per-document perplexity of the iteration's samples under a fixed reference model.

    ``reference`` is an iteration number (its trained model) or a model folder / hub name.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from collapsebench.backends.scoring import load_causal_lm, sequence_logprobs

    if isinstance(reference, bool) or not isinstance(reference, (int, str)):
        raise UserError(f"reference_perplexity: 'reference' must be an iteration number or a model path, got {reference!r}")
    if isinstance(reference, int):
        if not 1 <= reference <= ctx.iteration:
            raise UserError(f"reference_perplexity: reference iteration {reference} is not in 1..{ctx.iteration}")
        model_path = ctx.model_dir(reference)
    else:
        model_path = ctx.config.resolve_path(reference) if ctx.config.resolve_path(reference).exists() else reference
    samples = ctx.samples()
    require_column(samples, ctx.text_field, what="samples")
    model, tok = load_causal_lm(model_path)
    out = ctx.out_dir / "ref_perplexity.parquet"
    schema = pa.schema([("id", pa.string()), ("generation", pa.int64()), ("n_tokens", pa.int64()),
                        ("logprob", pa.float64()), ("log_ppl", pa.float64())])
    all_lp, all_n = [], []
    with pq.ParquetWriter(str(out), schema) as writer, ctx.progress("reference perplexity", len(samples)) as advance:
        for batch in samples.iter(batch_size=read_batch):
            texts = batch[ctx.text_field]
            lp, n = sequence_logprobs(model, tok, texts, batch_size=batch_size)
            lp, n = np.asarray(lp, dtype=np.float64), np.asarray(n, dtype=np.int64)
            ids = batch.get("id") or [str(i) for i in range(len(texts))]
            gen = batch.get("generation") or [ctx.iteration] * len(texts)
            log_ppl = np.where(n > 0, -lp / np.maximum(n, 1), np.nan)
            writer.write_table(pa.table({"id": [str(i) for i in ids], "generation": list(map(int, gen)),
                                         "n_tokens": n, "logprob": lp, "log_ppl": log_ppl}, schema=schema))
            all_lp.append(lp)
            all_n.append(n)
            advance(len(texts))
    if not all_lp:
        return log_ppl_summary(np.zeros(0), np.zeros(0))
    return log_ppl_summary(np.concatenate(all_lp), np.concatenate(all_n))


def unigram_kl_evaluation(ctx: Any, *, k: float = 1.0, real: str = "train", read_batch: int = 1000) -> dict[str, float]:
    """Evaluation: unigram KL(samples || real data), ``real`` being the ``train`` or ``holdout`` split."""
    if real not in ("train", "holdout"):
        raise UserError(f"unigram_kl: 'real' must be 'train' or 'holdout', got {real!r}")
    real_ds = ctx.real() if real == "train" else ctx.holdout()
    samples = ctx.samples()
    require_column(samples, ctx.text_field, what="samples")
    require_column(real_ds, ctx.text_field, what=f"real {real} split")
    p = count_unigrams(dataset_text_batches(samples, ctx.text_field, read_batch))
    q = count_unigrams(dataset_text_batches(real_ds, ctx.text_field, read_batch))
    return {"unigram_kl_synthetic_real": unigram_kl(p, q, k),
            "unigram_vocab_synthetic": float(len(p)), "unigram_vocab_real": float(len(q))}
