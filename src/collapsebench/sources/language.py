"""A ground-truth language: a seeded process writing English-like documents, with exact log-probabilities.

The process (all knobs in :class:`LanguageSpec`; details and formulas in docs/ground_truth_language.md):

1. topic ``t ~ pi``, ``pi_t ∝ (t+1)^-topic_zipf_exponent`` over ``n_topics`` topics;
2. number of sentences ``S`` and, per sentence, number of words ``L``: truncated geometric laws;
3. every word i.i.d. from ``p_t(w) = shared_weight * z(w) + (1 - shared_weight) * z(rank_t(w))``, where
   ``z(r) ∝ (r+1)^-zipf_exponent`` and word ``w``'s index is its global Zipf rank, ``rank_t`` a
   topic-specific permutation;
4. rendering: words joined by one space, first word of a sentence capitalised, '.' after the last word,
   sentences joined by one space. :func:`parse` inverts this exactly.

Every string ``s`` gets ``log P(s) = log((1-eps) p_lang(s) + eps p_escape(s))``: the escape branch is a
character-level fallback, so text outside the language has a finite log-probability.

Over 300 lines: the process, its exact probabilities, its parser and its expected document length
(the source's ``plan`` hook) are one definition of the language and must change together.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from collapsebench.api import Dataset, PhaseContext
from collapsebench.errors import UserError, did_you_mean

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
ESCAPE_STOP = 1.0 / 256.0  # escape documents: geometric number of characters, mean 255
ESCAPE_ANY = 0.01  # per escape character: any code point with this probability, else printable ASCII / '\n'
N_CODE_POINTS = 0x110000
BATCH = 1024  # documents drawn per batch
_ESCAPE_COMMON = re.compile(r"[\x20-\x7e\n]")
LOG_ESCAPE_COMMON = math.log((1 - ESCAPE_ANY) / 96 + ESCAPE_ANY / N_CODE_POINTS)
LOG_ESCAPE_OTHER = math.log(ESCAPE_ANY / N_CODE_POINTS)


class LanguageSpec(BaseModel):
    """Every knob of the language. Same spec, same language (word forms included)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    vocab_size: int = Field(2000, ge=2, le=1_000_000, description="number of distinct words")
    zipf_exponent: float = Field(1.1, gt=0, description="Zipf exponent of the word distributions")
    n_topics: int = Field(8, ge=1, description="number of topics")
    topic_zipf_exponent: float = Field(1.0, ge=0, description="Zipf exponent of the topic distribution")
    shared_weight: float = Field(0.5, ge=0, le=1, description="weight of the topic-independent word law")
    words_per_sentence_min: int = Field(3, ge=1)
    words_per_sentence_max: int = Field(16, ge=1)
    words_per_sentence_stop: float = Field(0.15, gt=0, le=1, description="geometric stop probability")
    sentences_per_doc_min: int = Field(3, ge=1)
    sentences_per_doc_max: int = Field(12, ge=1)
    sentences_per_doc_stop: float = Field(0.2, gt=0, le=1, description="geometric stop probability")
    escape_prob: float = Field(1e-9, gt=0, lt=1, description="probability eps of the character-level escape")
    language_seed: int = Field(0, description="seed of the language itself (word forms, topic rankings)")

    @model_validator(mode="after")
    def _bounds(self) -> LanguageSpec:
        for what in ("words_per_sentence", "sentences_per_doc"):
            if getattr(self, f"{what}_max") < getattr(self, f"{what}_min"):
                raise ValueError(f"{what}_max must be >= {what}_min")
        return self


def language_spec(knobs: dict[str, Any], key: str = "data.source") -> LanguageSpec:
    """Build a :class:`LanguageSpec` from keyword arguments; bad knobs raise a ``UserError`` naming ``key``."""
    unknown = [k for k in knobs if k not in LanguageSpec.model_fields]
    if unknown:
        raise UserError(f"{key}: the ground-truth language has no knob '{unknown[0]}'"
                        f"{did_you_mean(unknown[0], LanguageSpec.model_fields)}; "
                        f"knobs: {', '.join(LanguageSpec.model_fields)}")
    try:
        return LanguageSpec(**knobs)
    except ValidationError as exc:
        msgs = [f"{key}.{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in exc.errors()]
        raise UserError("; ".join(msgs)) from None


@dataclass(frozen=True)
class Language:
    """The compiled tables of a spec (built once per spec by :func:`build_language`)."""

    spec: LanguageSpec
    words: list[str]  # index = global Zipf rank
    word_index: dict[str, int]  # "kato" -> id
    capital_index: dict[str, int]  # "Kato" -> id
    log_topic: np.ndarray  # (K,)
    log_word: np.ndarray  # (K, V)
    cdf_word: np.ndarray  # (K, V)
    log_sentence_len: np.ndarray  # over words_per_sentence_min..max
    log_n_sentences: np.ndarray  # over sentences_per_doc_min..max


def zipf_logpmf(n: int, exponent: float) -> np.ndarray:
    logw = -exponent * np.log(np.arange(1, n + 1, dtype=np.float64))
    return logw - np.logaddexp.reduce(logw)


def truncated_geometric_logpmf(lo: int, hi: int, stop: float) -> np.ndarray:
    """log p(k) for k in lo..hi with p(k) ∝ (1-stop)^(k-lo)."""
    k = np.arange(hi - lo + 1, dtype=np.float64)
    logw = k * math.log1p(-stop) if stop < 1 else np.where(k == 0, 0.0, -np.inf)
    return logw - np.logaddexp.reduce(logw)


def _syllables(rank: int) -> int:
    return 1 if rank < 30 else 2 if rank < 1500 else 3 if rank < 100_000 else 4


def word_forms(vocab_size: int, seed: int) -> list[str]:
    """Distinct pronounceable consonant-vowel words; frequent (low-rank) words are shorter."""
    rng = np.random.default_rng([seed, 1])
    syllables = [c + v for c in CONSONANTS for v in VOWELS]
    seen: set[str] = set()
    words = []
    for rank in range(vocab_size):
        while True:
            word = "".join(syllables[i] for i in rng.integers(len(syllables), size=_syllables(rank)))
            if word not in seen:
                break
        seen.add(word)
        words.append(word)
    return words


@functools.lru_cache(maxsize=16)
def build_language(spec: LanguageSpec) -> Language:
    """Word forms, topic and word log-probabilities, length laws of a spec."""
    v, k = spec.vocab_size, spec.n_topics
    words = word_forms(v, spec.language_seed)
    z = np.exp(zipf_logpmf(v, spec.zipf_exponent))
    rng = np.random.default_rng([spec.language_seed, 2])
    word = np.empty((k, v))
    for t in range(k):
        topical = np.empty(v)
        topical[rng.permutation(v)] = z  # word perm[r] has topic rank r
        word[t] = spec.shared_weight * z + (1 - spec.shared_weight) * topical
    cdf = np.cumsum(word, axis=1)
    cdf /= cdf[:, -1:]
    return Language(
        spec=spec, words=words, word_index={w: i for i, w in enumerate(words)},
        capital_index={w.capitalize(): i for i, w in enumerate(words)},
        log_topic=zipf_logpmf(k, spec.topic_zipf_exponent), log_word=np.log(word), cdf_word=cdf,
        log_sentence_len=truncated_geometric_logpmf(spec.words_per_sentence_min, spec.words_per_sentence_max,
                                                    spec.words_per_sentence_stop),
        log_n_sentences=truncated_geometric_logpmf(spec.sentences_per_doc_min, spec.sentences_per_doc_max,
                                                   spec.sentences_per_doc_stop),
    )


# ----------------------------------------------------------------------------------------- sampling


def iter_batches(spec: LanguageSpec, n: int, seed: int) -> Iterator[dict[str, list]]:
    """Yield ``{"text": [...], "topic": [...]}`` batches of (at most ``BATCH``) documents, ``n`` in total.

    The documents depend only on ``(spec, n, seed)``."""
    lang, s = build_language(spec), spec
    rng = np.random.default_rng([seed, 3])
    caps = [w.capitalize() for w in lang.words]
    for start in range(0, n, BATCH):
        m = min(BATCH, n - start)
        topics = rng.choice(s.n_topics, size=m, p=np.exp(lang.log_topic))
        n_sent = s.sentences_per_doc_min + rng.choice(lang.log_n_sentences.size, size=m,
                                                      p=np.exp(lang.log_n_sentences))
        lens = s.words_per_sentence_min + rng.choice(lang.log_sentence_len.size, size=int(n_sent.sum()),
                                                     p=np.exp(lang.log_sentence_len))
        word_topic = np.repeat(np.repeat(topics, n_sent), lens)
        u = rng.random(word_topic.size)
        ids = np.empty(word_topic.size, dtype=np.int64)
        for t in np.unique(word_topic):
            sel = word_topic == t
            ids[sel] = np.minimum(np.searchsorted(lang.cdf_word[t], u[sel], side="right"), s.vocab_size - 1)
        tokens = [lang.words[i] for i in ids]
        ends = np.cumsum(lens)
        for a, b in zip(ends - lens, ends):
            tokens[a] = caps[ids[a]]
            tokens[b - 1] = tokens[b - 1] + "."
        doc_ends = np.cumsum(np.add.reduceat(lens, np.r_[0, np.cumsum(n_sent)[:-1]]))
        texts = [" ".join(tokens[a:b]) for a, b in zip(np.r_[0, doc_ends[:-1]], doc_ends)]
        yield {"text": texts, "topic": topics.tolist()}


def sample(spec: LanguageSpec, n: int, seed: int) -> list[str]:
    """``n`` documents of the language (the language branch of the process)."""
    return [t for batch in iter_batches(spec, n, seed) for t in batch["text"]]


# ----------------------------------------------------------------------------------------- scoring


def parse(lang: Language, text: str) -> list[list[int]] | None:
    """The sentences (lists of word ids) of ``text``, or None if the language cannot write it."""
    if not text.endswith("."):
        return None
    s = lang.spec
    sentences: list[list[int]] = []
    current: list[int] = []
    for token in text.split(" "):
        end = token.endswith(".")
        word = token[:-1] if end else token
        wid = (lang.word_index if current else lang.capital_index).get(word)
        if wid is None:
            return None
        current.append(wid)
        if end:
            if not s.words_per_sentence_min <= len(current) <= s.words_per_sentence_max:
                return None
            sentences.append(current)
            current = []
    if current or not s.sentences_per_doc_min <= len(sentences) <= s.sentences_per_doc_max:
        return None
    return sentences


def render(lang: Language, sentences: list[list[int]]) -> str:
    """The text of a document given as sentences of word ids (the inverse of :func:`parse`)."""
    out = []
    for sent in sentences:
        words = [lang.words[i] for i in sent]
        words[0] = words[0].capitalize()
        out.append(" ".join(words) + ".")
    return " ".join(out)


def escape_logprob(text: str) -> float:
    """log p_escape(text): geometric length, then each character from the fallback law."""
    n = len(text)
    common = len(_ESCAPE_COMMON.findall(text))
    return (math.log(ESCAPE_STOP) + n * math.log1p(-ESCAPE_STOP) + common * LOG_ESCAPE_COMMON
            + (n - common) * LOG_ESCAPE_OTHER)


@dataclass
class Scores:
    """Exact scores of a list of texts under the language."""

    log_prob: np.ndarray  # log P(s) of the whole process (language + escape), finite
    log_prob_language: np.ndarray  # log p_lang(s); -inf outside the support
    valid: np.ndarray  # bool: s is in the support of the language
    n_words: np.ndarray  # whitespace-separated tokens of s
    topic_posterior: np.ndarray  # (n, K) p(topic | s); NaN rows where not valid


def score(spec: LanguageSpec, texts: list[str]) -> Scores:
    """Exact log-probabilities (topics marginalised by log-sum-exp) and topic posteriors of ``texts``."""
    lang, s = build_language(spec), spec
    n, k = len(texts), s.n_topics
    lp_lang = np.full(n, -np.inf)
    posterior = np.full((n, k), np.nan)
    rows: list[int] = []
    struct: list[float] = []
    ids: list[int] = []
    starts: list[int] = []
    for i, text in enumerate(texts):
        sentences = parse(lang, text)
        if sentences is None:
            continue
        rows.append(i)
        struct.append(lang.log_n_sentences[len(sentences) - s.sentences_per_doc_min]
                      + sum(lang.log_sentence_len[len(x) - s.words_per_sentence_min] for x in sentences))
        starts.append(len(ids))
        for sent in sentences:
            ids.extend(sent)
    if rows:
        per_topic = np.add.reduceat(lang.log_word[:, np.asarray(ids)], np.asarray(starts), axis=1)
        joint = per_topic + lang.log_topic[:, None]  # (K, n_valid)
        marginal = np.logaddexp.reduce(joint, axis=0)
        lp_lang[rows] = np.asarray(struct) + marginal
        posterior[rows] = np.exp(joint - marginal).T
    lp_escape = np.array([escape_logprob(t) for t in texts])
    eps = s.escape_prob
    log_prob = np.logaddexp(math.log1p(-eps) + lp_lang, math.log(eps) + lp_escape)
    n_words = np.array([len(t.split()) for t in texts], dtype=np.int64)
    valid = np.isfinite(lp_lang)
    return Scores(log_prob=log_prob, log_prob_language=lp_lang, valid=valid, n_words=n_words,
                  topic_posterior=posterior)


def log_prob(spec: LanguageSpec, text: str) -> float:
    """log P(text) in nats, finite for every string."""
    return float(score(spec, [text]).log_prob[0])


# ----------------------------------------------------------------------------------------- data source


def _rows(knobs: dict[str, Any], n: int, seed: int, text_field: str) -> Iterator[dict[str, Any]]:
    for batch in iter_batches(LanguageSpec(**knobs), n, seed):
        for text, topic in zip(batch["text"], batch["topic"]):
            yield {text_field: text, "topic": topic}


def truncated_geometric_mean(lo: int, hi: int, stop: float) -> float:
    """The mean of a geometric length (stopping with probability ``stop``) truncated to [lo, hi]."""
    ks = range(lo, hi + 1)
    weights = [(1 - stop) ** (k - lo) * stop for k in ks]
    return sum(k * w for k, w in zip(ks, weights)) / sum(weights)


def plan_language(config: Any, kwargs: dict[str, Any], chars_per_token: float) -> tuple[int, float, str]:
    """The source's declared ``plan`` hook: its documents and their expected length in words and
    punctuation (one token each under a word-level count), from the language's knobs."""
    spec = language_spec({k: v for k, v in kwargs.items() if k != "n_documents"})
    words = truncated_geometric_mean(spec.words_per_sentence_min, spec.words_per_sentence_max,
                                     spec.words_per_sentence_stop)
    sentences = truncated_geometric_mean(spec.sentences_per_doc_min, spec.sentences_per_doc_max,
                                         spec.sentences_per_doc_stop)
    return int(kwargs["n_documents"]), sentences * (words + 1), "the language's expected document length"


def ground_truth_language_source(ctx: PhaseContext, n_documents: Annotated[int, Field(ge=1, le=10**8)] = 2000,
                                 **knobs: Any) -> Dataset:
    """``n_documents`` documents of the ground-truth language (knobs: :class:`LanguageSpec`), seeded by ``ctx.seed``.

    Columns: the text field and ``topic`` (the document's topic, for reference).
    """
    import datasets

    spec = language_spec(knobs)
    field = ctx.config.data.text_field
    features = datasets.Features({field: datasets.Value("string"), "topic": datasets.Value("int32")})
    return datasets.Dataset.from_generator(
        _rows, features=features, cache_dir=str(ctx.cache_dir),
        gen_kwargs={"knobs": spec.model_dump(), "n": n_documents, "seed": int(ctx.seed),
                    "text_field": field},
    )
