"""Validators: which generated samples enter S(k).

A validator is ``fn(ctx, batch, **kw) -> list[Verdict]``: ``batch`` is a dict of columns (``text``
(the config's text field), ``prompt``, ``parent``, ...) holding the candidates of one shard that
survived the validators before it, and the result has one verdict per row. A verdict is a
:class:`Verdict` (``keep``, a ``reason`` when dropped, an optional ``score`` stored in the sample's
``score_<validator>`` column), or, for short plug-ins, a ``bool`` (keep or drop) or a tuple
``(keep, reason)`` / ``(keep, reason, score)``.

``generate.validators`` is a chain: each validator sees only what the previous ones kept.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from collapsebench.errors import UserError

if TYPE_CHECKING:
    from collapsebench.config import Spec
    from collapsebench.context import PhaseContext


@dataclass(frozen=True)
class Verdict:
    keep: bool
    reason: str = ""
    score: float | None = None


def keep(score: float | None = None) -> Verdict:
    return Verdict(True, "", score)


def drop(reason: str, score: float | None = None) -> Verdict:
    return Verdict(False, reason, score)


def as_verdict(value: Any, where: str) -> Verdict:
    """Normalise what a validator returned for one row."""
    if isinstance(value, Verdict):
        return value
    if isinstance(value, (bool, np.bool_)):
        return Verdict(bool(value), "" if value else "rejected")
    if isinstance(value, tuple) and 2 <= len(value) <= 3 and isinstance(value[0], (bool, np.bool_)):
        score = float(value[2]) if len(value) == 3 and value[2] is not None else None
        return Verdict(bool(value[0]), str(value[1] or ("" if value[0] else "rejected")), score)
    raise UserError(f"{where} returned {value!r} for a row; expected a Verdict, a bool or a tuple (keep, reason)")


def validator_keys(specs: list["Spec"]) -> list[str]:
    """Short distinct names for metrics and score columns: 'jinja', 'my_check', 'jinja_2', ..."""
    keys: list[str] = []
    for spec in specs:
        base = re.sub(r"\W+", "_", spec.name.split(":")[-1].split(".")[-1]).strip("_") or "validator"
        key, i = base, 2
        while key in keys:
            key, i = f"{base}_{i}", i + 1
        keys.append(key)
    return keys


def apply_chain(ctx: "PhaseContext", batch: dict[str, list], specs: list["Spec"]) -> dict[str, list]:
    """Run the chain over one shard; return the columns ``accepted``, ``rejected_by``, ``reason`` and
    ``score_<key>`` (NaN where a validator gave no score or did not see the row)."""
    from collapsebench.registry import validators

    n = len(next(iter(batch.values()))) if batch else 0
    out: dict[str, list] = {"accepted": [True] * n, "rejected_by": [""] * n, "reason": [""] * n}
    alive = list(range(n))
    for i, (spec, key) in enumerate(zip(specs, validator_keys(specs))):
        where = f"generate.validators[{i}] ({spec.name})"
        fn = validators.get(spec.name, key=f"generate.validators[{i}]")
        scores = [math.nan] * n
        if alive:
            sub = {col: [values[j] for j in alive] for col, values in batch.items()}
            verdicts = list(fn(ctx, sub, **spec.kwargs))
            if len(verdicts) != len(alive):
                raise UserError(f"{where} returned {len(verdicts)} verdicts for {len(alive)} samples")
            survivors = []
            for j, value in zip(alive, verdicts):
                v = as_verdict(value, where)
                if v.score is not None:
                    scores[j] = float(v.score)
                if v.keep:
                    survivors.append(j)
                else:
                    out["accepted"][j], out["rejected_by"][j], out["reason"][j] = False, key, v.reason or "rejected"
            alive = survivors
        out[f"score_{key}"] = scores
    return out


# ------------------------------------------------------------------------------------ built-ins

@functools.lru_cache(maxsize=32)
def compile_template(source: str) -> Any:
    """A Jinja2 template in an immutable sandbox (no access to Python internals, no mutation)."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise UserError(f"Jinja template {source!r}: {exc}") from None


def render_template(source: str, row: dict[str, Any], where: str) -> str:
    """Render a sandboxed template for one row; sandbox violations and unknown names are UserErrors."""
    import jinja2
    from jinja2.sandbox import SecurityError

    try:
        return compile_template(source).render(**row)
    except SecurityError as exc:
        raise UserError(f"{where}: template {source!r} is not allowed in the sandbox: {exc}") from None
    except jinja2.UndefinedError as exc:
        raise UserError(f"{where}: template {source!r}: {exc}; columns: {', '.join(row)}") from None


_TRUE, _FALSE = {"true", "yes"}, {"false", "no", "none", ""}


def jinja(ctx: "PhaseContext", batch: dict[str, list], template: str,
          threshold: float | None = None) -> list[Verdict]:
    """Keep a sample when the template renders to true, or to a number >= ``threshold`` (a number
    with no threshold keeps when non-zero). The row's columns are the template's variables, e.g.
    ``{{ text.startswith('user:') and 'assistant:' in text }}``."""
    n = len(next(iter(batch.values()))) if batch else 0
    verdicts = []
    for i in range(n):
        row = {col: values[i] for col, values in batch.items()}
        out = render_template(template, row, "generate.validators (jinja)").strip()
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


def _check_jinja(config: Any, template: str, threshold: float | None = None) -> None:
    compile_template(template)


jinja.check_config = _check_jinja  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=2)
def _load_classifier(path: str) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from collapsebench.backends.scoring import device

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(path).to(device()).eval()
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return model, tok


def classifier(ctx: "PhaseContext", batch: dict[str, list], model: str, label: int | str = 1,
               threshold: float = 0.5, field: str | None = None, batch_size: int = 32,
               max_length: int = 512) -> list[Verdict]:
    """Keep a sample when a sequence classifier's probability of ``label`` (index or name) is at
    least ``threshold``. ``model``: a local folder (relative to the config) or a hub name."""
    import torch

    local = ctx.config.resolve_path(model)
    clf, tok = _load_classifier(str(local) if local.exists() else model)
    if isinstance(label, str):
        names = dict(clf.config.label2id or {})
        if label not in names:
            raise UserError(f"generate.validators (classifier): label '{label}' not in {model}'s labels {list(names)}")
        index = int(names[label])
    else:
        index = int(label)
    if not 0 <= index < clf.config.num_labels:
        raise UserError(f"generate.validators (classifier): label {label} out of range for {clf.config.num_labels} labels")
    texts = batch[field or ctx.text_field]
    scores: list[float] = []
    dev = next(clf.parameters()).device
    for start in range(0, len(texts), batch_size):
        enc = tok(texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length,
                  return_tensors="pt").to(dev)
        with torch.no_grad():
            probs = torch.softmax(clf(**enc).logits.float(), dim=-1)[:, index]
        scores.extend(probs.cpu().tolist())
    return [Verdict(s >= threshold, "" if s >= threshold else f"{label} score {s:.3f} < {threshold}", s)
            for s in scores]


@functools.lru_cache(maxsize=2)
def _load_lm(path: str) -> tuple[Any, Any]:
    from collapsebench.backends.scoring import load_causal_lm

    return load_causal_lm(path)


def perplexity_tier(ctx: "PhaseContext", batch: dict[str, list], tier: str = "low", fraction: float = 1 / 3,
                    batch_size: int = 16) -> list[Verdict]:
    """Score each candidate's perplexity under this iteration's model and keep the ``low``, ``middle``
    or ``high`` ``fraction`` of the batch (one shard of candidates; at least one row).

    It keeps a fixed share of every shard, so set ``generate.oversample`` to ``1 / fraction`` (3) to
    meet the target in one round; give shards enough rows (``generate.shard_size``) for a ranking."""
    from collapsebench.backends.scoring import sequence_logprobs

    if tier not in ("low", "middle", "high"):
        raise UserError(f"generate.validators (perplexity_tier): tier must be low, middle or high, got '{tier}'")
    if not 0 < fraction <= 1:
        raise UserError(f"generate.validators (perplexity_tier): fraction must be in (0, 1], got {fraction}")
    texts = batch[ctx.text_field]
    if not texts:
        return []
    model, tok = _load_lm(str(ctx.model_dir()))
    total, count = sequence_logprobs(model, tok, texts, batch_size=batch_size)
    ppl = np.exp(-total / np.maximum(count, 1))
    n = len(texts)
    k = max(1, int(round(n * fraction)))
    order = np.argsort(ppl, kind="stable")
    start = {"low": 0, "middle": (n - k) // 2, "high": n - k}[tier]
    chosen = set(order[start : start + k].tolist())
    return [Verdict(i in chosen, "" if i in chosen else f"perplexity {ppl[i]:.4g} outside the {tier} tier",
                    float(ppl[i])) for i in range(n)]
