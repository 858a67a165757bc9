"""Failure rules: when a run counts as collapsed, and at which iteration (its time to failure).

A rule (:class:`collapsebench.config.FailureRule`, listed under ``stop_when:``) names a metric of
``metrics.jsonl`` and a threshold it must not cross::

    stop_when:
      - {metric: holdout_perplexity, above: 1.5, relative_to: first}       # 50% above iteration 1
      - {metric: knowledge_first_slice_accuracy, below: 0.75, stop: false}  # record only
      - {metric: distinct_2, below: 0.8, relative_to: metric, reference: real_distinct_2}
      - {metric: holdout_perplexity, above: 1.2, relative_to: run, reference: ../clean}

The quantity compared is the metric's value (``absolute``) or its ratio to a reference: the
metric's value at the first evaluated iteration (``first``), another metric of the same iteration
(``metric``, e.g. the real data's value computed the same way) or the same metric of another run
at the same iteration (``run``, e.g. the clean baseline). ``above`` fails on a quantity strictly
greater than the threshold, ``below`` on one strictly smaller. The time to failure is the first
iteration that fails; a run that never fails is censored at the last iteration the rule could be
evaluated at (``evaluated_to``). Iterations where the metric (or its reference) is missing or not
finite are skipped, never carried forward.

One function computes it for the driver (which ends a run at a crossing of a rule with ``stop:
true`` and records every rule's crossing in ``state.json``), for ``status`` and for the reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from collapsebench.config import Config, FailureRule
from collapsebench.errors import UserError
from collapsebench.io import digest
from collapsebench.journal import Crossing, FailureRecord
from collapsebench.layout import RunLayout

Row = Mapping[str, Any]


def describe(rule: FailureRule) -> str:
    """The rule in words, e.g. ``holdout_perplexity > 1.5 x iteration 1``."""
    if rule.name:
        return rule.name
    op, threshold = (">", rule.above) if rule.above is not None else ("<", rule.below)
    reference = {"absolute": "", "first": " x iteration 1", "metric": f" x {rule.reference}",
                 "run": f" x {rule.reference}"}[rule.relative_to]
    return f"{rule.metric} {op} {threshold:g}{reference}"


def _number(row: Row | None, key: str) -> float | None:
    value = None if row is None else row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _ratio(value: float, reference: float | None, rule: FailureRule, key: str, iteration: int) -> float | None:
    if reference is None:
        return None
    if reference <= 0:
        raise UserError(f"{key} ({describe(rule)}): a ratio needs a positive reference, but it is {reference:g} at "
                        f"iteration {iteration}; use an absolute threshold for this metric")
    return value / reference


def first_crossing(rule: FailureRule, rows: Sequence[Row], reference_rows: Sequence[Row] = (), *,
                   key: str = "stop_when") -> Crossing:
    """The first iteration of ``rows`` (metrics.jsonl rows, in order) at which ``rule`` fails.

    ``reference_rows``: the rows of the reference run (``relative_to: run``)."""
    by_iteration = {int(r["iteration"]): r for r in reference_rows}
    first: float | None = None
    evaluated_to = None
    for row in sorted(rows, key=lambda r: int(r["iteration"])):
        k = int(row["iteration"])
        value = _number(row, rule.metric)
        if value is None:
            continue
        if rule.relative_to == "first" and first is None:
            first = value
        reference = {"absolute": None, "first": first, "metric": _number(row, rule.reference or ""),
                     "run": _number(by_iteration.get(k), rule.metric)}[rule.relative_to]
        if rule.relative_to != "absolute" and reference is None:
            continue
        ratio = _ratio(value, reference, rule, key, k)
        quantity = value if ratio is None else ratio
        evaluated_to = k
        if (rule.above is not None and quantity > rule.above) or (rule.below is not None and quantity < rule.below):
            return Crossing(describe(rule), rule.metric, rule.stop, k, value, ratio, k)
    return Crossing(describe(rule), rule.metric, rule.stop, None, None, None, evaluated_to)


def crossings(config: Config, rows: Sequence[Row], load_rows: Callable[[str], Sequence[Row]]) -> list[Crossing]:
    """Every rule of ``config.stop_when`` on ``rows``; ``load_rows(path)`` reads a reference run."""
    out = []
    for i, rule in enumerate(config.stop_when):
        reference = load_rows(rule.reference or "") if rule.relative_to == "run" else ()
        out.append(first_crossing(rule, rows, reference, key=f"stop_when[{i}]"))
    return out


def reference_rows(config: Config, path: str) -> list[dict[str, Any]]:
    """The metrics rows of a reference run named in a rule (relative to the config file)."""
    layout = RunLayout(config.resolve_path(path))
    if not layout.exists():
        raise UserError(f"stop_when: reference run '{path}' ({layout.path}) is not a run directory")
    return layout.read_metrics()


def time_to_failure(run: RunLayout, config: Config, upto: int | None = None) -> list[Crossing]:
    """Every rule of the config on the run's metrics (up to iteration ``upto``)."""
    rows = [r for r in run.read_metrics() if upto is None or r["iteration"] <= upto]
    return crossings(config, rows, lambda path: reference_rows(config, path))


def rules_digest(config: Config) -> str:
    """Changes when the rules do: a run stopped under other rules may continue."""
    return digest([rule.model_dump(mode="json") for rule in config.stop_when])


def journal_entry(config: Config, found: Sequence[Crossing]) -> FailureRecord:
    """What the driver records under ``failure`` in ``state.json``."""
    crossed = [c for c in found if c.stop and c.iteration is not None]
    stopping = min(crossed, key=lambda c: c.iteration or 0) if crossed else None
    return FailureRecord(rules_digest=rules_digest(config), time_to_failure=list(found),
                         stopped_at=stopping.iteration if stopping else None,
                         stopped_by=stopping.rule if stopping else None)
