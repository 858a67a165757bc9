"""The validator chain: which generated samples enter S(k).

A validator is ``fn(ctx, batch, **kw) -> list[Verdict]``: ``batch`` is a dict of columns (``text``
(the config's text field), ``prompt``, ``parent``, ...) holding the candidates of one shard that
survived the validators before it, and the result has one verdict per row. A verdict is a
:class:`Verdict` (``keep``, a ``reason`` when dropped, an optional ``score`` stored in the sample's
``score_<validator>`` column), or, for short plug-ins, a ``bool`` (keep or drop) or a tuple
``(keep, reason)`` / ``(keep, reason, score)``.

``generate.validators`` is a chain: each validator sees only what the previous ones kept.
"""

from __future__ import annotations

import math
import re
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


def apply_chain(ctx: PhaseContext, batch: dict[str, list], specs: list[Spec]) -> dict[str, list]:
    """Run the chain over one shard; return the columns ``accepted``, ``rejected_by``, ``reason`` and
    ``score_<key>`` (NaN where a validator gave no score or did not see the row)."""
    n = len(next(iter(batch.values()))) if batch else 0
    out: dict[str, list] = {"accepted": [True] * n, "rejected_by": [""] * n, "reason": [""] * n}
    alive = list(range(n))
    for i, (spec, key) in enumerate(zip(specs, validator_keys(specs))):
        where = f"generate.validators[{i}] ({spec.name})"
        scores = [math.nan] * n
        if alive:
            sub = {col: [values[j] for j in alive] for col, values in batch.items()}
            verdicts = list(validators.call(spec.name, ctx, sub, key=f"generate.validators[{i}]", kwargs=spec.kwargs))
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
