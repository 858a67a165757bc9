"""The knowledge-retention test (KR-test) as published: a true sentence against a minimally edited
false one, after the paragraph's context.

ForTIFAI (App. B): "Our KR-test of Wikitext consists of paragraphs (i.e. contexts) followed by two
completions, one with true facts based on the Wikitext and another with major flaws in the factual
parts." Its example (Table B1) gives as context a paraphrase of the paragraph's first sentence
("South of Heaven is the fourth studio album by American thrash metal band Slayer, released on
July 5, 1988."), as the true sentence a paraphrase of the next one ("The album marked Slayer's
second collaboration with producer Rick Rubin.") and as the false sentence the same sentence with
one fact changed ("... first collaboration ..."). §4.2.1: five questions per paragraph; "When the
log probability is higher for the true continuation, the question is considered correctly
answered."

Built here offline, from the run's real training paragraphs (:func:`kr_items`):

* the TRUE sentence is a sentence of the paragraph, verbatim (not the first: it needs a context);
* the FALSE sentence is the same sentence with one fact changed in place (:func:`edit`): a year
  moved by 1 to 10 years, one digit of another number changed, one part of a date (its day, month or
  year) changed, an ordinal word swapped for another (``second`` -> ``first``, as in Table B1), or a
  name replaced by a name of as many words from another paragraph that this paragraph never
  mentions. The facts are found by the rule of :func:`collapsebench.evaluations.knowledge_items.mentions`
  (no named-entity model is assumed);
* the CONTEXT is the paragraph's text before the sentence (or its last ``context_sentences``
  sentences), VERBATIM. The paper paraphrases context and sentences with a language model; none is
  available offline, and a paraphrase by the model under test (or by a tiny model trained from
  scratch) would change the facts it is meant to carry. The verbatim training text stands in for the
  paraphrase: it asks the same question (which of two sentences that differ only in one fact
  follows this context), but a model can answer it from surface recall of the exact text where the
  paper's paraphrase asks for the fact itself (docs/metrics.md).

Up to ``per_paragraph`` questions per paragraph, on different sentences first, drawn with a seed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from collapsebench.api import PhaseContext
from collapsebench.evaluations.knowledge_items import SENTENCE_END, Mention, mentions, training_slices

ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
ORDINAL = re.compile(r"\b(?:" + "|".join(ORDINALS) + r")\b", re.IGNORECASE)
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
DATE_PART = re.compile(rf"\b(?P<month>{'|'.join(MONTHS)})\b|\b(?P<year>\d{{4}})\b|\b(?P<day>\d{{1,2}})\b")


def _year(text: str, rng: np.random.Generator) -> str:
    year = int(text)
    shifts = [d for d in range(-10, 11) if d and 1500 <= year + d <= 2099]
    return str(year + shifts[int(rng.integers(len(shifts)))])


def _digit(text: str, rng: np.random.Generator) -> str:
    """One digit of a number changed (a leading digit never to 0)."""
    at = [i for i, c in enumerate(text) if c.isdigit()]
    i = at[int(rng.integers(len(at)))]
    lead = i == 0 and len(at) > 1
    choices = [d for d in "0123456789" if d != text[i] and not (lead and d == "0")]
    return text[:i] + choices[int(rng.integers(len(choices)))] + text[i + 1:]


def _date(text: str, rng: np.random.Generator) -> str:
    """One part of a date changed: its day (to another of 1..28), month or year."""
    parts = list(DATE_PART.finditer(text))
    m = parts[int(rng.integers(len(parts)))]
    if m.lastgroup == "month":
        others = [x for x in MONTHS if x != m.group()]
        new = others[int(rng.integers(len(others)))]
    elif m.lastgroup == "year":
        new = _year(m.group(), rng)
    else:
        days = [str(d) for d in range(1, 29) if str(d) != m.group()]
        new = days[int(rng.integers(len(days)))]
    return text[:m.start()] + new + text[m.end():]


def _ordinal(text: str, rng: np.random.Generator) -> str:
    others = [x for x in ORDINALS if x != text.lower()]
    new = others[int(rng.integers(len(others)))]
    return new.capitalize() if text[0].isupper() else new


def edit(kind: str, text: str, rng: np.random.Generator, names: Sequence[str] = ()) -> str | None:
    """The false version of a fact of ``kind`` (see the module docstring); a name is drawn from
    ``names`` (names of as many words that the paragraph does not mention); None when there is none."""
    if kind == "name":
        return names[int(rng.integers(len(names)))] if names else None
    return {"year": _year, "number": _digit, "date": _date, "ordinal": _ordinal}[kind](text, rng)


def _facts(sentence: str) -> list[Mention]:
    """The facts of one sentence: the mention rule's, plus ordinal words."""
    found = mentions(sentence)
    taken = [(m.start, m.start + len(m.text)) for m in found]
    for m in ORDINAL.finditer(sentence):
        if not any(lo < m.end() and m.start() < hi for lo, hi in taken):
            found.append(Mention("ordinal", m.group(), m.start()))
    return sorted(found, key=lambda m: m.start)


def kr_items(paragraphs: Sequence[str], slices: Sequence[str], *, per_paragraph: int = 5,
             min_context_words: int = 5, context_sentences: int | None = None,
             seed: int = 0) -> list[dict[str, Any]]:
    """Up to ``per_paragraph`` KR-test questions per paragraph (see the module docstring): items with
    ``context``, ``true``, ``false`` (sentences with a leading space), ``type`` (the fact's kind),
    ``edit`` ([true fact, false fact]), ``slice`` and ``paragraph`` (its index)."""
    rng = np.random.default_rng(seed)
    names: dict[int, list[str]] = {}
    for p in paragraphs:
        for m in mentions(p):
            if m.kind == "name":
                names.setdefault(len(m.text.split()), []).append(m.text)
    items: list[dict[str, Any]] = []
    for i, paragraph in enumerate(paragraphs):
        starts = [0, *(m.end() for m in SENTENCE_END.finditer(paragraph))]
        ends = [*(m.start() for m in SENTENCE_END.finditer(paragraph)), len(paragraph.rstrip())]
        candidates = []
        for s in range(1, len(starts)):
            before = paragraph[starts[max(0, s - context_sentences) if context_sentences else 0]:starts[s]].rstrip()
            if len(before.split()) < min_context_words:
                continue
            sentence = paragraph[starts[s]:ends[s]]
            candidates += [(s, before, sentence, fact) for fact in _facts(sentence)]
        first: list[int] = []  # one question per sentence before a second one on any sentence
        again: list[int] = []
        for j in rng.permutation(len(candidates)).tolist():
            (again if any(candidates[f][0] == candidates[j][0] for f in first) else first).append(j)
        here = paragraph.lower()
        asked = 0
        for j in first + again:
            if asked == per_paragraph:
                break
            _, before, sentence, fact = candidates[j]
            pool = [n for n in names.get(len(fact.text.split()), []) if n.lower() not in here]
            new = edit(fact.kind, fact.text, rng, pool)
            if new is None or new == fact.text:
                continue
            false = sentence[:fact.start] + new + sentence[fact.start + len(fact.text):]
            items.append({"context": before, "true": " " + sentence, "false": " " + false, "type": fact.kind,
                          "edit": [fact.text, new], "slice": str(slices[i]), "paragraph": i})
            asked += 1
    return items


def kr_test(ctx: PhaseContext, *, slices: str | None = None, per_paragraph: int = 5, documents: int = 200,
            min_context_words: int = 5, context_sentences: int | None = None,
            seed: int | None = None) -> list[dict[str, Any]]:
    """Item builder: the published KR-test, up to ``per_paragraph`` true/false sentence pairs about
    each of up to ``documents`` real training paragraphs per slice (see the module docstring)."""
    seed = ctx.config.seed if seed is None else seed
    texts, labels, ids = training_slices(ctx, slices, documents, seed)
    items = kr_items(texts, labels, per_paragraph=per_paragraph, min_context_words=min_context_words,
                     context_sentences=context_sentences, seed=seed)
    for item in items:
        item["parent"] = ids[item.pop("paragraph")]
    return items
