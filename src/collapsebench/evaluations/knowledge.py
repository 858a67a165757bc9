"""Knowledge retention: does the model still prefer the true continuation of a fact?

An item is ``{"context": str, "true": str, "false": str, "slice": str (optional)}``. The model
answers it correctly when log P(true | context) > log P(false | context). Reported: accuracy
overall and per slice (chance is 0.5), and calibration (ECE, overconfidence) of the two-way
normalised probabilities softmax(log P(true), log P(false)).

Building items from real text (:func:`build_knowledge_items`): documents are drawn with a seeded
RNG; from each, one sentence with at least ``min_words`` words is drawn; its last ``n_words``
words (trailing sentence punctuation dropped) are the true continuation and the rest is the
context. The false continuation is as many words taken from the end of a sentence of *another*
document, differing from the true words. Continuations start with a space, so word-piece
tokenisers see the same word boundary as in running text. With a ``scorer`` (for example
:func:`model_scorer` of a model of the user's choice), ``n_candidates`` distractors are drawn
and the one the scorer finds most plausible after the context is kept: harder, more confusable
items. Command line: ``collapsebench knowledge-items INPUT OUTPUT --n 500 --seed 0 [--model DIR]``
(INPUT: a .txt file with one document per line, .jsonl/.json, .csv, .parquet or a ``save_to_disk``
folder with a ``text`` column).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from collapsebench.api import PhaseContext
from collapsebench.errors import UserError
from collapsebench.evaluations.calibration import CRITICAL_RISE, WARNING_RISE, add_ece_alert, expected_calibration_error
from collapsebench.models.loading import cached_causal_lm, load_causal_lm
from collapsebench.models.scoring import continuation_logprobs

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
TRAILING_PUNCT = ".!?;:,\"')]"

Scorer = Callable[[str, list[str]], Sequence[float]]


# ------------------------------------------------------------------------------------ metrics


def knowledge_metrics(lp_true: np.ndarray, lp_false: np.ndarray, slices: Sequence[str] | None = None,
                      *, prefix: str = "knowledge", n_bins: int = 10) -> dict[str, float]:
    """Accuracy (overall and per slice), ECE and overconfidence from paired log-probabilities."""
    lp_true = np.asarray(lp_true, dtype=np.float64)
    lp_false = np.asarray(lp_false, dtype=np.float64)
    correct = lp_true > lp_false
    p_true = 1.0 / (1.0 + np.exp(lp_false - lp_true))  # two-way softmax
    conf = np.maximum(p_true, 1.0 - p_true)
    out = {
        f"{prefix}_accuracy": float(correct.mean()),
        f"{prefix}_confidence": float(conf.mean()),
        f"{prefix}_ece": expected_calibration_error(conf, correct, n_bins),
        f"{prefix}_overconfidence": float(conf.mean() - correct.mean()),
        f"{prefix}_items": float(correct.size),
    }
    if slices is not None:
        labels = np.asarray([str(s) for s in slices])
        for name in sorted(set(labels.tolist())):
            out[f"{prefix}_accuracy/{name}"] = float(correct[labels == name].mean())
    return out


def knowledge(ctx: PhaseContext, path: str, *, prefix: str = "knowledge", batch_size: int = 16,
              n_bins: int = 10, model: str | None = None, baseline: str | None = None,
              warning_rise: float = WARNING_RISE, critical_rise: float = CRITICAL_RISE) -> dict[str, float]:
    """Evaluation: knowledge retention of the iteration's model (or ``model``) on a JSONL item file.

    Writes ``<prefix>_items.jsonl`` (per-item log-probabilities and verdicts) to ``ctx.out_dir``.
    """
    from collapsebench.evaluations.common import read_jsonl, write_jsonl

    file = ctx.config.resolve_path(path)
    items = read_jsonl(file, {"context": str, "true": str, "false": str})
    lm, tok = cached_causal_lm(ctx, model or ctx.model_dir())
    contexts = [it["context"] for it in items]
    lp = np.asarray(continuation_logprobs(lm, tok, contexts + contexts,
                                          [it["true"] for it in items] + [it["false"] for it in items],
                                          batch_size=batch_size), dtype=np.float64)
    lp_true, lp_false = lp[: len(items)], lp[len(items):]
    has_slices = any("slice" in it for it in items)
    slices = [str(it.get("slice", "default")) for it in items] if has_slices else None
    write_jsonl(ctx.out_dir / f"{prefix}_items.jsonl", (
        {**it, "logprob_true": float(t), "logprob_false": float(f), "correct": bool(t > f)}
        for it, t, f in zip(items, lp_true, lp_false)))
    metrics = knowledge_metrics(lp_true, lp_false, slices, prefix=prefix, n_bins=n_bins)
    return add_ece_alert(ctx, metrics, f"{prefix}_ece", baseline=baseline, warning=warning_rise, critical=critical_rise)


# ------------------------------------------------------------------------------------ builder


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


def build_knowledge_items(texts: Sequence[str], *, n_items: int, seed: int = 0, n_words: int = 1,
                          min_words: int = 5, slices: Sequence[str] | None = None,
                          scorer: Scorer | None = None, n_candidates: int = 8) -> list[dict[str, str]]:
    """Make up to ``n_items`` (context, true, false) items from documents (see the module docstring).

    ``texts`` only needs ``len`` and indexing (a list, or a lazy ``Dataset`` column): documents are
    read one by one, in a seeded random order, until enough items are made. ``slices`` (parallel to
    ``texts``) labels each item with its document's slice.
    """
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

    lm, tok = load_causal_lm(model_dir)

    def score(context: str, candidates: list[str]) -> Sequence[float]:
        return list(continuation_logprobs(lm, tok, [context] * len(candidates), candidates, batch_size=batch_size))

    return score


def load_texts(path: Path, text_field: str) -> Sequence[str]:
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
