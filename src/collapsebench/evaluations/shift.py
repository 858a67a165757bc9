"""Distribution shift of the samples away from the real data (see also ``reference_perplexity``).

``unigram_kl``: KL(synthetic || real) between unigram distributions over the shared tokenisation
(:mod:`collapsebench.evaluations.common`), with add-k smoothing over the union vocabulary V:
p(w) = (c(w) + k) / (N + k |V|). Texts are counted batch by batch, never all loaded at once.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

import numpy as np

from collapsebench.api import Dataset, PhaseContext
from collapsebench.errors import UserError
from collapsebench.evaluations.common import require_column, tokenize


def count_unigrams(text_batches: Iterable[Iterable[str]]) -> Counter:
    """Token counts over batches of texts."""
    counts: Counter = Counter()
    for batch in text_batches:
        for text in batch:
            counts.update(tokenize(text))
    return counts


def dataset_text_batches(dataset: Dataset, field: str, batch_size: int = 1000) -> Iterable[list[str]]:
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


def unigram_kl_evaluation(ctx: PhaseContext, *, k: float = 1.0, real: str = "train", read_batch: int = 1000) -> dict[str, float]:
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
