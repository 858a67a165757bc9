"""LLM judges: a pointwise 0-5 quality score of samples and a pairwise synthetic-vs-real comparison.

The judge (:mod:`collapsebench.evaluations.judge_clients`) is either a local ``transformers``
causal LM (greedy decoding, through its chat template when the tokenizer has one) or any
OpenAI-compatible chat endpoint::

    judge: {type: transformers, model: /models/judge, max_new_tokens: 32}
    judge: {type: openai, base_url: http://localhost:8000/v1, model: my-judge, api_key_env: JUDGE_API_KEY}

Parsing is strict and never crashes: the pointwise score is the first stand-alone integer in 0..5
after the answer marker (``Score:``, case-insensitive); the pairwise verdict is the first ``A``,
``B`` or ``tie`` after ``Verdict:``, or, with ``verdict_format: brackets``, the last of ``[[A]]``,
``[[B]]`` and ``[[C]]`` (a tie) in the answer: the MT-Bench format a judge writes after its
explanation, as the OLMo self-training study's prompt asks. Anything else counts as *unparsed* and
is reported as a rate.

A published prompt is used as published: ``template_file`` reads it from a file beside the config
or, as ``hf://datasets/OWNER/NAME@REVISION/PATH``, from a hub repository at a pinned commit
(huggingface_hub's file system), and ``placeholder`` names the literal the text replaces when the
prompt marks its slot in its own way (e.g. ``<EXAMPLE>``) rather than with ``{text}``.
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
from typing import Any, Literal

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
_BRACKETS = re.compile(r"\[\[(A|B|C)\]\]")


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


def parse_bracket_verdict(text: str) -> str | None:
    """``"A"``, ``"B"`` or ``"tie"`` from the last ``[[A]]``, ``[[B]]`` or ``[[C]]`` (a tie) in the
    answer (the final verdict follows the explanation, which may quote the formats); None if none."""
    found = _BRACKETS.findall(text or "")
    if not found:
        return None
    return {"A": "A", "B": "B", "C": "tie"}[found[-1]]


def load_template(ctx: PhaseContext, template: str, template_file: str | None, key: str) -> str:
    """The judge's prompt: ``template``, or the text of ``template_file`` (a path relative to the
    config, or an ``hf://`` path read through huggingface_hub at the revision it names)."""
    if template_file is None:
        return template
    if template_file.startswith("hf://"):
        from huggingface_hub import HfFileSystem

        try:
            return str(HfFileSystem().read_text(template_file, encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{key}.template_file: cannot read {template_file} ({exc})") from None
    path = ctx.config.resolve_path(template_file)
    if not path.is_file():
        raise UserError(f"{key}.template_file: {template_file} is not a file ({path})")
    return path.read_text(encoding="utf-8")


def fill(template: str, key: str, placeholder: str | None = None, **values: str) -> str:
    """``template`` with the values put in: ``{name}`` placeholders, or, with ``placeholder``, that
    literal replaced by the one value (a published prompt's own slot, e.g. ``<EXAMPLE>``)."""
    if placeholder is not None:
        if placeholder not in template:
            raise UserError(f"{key}.placeholder: '{placeholder}' is not in the template")
        (value,) = values.values()
        return template.replace(placeholder, value)
    names = " and ".join("{" + name + "}" for name in values)
    missing = [name for name in values if "{" + name + "}" not in template]
    try:
        if missing:  # str.format would drop the text silently and the judge would rate an empty slot
            raise KeyError(", ".join(missing))
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise UserError(f"{key}.template: needs exactly the placeholders {names} ({exc})") from None


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
                  marker: str = "Score:", on: On = "all", template_file: str | None = None,
                  placeholder: str | None = None) -> dict[str, float]:
    """Evaluation: mean 0-5 judge score of a seeded subsample of the iteration's generated texts
    (``on``: every candidate, the accepted or the rejected ones, see
    :mod:`collapsebench.evaluations.candidates`); keys suffixed with the set (``_all``,
    ``_accepted``, ``_rejected``). ``template_file`` / ``placeholder``: a published prompt (module
    docstring)."""
    from collapsebench.evaluations.candidates import audit_rows, per_set
    from collapsebench.evaluations.common import require_column, write_jsonl

    rows, accepted = audit_rows(ctx, on, n_samples, np.random.default_rng(ctx.seed),
                                "evaluate.evaluations (judge_quality)")
    require_column(rows, ctx.text_field, what="generated texts")
    texts = [str(t) for t in rows[ctx.text_field]]
    prompt = load_template(ctx, template, template_file, "judge_quality")
    prompts = [fill(prompt, "judge_quality", placeholder, text=t) for t in texts]
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
                   marker: str = "Verdict:", verdict_format: Literal["marker", "brackets"] = "marker",
                   template_file: str | None = None) -> dict[str, float]:
    """Evaluation: synthetic vs real (holdout) documents, judged in both orders; win rates.
    ``verdict_format``: ``marker`` (the first A / B / tie after ``marker``) or ``brackets`` (the
    last ``[[A]]`` / ``[[B]]`` / ``[[C]]``); ``template_file``: the prompt from a file (module docstring)."""
    from collapsebench.evaluations.common import require_column, write_jsonl

    samples, real = ctx.samples(), ctx.holdout()
    require_column(samples, ctx.text_field, what="samples")
    require_column(real, ctx.text_field, what="real holdout")
    rng = np.random.default_rng(ctx.seed)
    n = min(n_pairs, len(samples), len(real))
    syn = [str(t) for t in samples.select(_pick(len(samples), n, rng))[ctx.text_field]]
    ref = [str(t) for t in real.select(_pick(len(real), n, rng))[ctx.text_field]]
    ref = [ref[i] for i in rng.permutation(len(ref))]
    prompt = load_template(ctx, template, template_file, "judge_pairwise")
    prompts = ([fill(prompt, "judge_pairwise", a=s, b=r) for s, r in zip(syn, ref)]
               + [fill(prompt, "judge_pairwise", a=r, b=s) for s, r in zip(syn, ref)])
    kept = ctx.out_dir / "judge_pairwise.answers.jsonl"
    responses = ask_keeping(make_judge(judge), prompts, kept)
    verdicts = [parse_bracket_verdict(r) if verdict_format == "brackets" else parse_verdict(r, marker)
                for r in responses]
    first, second = verdicts[:n], verdicts[n:]
    write_jsonl(ctx.out_dir / "judge_pairwise.jsonl", (
        {"synthetic": s, "real": r, "response_synthetic_a": responses[i], "verdict_synthetic_a": first[i],
         "response_synthetic_b": responses[n + i], "verdict_synthetic_b": second[i]}
        for i, (s, r) in enumerate(zip(syn, ref))))
    kept.unlink()
    return {f"judge_pairwise_{k}": v for k, v in aggregate_pairwise(first, second).items()}
