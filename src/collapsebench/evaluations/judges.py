"""LLM judges: a pointwise 0-5 quality score of samples and a pairwise synthetic-vs-real comparison.

The judge (:mod:`collapsebench.evaluations.judge_clients`) is either a local ``transformers``
causal LM (greedy decoding, through its chat template when the tokenizer has one) or any
OpenAI-compatible chat endpoint::

    judge: {type: transformers, model: /models/judge, max_new_tokens: 32}
    judge: {type: openai, base_url: http://localhost:8000/v1, model: my-judge, api_key_env: JUDGE_API_KEY}

Parsing is strict and never crashes: the pointwise score is the first stand-alone integer in 0..5
after the answer marker (``Score:``, case-insensitive); the pairwise verdict is the first ``A``,
``B`` or ``tie`` after ``Verdict:``. Anything else counts as *unparsed* and is reported as a rate.
Each (synthetic, real) pair is judged in both orders (synthetic as A, then as B), so a judge that
prefers a position gains nothing: the win rates are over all parsed verdicts of both orders.

Every answer is kept in the work folder as it arrives (``<evaluation>.answers.jsonl``, keyed by
the prompt's digest), so a phase stopped by a judge server that went down asks, when resumed, only
for the prompts that have no answer yet; the file goes once the verdicts are written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from collapsebench.api import PhaseContext
from collapsebench.errors import UserError
from collapsebench.evaluations.candidates import On
from collapsebench.evaluations.judge_clients import ask_keeping, make_judge

POINTWISE_TEMPLATE = (
    "Rate the quality of the following text on a scale from 0 to 5, where 0 means incoherent or empty, "
    "1 very poor, 2 poor, 3 acceptable, 4 good and 5 excellent, fluent and coherent writing.\n\n"
    "Text:\n{text}\n\nAnswer with one line of the form 'Score: <0-5>'."
)
PAIRWISE_TEMPLATE = (
    "Which of the two texts below is better written: more fluent, coherent and natural?\n\n"
    "Text A:\n{a}\n\nText B:\n{b}\n\n"
    "Answer with one line of the form 'Verdict: A', 'Verdict: B' or 'Verdict: tie'."
)
_INTEGER = re.compile(r"(?<![\w.])(\d+)(?![\w]|\.\d)")
_VERDICT = re.compile(r"\b(A|B)\b|\b([Tt][Ii][Ee])\b")


# ------------------------------------------------------------------------------------ parsing


def _after_marker(text: str, marker: str) -> str | None:
    pos = text.lower().find(marker.lower())
    return None if pos < 0 else text[pos + len(marker):]


def parse_score(text: str, marker: str = "Score:", low: int = 0, high: int = 5) -> float:
    """The first stand-alone integer in ``low..high`` after ``marker``; NaN if there is none."""
    rest = _after_marker(text or "", marker)
    if rest is None:
        return math.nan
    for match in _INTEGER.finditer(rest):
        value = int(match.group(1))
        if low <= value <= high:
            return float(value)
    return math.nan


def parse_verdict(text: str, marker: str = "Verdict:") -> str | None:
    """``"A"``, ``"B"`` or ``"tie"``: the first one after ``marker``; None if there is none."""
    rest = _after_marker(text or "", marker)
    if rest is None:
        return None
    match = _VERDICT.search(rest)
    if match is None:
        return None
    return match.group(1) or "tie"


# ------------------------------------------------------------------------------------ aggregation


def aggregate_pairwise(synthetic_first: Sequence[str | None], synthetic_second: Sequence[str | None]) -> dict[str, float]:
    """Win rates from the verdicts with synthetic as A (``synthetic_first``) and as B (``synthetic_second``).

    Rates are over parsed verdicts of both orders; ``synthetic_score`` counts a tie as half a win;
    ``position_a_rate`` (share of A among non-tie verdicts) shows the judge's position bias.
    """
    winners: list[str | None] = []
    for verdict, synthetic_is in [(v, "A") for v in synthetic_first] + [(v, "B") for v in synthetic_second]:
        if verdict is None:
            winners.append(None)
        elif verdict == "tie":
            winners.append("tie")
        else:
            winners.append("synthetic" if verdict == synthetic_is else "real")
    parsed = [w for w in winners if w is not None]
    n = len(parsed)
    rate = (lambda who: sum(w == who for w in parsed) / n) if n else (lambda who: math.nan)
    decided = [v for v in list(synthetic_first) + list(synthetic_second) if v in ("A", "B")]
    return {
        "synthetic_win_rate": rate("synthetic"),
        "real_win_rate": rate("real"),
        "tie_rate": rate("tie"),
        "synthetic_score": (rate("synthetic") + 0.5 * rate("tie")) if n else math.nan,
        "unparsed_rate": (len(winners) - n) / len(winners) if winners else math.nan,
        "position_a_rate": sum(v == "A" for v in decided) / len(decided) if decided else math.nan,
        "pairs": float(len(synthetic_first)),
    }


# ------------------------------------------------------------------------------------ evaluations


def _pick(n: int, k: int, rng: np.random.Generator) -> list[int]:
    return sorted(rng.choice(n, size=min(k, n), replace=False).tolist())


def judge_quality(ctx: PhaseContext, judge: dict[str, Any], *, n_samples: int = 100, template: str = POINTWISE_TEMPLATE,
                  marker: str = "Score:", on: On = "all") -> dict[str, float]:
    """Evaluation: mean 0-5 judge score of a seeded subsample of the iteration's generated texts
    (``on``: every candidate, the accepted or the rejected ones, see
    :mod:`collapsebench.evaluations.candidates`); keys suffixed with the set (``_all``,
    ``_accepted``, ``_rejected``)."""
    from collapsebench.evaluations.candidates import audit_rows, per_set
    from collapsebench.evaluations.common import require_column, write_jsonl

    rows, accepted = audit_rows(ctx, on, n_samples, np.random.default_rng(ctx.seed),
                                "evaluate.evaluations (judge_quality)")
    require_column(rows, ctx.text_field, what="generated texts")
    texts = [str(t) for t in rows[ctx.text_field]]
    try:
        prompts = [template.format(text=t) for t in texts]
    except (KeyError, IndexError) as exc:
        raise UserError(f"judge_quality.template: needs exactly the placeholder {{text}} ({exc})") from None
    kept = ctx.out_dir / "judge_quality.answers.jsonl"
    responses = ask_keeping(make_judge(judge), prompts, kept)
    scores = np.array([parse_score(r, marker) for r in responses])
    ids = rows["id"] if "id" in rows.column_names else [str(i) for i in range(len(texts))]
    write_jsonl(ctx.out_dir / "judge_quality.jsonl",
                ({"id": i, "accepted": bool(a), "text": t, "response": r, "score": float(s)}
                 for i, a, t, r, s in zip(ids, accepted, texts, responses, scores)))
    kept.unlink()

    def summary(part: np.ndarray) -> dict[str, float]:
        parsed = ~np.isnan(part)
        return {"judge_quality_mean": float(part[parsed].mean()) if parsed.any() else math.nan,
                "judge_quality_unparsed_rate": float(1 - parsed.mean()) if part.size else math.nan,
                "judge_quality_n": float(part.size)}

    return per_set(on, accepted, lambda mask: summary(scores[mask]))


def judge_pairwise(ctx: PhaseContext, judge: dict[str, Any], *, n_pairs: int = 50, template: str = PAIRWISE_TEMPLATE,
                   marker: str = "Verdict:") -> dict[str, float]:
    """Evaluation: synthetic vs real (holdout) documents, judged in both orders; win rates."""
    from collapsebench.evaluations.common import require_column, write_jsonl

    samples, real = ctx.samples(), ctx.holdout()
    require_column(samples, ctx.text_field, what="samples")
    require_column(real, ctx.text_field, what="real holdout")
    rng = np.random.default_rng(ctx.seed)
    n = min(n_pairs, len(samples), len(real))
    syn = [str(t) for t in samples.select(_pick(len(samples), n, rng))[ctx.text_field]]
    ref = [str(t) for t in real.select(_pick(len(real), n, rng))[ctx.text_field]]
    ref = [ref[i] for i in rng.permutation(len(ref))]
    try:
        prompts = [template.format(a=s, b=r) for s, r in zip(syn, ref)] + [template.format(a=r, b=s) for s, r in zip(syn, ref)]
    except (KeyError, IndexError) as exc:
        raise UserError(f"judge_pairwise.template: needs exactly the placeholders {{a}} and {{b}} ({exc})") from None
    kept = ctx.out_dir / "judge_pairwise.answers.jsonl"
    responses = ask_keeping(make_judge(judge), prompts, kept)
    verdicts = [parse_verdict(r, marker) for r in responses]
    first, second = verdicts[:n], verdicts[n:]
    write_jsonl(ctx.out_dir / "judge_pairwise.jsonl", (
        {"synthetic": s, "real": r, "response_synthetic_a": responses[i], "verdict_synthetic_a": first[i],
         "response_synthetic_b": responses[n + i], "verdict_synthetic_b": second[i]}
        for i, (s, r) in enumerate(zip(syn, ref))))
    kept.unlink()
    return {f"judge_pairwise_{k}": v for k, v in aggregate_pairwise(first, second).items()}
