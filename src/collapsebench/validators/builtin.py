"""The built-in validators: a sandboxed Jinja2 test, a sequence classifier's probability, and the
perplexity tier of each candidate under the current model."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from collapsebench.api import PhaseContext, Verdict
from collapsebench.config import Config
from collapsebench.errors import UserError
from collapsebench.models.classify import cached_classifier, class_scores, head_kind
from collapsebench.models.loading import cached_causal_lm, generation_model_dir
from collapsebench.models.scoring import sequence_logprobs
from collapsebench.sources.files import local_or_hub
from collapsebench.templating import RenderError, compile_template, render_rows

_TRUE, _FALSE = {"true", "yes"}, {"false", "no", "none", ""}


def jinja(ctx: PhaseContext, batch: dict[str, list], template: str,
          threshold: float | None = None) -> list[Verdict]:
    """Keep a sample when the template renders to true, or to a number >= ``threshold`` (a number
    with no threshold keeps when non-zero). The row's columns are the template's variables, e.g.
    ``{{ text.startswith('user:') and 'assistant:' in text }}``. A row the template fails on is
    rejected with the error as its reason."""
    n = len(next(iter(batch.values()))) if batch else 0
    rows = [{col: values[i] for col, values in batch.items()} for i in range(n)]
    verdicts = []
    for i, rendered in enumerate(render_rows(template, rows, "generate.validators (jinja)")):
        if isinstance(rendered, RenderError):
            verdicts.append(Verdict(False, f"template error: {rendered}"))
            continue
        out = rendered.strip()
        if out.lower() in _TRUE | _FALSE:
            ok = out.lower() in _TRUE
            verdicts.append(Verdict(ok, "" if ok else f"template rendered {out!r}"))
            continue
        try:
            score = float(out)
        except ValueError:
            raise UserError(f"generate.validators (jinja): template {template!r} rendered {out[:80]!r} for "
                            f"row {i}; it must render true/false or a number") from None
        ok = score >= threshold if threshold is not None else score != 0
        verdicts.append(Verdict(ok, "" if ok else f"template score {score:g} below {threshold}", score))
    return verdicts


def check_jinja(config: Config, kwargs: dict[str, Any]) -> None:
    """``validate``: the template compiles in the sandbox."""
    compile_template(kwargs["template"])


def classifier(ctx: PhaseContext, batch: dict[str, list], model: str, label: int | str = 1,
               threshold: float | None = None, head: str | None = None, field: str | None = None,
               batch_size: int = 32, max_length: int = 512) -> list[Verdict]:
    """Keep a sample by a sequence classifier's verdict on it. ``model``: a local folder (relative
    to the config) or a hub name. ``head`` (default: read from the model's ``problem_type`` and
    ``num_labels``; see :func:`collapsebench.models.classify.head_kind`) decides what is compared:

    * ``regression`` (one output: a score, e.g. a quality rating): keep when the raw score is at
      least ``threshold`` (required);
    * ``binary``: keep when the probability of ``label`` (sigmoid of a single output, or two-class
      softmax) is at least ``threshold`` (default 0.5);
    * ``multi_class``: keep when ``label`` is the predicted class, or, with ``threshold``, when its
      softmax probability is at least that;
    * ``multi_label``: keep when the sigmoid of ``label`` is at least ``threshold`` (default 0.5).

    ``label``: an index or a name of the model's labels. The score goes to ``score_classifier``."""
    local = ctx.config.resolve_path(model)
    clf, tok = cached_classifier(ctx, str(local) if local.exists() else model)
    kind = head_kind(clf, head)
    n_out = int(clf.config.num_labels)
    if isinstance(label, str):
        names = dict(clf.config.label2id or {})
        if label not in names:
            raise UserError(f"generate.validators (classifier): label '{label}' not in {model}'s labels {list(names)}")
        index = int(names[label])
    else:
        index = int(label)
    if kind == "regression":
        if threshold is None:
            raise UserError(f"generate.validators (classifier): {model} has a regression head (a raw score); "
                            "set threshold to the score a sample must reach")
        index = 0 if n_out == 1 else index
    if not 0 <= index < max(n_out, 2 if kind == "binary" else 1):
        raise UserError(f"generate.validators (classifier): label {label} out of range for {n_out} labels")
    scores, predicted = class_scores(clf, tok, batch[field or ctx.text_field], kind, index, batch_size=batch_size,
                                     max_length=max_length)
    if kind == "multi_class" and threshold is None:
        return [Verdict(p == index, "" if p == index else f"predicted label {p}, not {label}", s)
                for s, p in zip(scores, predicted)]
    cut = 0.5 if threshold is None else threshold
    return [Verdict(s >= cut, "" if s >= cut else f"{label} score {s:.3f} < {cut}", s) for s in scores]


TIERS = ("low", "middle", "high")


def perplexity_tier(ctx: PhaseContext, batch: dict[str, list], tier: str = "low", fraction: float = 1 / 3,
                    batch_size: int = 16, by: Literal["tokens", "count"] = "tokens") -> list[Verdict]:
    """Keep the ``low``, ``middle`` or ``high`` ``fraction`` of the candidates by their perplexity
    under the generating model, ranked over the whole pool: each round's candidates in the quota
    loop, however they are sharded (this function scores a shard; :func:`select_tier` ranks the
    pool once).

    ``by: tokens`` (default) keeps ``fraction`` of the pool's generated tokens, as the OLMo
    self-training study does ("the model over-generates 3N tokens, and we retain N tokens according
    to the perplexity"); ``by: count`` keeps ``fraction`` of the candidates, whatever their length.
    It keeps a fixed share of every round, so set ``generate.oversample`` to ``1 / fraction`` (3) to
    meet the target in one round."""
    _check_tier(tier, fraction, by)
    texts = batch[ctx.text_field]
    if not texts:
        return []
    model, tok = cached_causal_lm(ctx, generation_model_dir(ctx))
    total, count = sequence_logprobs(model, tok, texts, batch_size=batch_size)
    ppl = np.exp(-total / np.maximum(count, 1))
    return [Verdict(True, "", float(p)) for p in ppl]


def select_tier(ctx: PhaseContext, scores: list[float], tier: str = "low", fraction: float = 1 / 3,
                by: str = "tokens", tokens: list[int] | None = None, **ignored: Any) -> list[Verdict]:
    """The pool's decision of ``perplexity_tier``: the candidates sorted by perplexity, the
    ``tier``'s run of them that holds ``fraction`` of the pool's generated ``tokens`` (``by:
    tokens``: from the first candidate whose running total passes the tier's start, the shortest run
    that reaches the share) or ``fraction`` of the candidates (``by: count``); at least one."""
    _check_tier(tier, fraction, by)
    ppl = np.asarray(scores, dtype=np.float64)
    n = len(ppl)
    order = np.argsort(ppl, kind="stable")
    if by == "count":
        k = max(1, int(round(n * fraction)))
        start = {"low": 0, "middle": (n - k) // 2, "high": n - k}[tier]
    else:
        if tokens is None or len(tokens) != n:
            raise UserError("generate.validators (perplexity_tier): by: tokens needs each candidate's generated tokens, "
                            "which this pool does not carry; use by: count")
        running = np.cumsum(np.asarray(tokens, dtype=np.int64)[order])
        total = int(running[-1]) if n else 0
        share = fraction * total
        offset = {"low": 0.0, "middle": (total - share) / 2, "high": total - share}[tier]
        start = min(int(np.searchsorted(running, offset, side="right")), n - 1)
        before = int(running[start - 1]) if start else 0
        k = min(int(np.searchsorted(running - before, share, side="left")), n - 1) - start + 1
    chosen = set(order[start : start + max(k, 1)].tolist())
    return [Verdict(i in chosen, "" if i in chosen else f"perplexity {ppl[i]:.4g} outside the {tier} tier of the pool",
                    float(ppl[i])) for i in range(n)]


def _check_tier(tier: str, fraction: float, by: str) -> None:
    if by not in ("tokens", "count"):
        raise UserError(f"generate.validators (perplexity_tier): by must be tokens or count, got '{by}'")
    if tier not in TIERS:
        raise UserError(f"generate.validators (perplexity_tier): tier must be low, middle or high, got '{tier}'")
    if not 0 < fraction <= 1:
        raise UserError(f"generate.validators (perplexity_tier): fraction must be in (0, 1], got {fraction}")


def preflight_classifier(config: Config, kwargs: dict[str, Any]) -> list[str]:
    return local_or_hub(config, kwargs["model"], "generate.validators (classifier).model")
