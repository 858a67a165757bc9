"""Exact metrics of a model against the ground-truth language: KL both ways, entropy floor, tails.

The math lives in pure numpy functions of log-probability arrays (testable without a model); the two
evaluations ``language_kl`` and ``language_tails`` read the run's language spec from
``config.data.source`` and feed those functions. Formulas: docs/ground_truth_language.md.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np

from collapsebench.api import PhaseContext, target_of
from collapsebench.errors import UserError
from collapsebench.models.loading import cached_causal_lm
from collapsebench.models.scoring import sequence_logprobs
from collapsebench.sources.language import (
    Language,
    LanguageSpec,
    build_language,
    ground_truth_language_source,
    language_spec,
    sample,
    score,
)

SOURCE_TARGET = target_of(ground_truth_language_source)
SOURCE_ONLY_KWARGS = ("n_documents",)
_WORD = re.compile(r"[A-Za-z]+")

# ------------------------------------------------------------------------------------ pure math


def mean_se(x: np.ndarray) -> tuple[float, float]:
    """Sample mean and its standard error."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    se = float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else float("nan")
    return float(x.mean()), se


def ratio_se(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """``sum(num) / sum(den)`` and its delta-method standard error (ratio of two means)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if num.size == 0 or den.sum() == 0:
        return float("nan"), float("nan")
    r = float(num.sum() / den.sum())
    _, se = mean_se(num - r * den)
    return r, se / float(den.mean())


def kl_from_samples(logp_self: np.ndarray, logp_other: np.ndarray, n_words: np.ndarray) -> dict[str, float]:
    """KL(A‖B) from samples of A: mean of ``log A(x) - log B(x)``, per document and per word, with SEs."""
    d = np.asarray(logp_self, dtype=np.float64) - np.asarray(logp_other, dtype=np.float64)
    per_doc, per_doc_se = mean_se(d)
    per_word, per_word_se = ratio_se(d, n_words)
    return {"per_doc": per_doc, "per_doc_se": per_doc_se, "per_word": per_word, "per_word_se": per_word_se}


def kl_metrics(truth_on_truth: np.ndarray, model_on_truth: np.ndarray, truth_words: np.ndarray,
               model_on_model: np.ndarray, truth_on_model: np.ndarray, model_words: np.ndarray,
               model_valid: np.ndarray) -> dict[str, float]:
    """KL(truth‖model) from truth samples, KL(model‖truth) from model samples, and the model's cross-entropy.

    ``lang_kl_model_truth_invalid_per_doc`` is the share of the KL(model‖truth) estimate that comes from
    model samples outside the language (scored by the escape branch).
    """
    out: dict[str, float] = {}
    for name, args in (("kl_truth_model", (truth_on_truth, model_on_truth, truth_words)),
                       ("kl_model_truth", (model_on_model, truth_on_model, model_words))):
        for key, value in kl_from_samples(*args).items():
            out[f"lang_{name}_{key}"] = value
    out["lang_model_xent_per_doc"], out["lang_model_xent_per_doc_se"] = mean_se(-np.asarray(model_on_truth))
    out["lang_model_xent_per_word"], out["lang_model_xent_per_word_se"] = ratio_se(-np.asarray(model_on_truth),
                                                                                 truth_words)
    d = np.asarray(model_on_model, dtype=np.float64) - np.asarray(truth_on_model, dtype=np.float64)
    out["lang_kl_model_truth_invalid_per_doc"] = float(np.mean(d * ~np.asarray(model_valid))) if d.size else float("nan")
    out["lang_model_samples_valid_fraction"] = float(np.mean(model_valid)) if d.size else float("nan")
    return out


def rare_mask(probs: np.ndarray, quantile: float) -> np.ndarray:
    """Items ranked (0-based, by decreasing probability, ties by index) at or beyond ``floor(quantile * n)``."""
    probs = np.asarray(probs)
    order = np.argsort(-probs, kind="stable")
    mask = np.zeros(probs.size, dtype=bool)
    mask[order[int(math.floor(quantile * probs.size)):]] = True
    return mask


def doc_length_pmf(lang: Language) -> np.ndarray:
    """Exact pmf of the number of words in a document (index = number of words)."""
    s = lang.spec
    p_len = np.zeros(s.words_per_sentence_max + 1)
    p_len[s.words_per_sentence_min:] = np.exp(lang.log_sentence_len)
    out = np.zeros(s.sentences_per_doc_max * s.words_per_sentence_max + 1)
    conv = np.ones(1)
    for n_sent in range(1, s.sentences_per_doc_max + 1):
        conv = np.convolve(conv, p_len)
        if n_sent >= s.sentences_per_doc_min:
            out[: conv.size] += np.exp(lang.log_n_sentences[n_sent - s.sentences_per_doc_min]) * conv
    return out


def expected_distinct(lang: Language, n_docs: int, mask: np.ndarray) -> float:
    """Exact expected number of distinct words of ``mask`` in ``n_docs`` documents of the language."""
    pmf = doc_length_pmf(lang)
    q = 1.0 - np.exp(lang.log_word[:, mask])  # (K, |mask|)
    absent_given_topic = np.polyval(pmf[::-1], q)  # E[q^N]
    absent = np.exp(lang.log_topic) @ absent_given_topic
    return float(np.sum(1.0 - absent ** n_docs))


def word_counts(lang: Language, texts: list[str]) -> tuple[np.ndarray, int]:
    """Counts of vocabulary words in ``texts`` and the number of unknown word tokens.

    Word tokens are maximal runs of ASCII letters, lower-cased.
    """
    counter = Counter(w.lower() for t in texts for w in _WORD.findall(t))
    counts = np.zeros(lang.spec.vocab_size, dtype=np.int64)
    unknown = 0
    for word, c in counter.items():
        i = lang.word_index.get(word)
        if i is None:
            unknown += c
        else:
            counts[i] += c
    return counts, unknown


def tail_stats(counts: np.ndarray, unknown: int, word_mask: np.ndarray, posterior: np.ndarray,
               topic_mask: np.ndarray) -> dict[str, float]:
    """Tail word frequency, distinct tail words and mean posterior mass of tail topics of a sample set."""
    total = counts.sum() + unknown
    valid = posterior[~np.isnan(posterior).any(axis=1)]
    return {
        "tail_word_freq": float(counts[word_mask].sum() / total) if total else float("nan"),
        "tail_distinct_words": float(np.count_nonzero(counts[word_mask])),
        "distinct_words": float(np.count_nonzero(counts)),
        "unknown_word_freq": float(unknown / total) if total else float("nan"),
        "tail_topic_mass": float(valid[:, topic_mask].sum(axis=1).mean()) if len(valid) else float("nan"),
    }


# ----------------------------------------------------------------------------------------- entropy


def entropy_of(logp: np.ndarray) -> float:
    p = np.exp(logp)
    return float(-np.sum(np.where(p > 0, p * logp, 0.0)))


def expected_words_per_doc(spec: LanguageSpec) -> float:
    """E[number of words in a document] = E[S] E[L] (exact)."""
    lang = build_language(spec)
    mean_s = float(np.exp(lang.log_n_sentences) @ (spec.sentences_per_doc_min + np.arange(lang.log_n_sentences.size)))
    mean_l = float(np.exp(lang.log_sentence_len) @ (spec.words_per_sentence_min + np.arange(lang.log_sentence_len.size)))
    return mean_s * mean_l


def true_entropy(spec: LanguageSpec, n_samples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Entropy of the language in nats per document and per word.

    ``H(doc) = H(S) + E[S] H(L) + H(T) + E[N] sum_t pi_t H(W|t) - E_doc[H(T|doc)]``: everything is exact
    except the last term (the topic left uncertain after reading a document, in [0, log K]), a
    Monte-Carlo mean over ``n_samples`` true documents, whose standard error is reported. The plain
    Monte-Carlo estimate ``-mean log P(doc)`` is returned too, as a check.
    """
    lang = build_language(spec)
    mean_s = float(np.exp(lang.log_n_sentences) @ (spec.sentences_per_doc_min + np.arange(lang.log_n_sentences.size)))
    words = expected_words_per_doc(spec)
    word_entropy = -np.sum(np.exp(lang.log_word) * lang.log_word, axis=1)  # (K,)
    exact = (entropy_of(lang.log_n_sentences) + mean_s * entropy_of(lang.log_sentence_len)
             + entropy_of(lang.log_topic) + words * float(np.exp(lang.log_topic) @ word_entropy))
    scores = score(spec, sample(spec, n_samples, seed))
    post = scores.topic_posterior
    post_h = -np.sum(np.where(post > 0, post * np.log(np.where(post > 0, post, 1.0)), 0.0), axis=1)
    se = float(post_h.std(ddof=1) / math.sqrt(n_samples)) if n_samples > 1 else float("nan")
    per_doc = exact - float(post_h.mean())
    mc = -scores.log_prob
    mc_se = float(mc.std(ddof=1) / math.sqrt(n_samples)) if n_samples > 1 else float("nan")
    return {"entropy_per_doc": per_doc, "entropy_per_doc_se": se,
            "entropy_per_word": per_doc / words, "entropy_per_word_se": se / words,
            "words_per_doc": words, "mc_entropy_per_doc": float(mc.mean()), "mc_entropy_per_doc_se": mc_se}


# ------------------------------------------------------------------------------------ evaluations


def spec_from_config(config: Any) -> LanguageSpec:
    """The language spec of the run's data source (``data.source`` must be the ground-truth language)."""
    from collapsebench.registry import data_sources

    source = config.data.source
    if data_sources.target(source.name) != SOURCE_TARGET:
        raise UserError(f"data.source: the language evaluations need data.source 'ground_truth_language' "
                        f"(got '{source.name}')")
    knobs = {k: v for k, v in source.kwargs.items() if k not in SOURCE_ONLY_KWARGS}
    return language_spec(knobs)


def iter_texts(ctx: PhaseContext, max_samples: int | None, batch_size: int = 1000) -> Iterator[list[str]]:
    ds = ctx.samples()
    if max_samples is not None:
        ds = ds.select(range(min(max_samples, len(ds))))
    for batch in ds.iter(batch_size=batch_size):
        yield batch[ctx.text_field]


def language_kl(ctx: PhaseContext, n_true: int = 1000, batch_size: int = 16, max_samples: int | None = None,
                entropy_samples: int = 2000) -> dict[str, float]:
    """KL(truth‖model), KL(model‖truth), the model's cross-entropy and the true entropy (nats)."""

    spec = spec_from_config(ctx.config)
    model, tokenizer = cached_causal_lm(ctx, ctx.model_dir())
    truth = sample(spec, n_true, seed=ctx.seed)
    truth_scores = score(spec, truth)
    model_on_truth, _ = sequence_logprobs(model, tokenizer, truth, batch_size=batch_size)
    on_model, model_on_model, words, valid = [], [], [], []
    for texts in iter_texts(ctx, max_samples):
        sc = score(spec, texts)
        on_model.append(sc.log_prob)
        words.append(sc.n_words)
        valid.append(sc.valid)
        model_on_model.append(sequence_logprobs(model, tokenizer, texts, batch_size=batch_size)[0])
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)  # noqa: E731
    out = kl_metrics(truth_scores.log_prob, model_on_truth, truth_scores.n_words,
                     cat(model_on_model), cat(on_model), cat(words), cat(valid).astype(bool))
    entropy = true_entropy(spec, entropy_samples, seed=ctx.seed)
    out.update({f"lang_{k}": v for k, v in entropy.items() if not k.startswith("mc_")})
    out["lang_n_model_samples"] = float(sum(len(x) for x in valid))
    np.savez(ctx.out_dir / "language_kl.npz", truth_on_truth=truth_scores.log_prob, model_on_truth=model_on_truth,
             truth_words=truth_scores.n_words, model_on_model=cat(model_on_model), truth_on_model=cat(on_model),
             model_words=cat(words), model_valid=cat(valid))
    return out


def language_tails(ctx: PhaseContext, tail_quantile: float = 0.9, topic_tail_quantile: float = 0.75,
                   max_samples: int | None = None) -> dict[str, float]:
    """Rare words and rare topics: exact truth, the model's samples, and an equal-size true sample."""
    for name, q in (("tail_quantile", tail_quantile), ("topic_tail_quantile", topic_tail_quantile)):
        if not 0 < q < 1:
            raise UserError(f"evaluate.evaluations.language_tails.{name}: must be in (0, 1) (got {q})")
    spec = spec_from_config(ctx.config)
    lang = build_language(spec)
    topic_p = np.exp(lang.log_topic)
    word_p = topic_p @ np.exp(lang.log_word)
    word_mask, topic_mask = rare_mask(word_p, tail_quantile), rare_mask(topic_p, topic_tail_quantile)
    counts, unknown, posterior, valid, n = np.zeros(spec.vocab_size, dtype=np.int64), 0, [], [], 0
    for texts in iter_texts(ctx, max_samples):
        c, u = word_counts(lang, texts)
        counts, unknown, n = counts + c, unknown + u, n + len(texts)
        sc = score(spec, texts)
        posterior.append(sc.topic_posterior)
        valid.append(sc.valid)
    post = np.concatenate(posterior) if posterior else np.zeros((0, spec.n_topics))
    model = tail_stats(counts, unknown, word_mask, post, topic_mask)
    truth_texts = sample(spec, max(n, 1), seed=ctx.seed)
    tc, tu = word_counts(lang, truth_texts)
    reference = tail_stats(tc, tu, word_mask, score(spec, truth_texts).topic_posterior, topic_mask)
    exact = {"tail_word_freq": float(word_p[word_mask].sum()), "tail_topic_mass": float(topic_p[topic_mask].sum()),
             "tail_distinct_words": expected_distinct(lang, max(n, 1), word_mask)}
    out = {f"lang_{k}_model": v for k, v in model.items()}
    out.update({f"lang_{k}_true_sample": v for k, v in reference.items()})
    out.update({f"lang_{k}_exact": v for k, v in exact.items()})
    for what, key in (("word", "tail_word_freq"), ("topic", "tail_topic_mass")):
        out[f"lang_tail_{what}_ratio"] = model[key] / exact[key] if exact[key] > 0 else float("nan")
    out["lang_tail_words_total"] = float(word_mask.sum())
    out["lang_samples_valid_fraction"] = float(np.concatenate(valid).mean()) if valid else float("nan")
    return out
