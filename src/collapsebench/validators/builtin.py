"""The built-in validators: a sandboxed Jinja2 test, a sequence classifier's probability, and the
perplexity tier of each candidate under the current model."""

from __future__ import annotations

from typing import Any

import numpy as np

from collapsebench.api import PhaseContext, Verdict
from collapsebench.config import Config
from collapsebench.errors import UserError
from collapsebench.models.classify import cached_classifier, class_probabilities
from collapsebench.models.loading import cached_causal_lm
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
               threshold: float = 0.5, field: str | None = None, batch_size: int = 32,
               max_length: int = 512) -> list[Verdict]:
    """Keep a sample when a sequence classifier's probability of ``label`` (index or name) is at
    least ``threshold``. ``model``: a local folder (relative to the config) or a hub name."""
    local = ctx.config.resolve_path(model)
    clf, tok = cached_classifier(ctx, str(local) if local.exists() else model)
    if isinstance(label, str):
        names = dict(clf.config.label2id or {})
        if label not in names:
            raise UserError(f"generate.validators (classifier): label '{label}' not in {model}'s labels {list(names)}")
        index = int(names[label])
    else:
        index = int(label)
    if not 0 <= index < clf.config.num_labels:
        raise UserError(f"generate.validators (classifier): label {label} out of range for {clf.config.num_labels} labels")
    scores = class_probabilities(clf, tok, batch[field or ctx.text_field], index, batch_size=batch_size,
                                 max_length=max_length)
    return [Verdict(s >= threshold, "" if s >= threshold else f"{label} score {s:.3f} < {threshold}", s)
            for s in scores]


def perplexity_tier(ctx: PhaseContext, batch: dict[str, list], tier: str = "low", fraction: float = 1 / 3,
                    batch_size: int = 16) -> list[Verdict]:
    """Score each candidate's perplexity under this iteration's model and keep the ``low``, ``middle``
    or ``high`` ``fraction`` of the batch (one shard of candidates; at least one row).

    It keeps a fixed share of every shard, so set ``generate.oversample`` to ``1 / fraction`` (3) to
    meet the target in one round; give shards enough rows (``generate.shard_size``) for a ranking."""
    if tier not in ("low", "middle", "high"):
        raise UserError(f"generate.validators (perplexity_tier): tier must be low, middle or high, got '{tier}'")
    if not 0 < fraction <= 1:
        raise UserError(f"generate.validators (perplexity_tier): fraction must be in (0, 1], got {fraction}")
    texts = batch[ctx.text_field]
    if not texts:
        return []
    model, tok = cached_causal_lm(ctx, ctx.model_dir())
    total, count = sequence_logprobs(model, tok, texts, batch_size=batch_size)
    ppl = np.exp(-total / np.maximum(count, 1))
    n = len(texts)
    k = max(1, int(round(n * fraction)))
    order = np.argsort(ppl, kind="stable")
    start = {"low": 0, "middle": (n - k) // 2, "high": n - k}[tier]
    chosen = set(order[start : start + k].tolist())
    return [Verdict(i in chosen, "" if i in chosen else f"perplexity {ppl[i]:.4g} outside the {tier} tier",
                    float(ppl[i])) for i in range(n)]


def preflight_classifier(config: Config, kwargs: dict[str, Any]) -> list[str]:
    return local_or_hub(config, kwargs["model"], "generate.validators (classifier).model")
