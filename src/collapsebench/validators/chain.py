"""The validator chain: which generated samples enter S(k).

A validator is ``fn(ctx, batch, **kw) -> list[Verdict]``: ``batch`` is a dict of columns (``text``
(the config's text field), ``prompt``, ``parent``, ...) holding the candidates of one shard that
survived the validators before it, and the result has one verdict per row. A verdict is a
:class:`Verdict` (``keep``, a ``reason`` when dropped, an optional ``score`` stored in the sample's
``score_<validator>`` column), or, for short plug-ins, a ``bool`` (keep or drop) or a tuple
``(keep, reason)`` / ``(keep, reason, score)``.

``generate.validators`` is a chain: each validator sees only what the previous ones kept.

A validator registered with a ``pool`` selector (``perplexity_tier``: a ranking) decides over a
whole pool of candidates, not one shard: shard by shard it only scores (its verdicts' ``keep`` is
not read), then its selector, ``fn(ctx, scores, **kw) -> list[Verdict]``, decides once over the
scores of every candidate of the pool that reached it, and the rest of the chain goes on shard by
shard. A selector with a parameter ``tokens`` also receives each pool row's generated tokens
(``new_tokens``), so it can rank by tokens, not by count (``perplexity_tier``'s default). The
chain is cut into segments after each such validator (:func:`segments`); the quota loop
runs them over a round's shards (:mod:`collapsebench.generators.quota`), :func:`apply_chain` over
one batch (the batch is then the pool). So a ranking never depends on how candidates are sharded.
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from collapsebench.api import PhaseContext, Verdict
from collapsebench.config import Spec
from collapsebench.errors import UserError
from collapsebench.registry import validators


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


def validator_keys(specs: list[Spec]) -> list[str]:
    """Short distinct names for metrics and score columns: 'jinja', 'my_check', 'jinja_2', ..."""
    keys: list[str] = []
    for spec in specs:
        base = re.sub(r"\W+", "_", spec.name.split(":")[-1].split(".")[-1]).strip("_") or "validator"
        key, i = base, 2
        while key in keys:
            key, i = f"{base}_{i}", i + 1
        keys.append(key)
    return keys


@dataclass
class ChainState:
    """A batch's verdict columns (``accepted``, ``rejected_by``, ``reason``, ``score_<key>``) and
    the rows still alive, kept between the segments of the chain."""

    out: dict[str, list[Any]]
    alive: list[int]
    tokens: list[int] | None = None  # each row's generated tokens, for a pool selector that ranks by them


def start_chain(n: int, keys: list[str], tokens: list[int] | None = None) -> ChainState:
    out: dict[str, list[Any]] = {"accepted": [True] * n, "rejected_by": [""] * n, "reason": [""] * n}
    out.update({f"score_{key}": [math.nan] * n for key in keys})
    return ChainState(out, list(range(n)), None if tokens is None else list(tokens))


def pool_selector(spec: Spec) -> str | None:
    """The ``pool`` selector of a validator (``"module:function"``), or None."""
    return validators.entry(spec.name).pool


def segments(specs: list[Spec]) -> list[tuple[int, int]]:
    """[lo, hi) index ranges of the chain, each ending after a validator that decides over a pool."""
    cuts = [i + 1 for i, spec in enumerate(specs) if pool_selector(spec)]
    bounds = [0, *[c for c in cuts if c < len(specs)], len(specs)]
    return list(zip(bounds[:-1], bounds[1:])) if specs else []


def run_segment(ctx: PhaseContext, batch: dict[str, list], specs: list[Spec], keys: list[str], state: ChainState,
                lo: int, hi: int) -> None:
    """Run validators ``lo..hi-1`` over the rows of ``batch`` still alive in ``state``; a validator
    that decides over a pool only scores here."""
    out = state.out
    for i in range(lo, hi):
        spec, key = specs[i], keys[i]
        where = f"generate.validators[{i}] ({spec.name})"
        if not state.alive:
            continue
        sub = {col: [values[j] for j in state.alive] for col, values in batch.items()}
        verdicts = list(validators.call(spec.name, ctx, sub, key=f"generate.validators[{i}]", kwargs=spec.kwargs))
        if len(verdicts) != len(state.alive):
            raise UserError(f"{where} returned {len(verdicts)} verdicts for {len(state.alive)} samples")
        pooled = pool_selector(spec) is not None
        survivors = []
        for j, value in zip(state.alive, verdicts):
            v = as_verdict(value, where)
            if v.score is not None:
                out[f"score_{key}"][j] = float(v.score)
            if v.keep or pooled:
                survivors.append(j)
            else:
                out["accepted"][j], out["rejected_by"][j], out["reason"][j] = False, key, v.reason or "rejected"
        state.alive = survivors


def decide_pool(ctx: PhaseContext, spec: Spec, key: str, index: int, states: list[ChainState]) -> None:
    """The decision of a pooled validator over the scores of every row alive in ``states``."""
    from collapsebench.plugins import import_object

    where = f"generate.validators[{index}] ({spec.name})"
    selector = pool_selector(spec)
    assert selector is not None
    scores = [state.out[f"score_{key}"][j] for state in states for j in state.alive]
    if not scores:
        return
    kwargs = validators.check_kwargs(spec.name, spec.kwargs, key=f"generate.validators[{index}]")
    decide = import_object(selector, what=f"{where} pool")
    if "tokens" in inspect.signature(decide).parameters and all(state.tokens is not None for state in states):
        kwargs["tokens"] = [state.tokens[j] for state in states for j in state.alive]  # type: ignore[index]
    verdicts = [as_verdict(v, where) for v in decide(ctx, scores, **kwargs)]
    if len(verdicts) != len(scores):
        raise UserError(f"{where} decided {len(verdicts)} of a pool of {len(scores)} samples")
    it = iter(verdicts)
    for state in states:
        survivors = []
        for j in state.alive:
            v = next(it)
            if v.keep:
                survivors.append(j)
            else:
                state.out["accepted"][j], state.out["rejected_by"][j] = False, key
                state.out["reason"][j] = v.reason or "rejected"
        state.alive = survivors


def apply_chain(ctx: PhaseContext, batch: dict[str, list], specs: list[Spec],
                tokens: list[int] | None = None) -> dict[str, list]:
    """Run the chain over one batch (the pool of any validator that decides over one); return the
    columns ``accepted``, ``rejected_by``, ``reason`` and ``score_<key>`` (NaN where a validator gave
    no score or did not see the row). ``tokens``: each row's generated tokens."""
    n = len(next(iter(batch.values()))) if batch else 0
    keys = validator_keys(specs)
    state = start_chain(n, keys, tokens)
    for lo, hi in segments(specs):
        run_segment(ctx, batch, specs, keys, state, lo, hi)
        if pool_selector(specs[hi - 1]):
            decide_pool(ctx, specs[hi - 1], keys[hi - 1], hi - 1, [state])
    return state.out
