"""Knowledge items: questions about what the training data says, for the ``knowledge`` evaluation.

Item builders are plug-ins of the ``item_builders`` registry, ``fn(ctx, **kw) -> list[dict]``: each
item is ``{"context", "true", "false", "slice"}`` (plus what the builder records about it). The
built-ins read the run's real training split, a sample of documents per slice:

* ``next_mention`` (:func:`next_mention_items`): several questions about each paragraph's
  content (5 per paragraph, as the published knowledge-retention test asks), each the paragraph
  up to a fact against a same-type mention from another paragraph. Not the published test, whose
  false answer is the same sentence with one fact changed (``kr_test``,
  :mod:`collapsebench.evaluations.kr_test`). No named-entity model is assumed; a documented rule
  finds the paragraph's facts (:func:`mentions`): dates (``3 March 1921``, ``March 3, 1921``,
  ``June 1912``), years (1500-2099), other numbers, and names (runs of capitalised words; a run
  that begins a sentence loses its first word, whose capital may be the sentence's). A question is
  the paragraph up to a mention (the context, at least ``min_context_words`` words), the mention
  (true) and a mention of the same type from another paragraph that does not occur in this one
  (false), drawn with a seed.
* ``cloze`` (:func:`build_cloze_items`): last-word cloze, one sentence of a document with its last
  word(s) as the true continuation and a sentence-final word of another document as the false
  one; also the command ``collapsebench knowledge-items`` (cloze items from any text file).

Slices (``slices``): ``parts``, the parts of the run's ``fresh_real`` regime (its ``parts`` and
``part_by``; named ``part0``, ``part1``, ... or by the column's values), so accuracy on the first
slice is retention of the first part (the default with ``fresh_real``); a column of the real data
(one slice per value); or ``all`` (the default otherwise). The first slice in the items' order is
the one ``knowledge_accuracy_first_slice`` reports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from collapsebench.api import Dataset, PhaseContext
from collapsebench.errors import UserError
from collapsebench.regimes.parts import part_index
from collapsebench.registry import hook, regimes

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
TRAILING_PUNCT = ".!?;:,\"')]"
_MONTH = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
PATTERNS = (  # in order of precedence: an earlier kind claims its span
    ("date", re.compile(rf"\b(?:\d{{1,2}} {_MONTH} \d{{4}}|{_MONTH} \d{{1,2}}, \d{{4}}|{_MONTH} \d{{4}})\b")),
    ("year", re.compile(r"\b(?:1[5-9]\d{2}|20\d{2})\b")),
    ("number", re.compile(r"\b\d+(?:[.,]\d+)*\b")),
    ("name", re.compile(r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)*\b")),
)

Scorer = Callable[[str, list[str]], Sequence[float]]


# ------------------------------------------------------------------------------------ next mention


@dataclass(frozen=True)
class Mention:
    kind: str
    text: str
    start: int


def mentions(paragraph: str) -> list[Mention]:
    """The facts of a paragraph the rule finds (see the module docstring), in order of position."""
    starts = {0} | {m.end() for m in SENTENCE_END.finditer(paragraph)}
    taken = np.zeros(len(paragraph) + 1, dtype=bool)
    found = []
    for kind, pattern in PATTERNS:
        for m in pattern.finditer(paragraph):
            start, text = m.start(), m.group()
            if kind == "name" and start in starts:  # the sentence's capital, not (necessarily) a name
                first, _, rest = text.partition(" ")
                start, text = start + len(first) + 1, rest
                if not text:
                    continue
            if taken[start:start + len(text)].any():
                continue
            taken[start:start + len(text)] = True
            found.append(Mention(kind, text, start))
    return sorted(found, key=lambda m: m.start)


def next_mention_items(paragraphs: Sequence[str], slices: Sequence[str], *, per_paragraph: int = 5,
               min_context_words: int = 5, seed: int = 0) -> list[dict[str, Any]]:
    """Up to ``per_paragraph`` questions about each paragraph (see the module docstring): items
    with ``context``, ``true``, ``false``, ``type``, ``slice`` and ``paragraph`` (its index)."""
    rng = np.random.default_rng(seed)
    found = [mentions(p) for p in paragraphs]
    pool: dict[str, list[str]] = {}
    for ms in found:
        for m in ms:
            pool.setdefault(m.kind, []).append(m.text)
    items: list[dict[str, Any]] = []
    for i, (paragraph, ms) in enumerate(zip(paragraphs, found)):
        here = paragraph.lower()
        seen: set[str] = set()
        usable = []
        for m in ms:
            if m.text not in seen and len(paragraph[:m.start].split()) >= min_context_words:
                seen.add(m.text)
                usable.append(m)
        if len(usable) > per_paragraph:
            usable = [usable[j] for j in sorted(rng.choice(len(usable), size=per_paragraph, replace=False))]
        for m in usable:
            others = [t for t in pool[m.kind] if t.lower() not in here]
            if not others:
                continue
            false = others[int(rng.integers(len(others)))]
            items.append({"context": paragraph[:m.start].rstrip(), "true": " " + m.text, "false": " " + false,
                          "type": m.kind, "slice": str(slices[i]), "paragraph": i})
    return items


# ------------------------------------------------------------------------------------ cloze


def _sentences(text: str, min_words: int) -> list[list[str]]:
    out = []
    for sent in SENTENCE_END.split(text.strip()):
        words = sent.split()
        if words:
            words[-1] = words[-1].rstrip(TRAILING_PUNCT)
            if not words[-1]:
                words.pop()
        if len(words) >= min_words:
            out.append(words)
    return out


def build_cloze_items(texts: Sequence[str], *, n_items: int, seed: int = 0, n_words: int = 1,
                      min_words: int = 5, slices: Sequence[str] | None = None,
                      scorer: Scorer | None = None, n_candidates: int = 8) -> list[dict[str, str]]:
    """Make up to ``n_items`` last-word cloze items (context, true, false) from documents.

    Documents are read one by one, in a seeded random order (``texts`` only needs ``len`` and
    indexing: a list, or a lazy ``Dataset`` column), until enough items are made. From each, one
    sentence with at least ``min_words`` words is drawn; its last ``n_words`` words (trailing
    sentence punctuation dropped) are the true continuation and the rest is the context. The false
    continuation is as many words taken from the end of a sentence of *another* document, differing
    from the true words. Continuations start with a space, so word-piece tokenisers see the same
    word boundary as in running text. With a ``scorer`` (for example :func:`model_scorer` of a model
    of the user's choice), ``n_candidates`` distractors are drawn and the one the scorer finds most
    plausible after the context is kept: harder, more confusable items. ``slices`` (parallel to
    ``texts``) labels each item with its document's slice."""
    if len(texts) < 2:
        raise UserError("building knowledge items needs at least two documents")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    cache: dict[int, list[list[str]]] = {}

    def sentences_of(i: int) -> list[list[str]]:
        if i not in cache:
            cache[i] = _sentences(str(texts[i]), min_words)
        return cache[i]

    def distractor(doc: int, true: str) -> str | None:
        for _ in range(50):
            other = int(rng.integers(len(texts)))
            sents = sentences_of(other) if other != doc else []
            if sents:
                cand = " ".join(sents[int(rng.integers(len(sents)))][-n_words:])
                if cand.lower() != true.lower():
                    return cand
        return None

    items: list[dict[str, str]] = []
    for doc in order.tolist():
        if len(items) >= n_items:
            break
        sents = sentences_of(doc)
        if not sents:
            continue
        words = sents[int(rng.integers(len(sents)))]
        context, true = " ".join(words[:-n_words]), " ".join(words[-n_words:])
        candidates = [c for c in (distractor(doc, true) for _ in range(n_candidates if scorer else 1)) if c]
        if not candidates:
            continue
        if scorer is not None:
            scores = list(scorer(context, [" " + c for c in candidates]))
            false = candidates[int(np.argmax(scores))]
        else:
            false = candidates[0]
        item = {"context": context, "true": " " + true, "false": " " + false}
        if slices is not None:
            item["slice"] = str(slices[doc])
        items.append(item)
        if len(cache) > 10_000:
            cache.clear()
    return items


def model_scorer(model_dir: str | Path, *, batch_size: int = 16) -> Scorer:
    """A distractor scorer: log P(candidate | context) under a causal LM of the user's choice."""
    from collapsebench.models.loading import load_causal_lm
    from collapsebench.models.scoring import continuation_logprobs

    lm, tok = load_causal_lm(model_dir)

    def score(context: str, candidates: list[str]) -> Sequence[float]:
        return list(continuation_logprobs(lm, tok, [context] * len(candidates), candidates, batch_size=batch_size))

    return score


def load_texts(path: Path, text_field: str) -> Sequence[str]:
    """The documents of a file or a ``save_to_disk`` folder (for ``collapsebench knowledge-items``)."""
    import datasets

    if not path.exists():
        raise UserError(f"input not found: {path}")
    if path.is_dir():
        ds = datasets.load_from_disk(str(path))
    elif path.suffix == ".txt":
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        kind = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}.get(path.suffix)
        if kind is None:
            raise UserError(f"{path}: unsupported input (use .txt, .jsonl, .json, .csv, .parquet or a dataset folder)")
        ds = datasets.load_dataset(kind, data_files=str(path), split="train")
    if text_field not in ds.column_names:
        raise UserError(f"{path}: no column '{text_field}' (--text-field); columns: {', '.join(ds.column_names)}")
    return ds[text_field]


# ------------------------------------------------------------------------------------ item builders


def training_slices(ctx: PhaseContext, slices: str | None, documents: int,
                    seed: int) -> tuple[list[str], list[str], list[str]]:
    """(texts, slice names, row ids) of up to ``documents`` real training documents per slice, drawn
    with ``seed`` and kept in their order, slice after slice (see the module docstring). ``slices``
    None: ``parts`` when the run's regime cuts the real data into per-iteration parts (it declares
    ``parts``, as ``fresh_real`` does), else ``all``; ``parts``: the regime's own parts (equal
    contiguous parts, one per iteration, for a regime that declares none)."""
    real = ctx.real()
    regime = ctx.config.curate.regime
    parts = regimes.entry(regime.name, key="curate.regime").parts
    if slices is None:
        slices = "parts" if parts else "all"
    if slices == "all":
        index, names = np.zeros(len(real), dtype=np.int64), ["all"]
    elif slices == "parts" and parts:
        index, names = hook(parts)(real, regimes.bind(regime.name, regime.kwargs, key="curate.regime"),
                                   ctx.config.iterations, "knowledge.items")
    elif slices == "parts":
        index, names = part_index(real, None, None, default=ctx.config.iterations, key="knowledge.items")
    else:
        index, names = part_index(real, None, slices, default=1, key="knowledge.items.slices")
    rng = np.random.default_rng(seed)
    texts, labels, ids = [], [], []
    for p, name in enumerate(names):
        rows = np.flatnonzero(index == p)
        if len(rows) > documents:
            rows = np.sort(rng.choice(rows, size=documents, replace=False))
        picked: Dataset = real.select(rows).select_columns([ctx.text_field, "id"])
        texts += [str(t) for t in picked[ctx.text_field]]
        ids += [str(i) for i in picked["id"]]
        labels += [name] * len(rows)
    return texts, labels, ids


def next_mention(ctx: PhaseContext, *, slices: str | None = None, per_paragraph: int = 5, documents: int = 200,
                 min_context_words: int = 5, seed: int | None = None) -> list[dict[str, Any]]:
    """Item builder: up to ``per_paragraph`` questions about the names, numbers and dates of each of
    up to ``documents`` real training paragraphs per slice, the next mention against a mention from
    another paragraph (see the module docstring)."""
    seed = ctx.config.seed if seed is None else seed
    texts, labels, ids = training_slices(ctx, slices, documents, seed)
    items = next_mention_items(texts, labels, per_paragraph=per_paragraph, min_context_words=min_context_words, seed=seed)
    for item in items:
        item["parent"] = ids[item.pop("paragraph")]
    return items


def cloze(ctx: PhaseContext, *, slices: str | None = None, per_slice: int = 200, documents: int = 1000, n_words: int = 1,
          min_words: int = 5, seed: int | None = None) -> list[dict[str, Any]]:
    """Item builder: up to ``per_slice`` last-word cloze items per slice (see :func:`build_cloze_items`)."""
    seed = ctx.config.seed if seed is None else seed
    texts, labels, _ = training_slices(ctx, slices, documents, seed)
    items: list[dict[str, Any]] = []
    for name in dict.fromkeys(labels):
        own = [t for t, label in zip(texts, labels) if label == name]
        if len(own) >= 2:
            items += build_cloze_items(own, n_items=per_slice, seed=seed, n_words=n_words, min_words=min_words,
                                       slices=[name] * len(own))
    return items
