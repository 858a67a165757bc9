"""Knowledge retention: does the model still prefer the true continuation of a fact?

An item is ``{"context": str, "true": str, "false": str, "slice": str (optional)}``. The model
answers it correctly when log P(true | context) > log P(false | context), the summed
log-probability of each continuation's tokens, as the published KR-test scores it ("We compute the
log probability of the model for two sequences: Context + Factually correct completion, Context +
Factually incorrect completion"). ``score: mean`` compares the mean per-token log-probabilities
instead (length-normalised): a false continuation with fewer tokens than the true one no longer
wins by being short. Reported: accuracy overall, per slice and on the first slice (chance is 0.5),
and calibration (ECE, overconfidence) of the two-way normalised probabilities softmax(score(true),
score(false)).

The items come from a JSON-lines file (``path``) or are built from the run's real training data by
an item builder (``items``: the ``item_builders`` registry): ``kr_test``, the published test (a
true sentence of a paragraph against the same sentence with one fact changed,
:mod:`collapsebench.evaluations.kr_test`); ``next_mention``, the paragraph up to a name, number or
date against a same-type mention from another paragraph; ``cloze`` (see
:mod:`collapsebench.evaluations.knowledge_items`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from collapsebench.api import PhaseContext
from collapsebench.errors import UserError
from collapsebench.evaluations.calibration import CRITICAL_RISE, WARNING_RISE, add_ece_alert, expected_calibration_error
from collapsebench.models.loading import cached_causal_lm
from collapsebench.models.scoring import continuation_scores

# ------------------------------------------------------------------------------------ metrics


def knowledge_metrics(lp_true: np.ndarray, lp_false: np.ndarray, slices: Sequence[str] | None = None,
                      *, prefix: str = "knowledge", n_bins: int = 10) -> dict[str, float]:
    """Accuracy (overall, per slice, and on the first slice in the items' order), ECE and
    overconfidence from paired log-probabilities."""
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
        if len(labels):
            out[f"{prefix}_accuracy_first_slice"] = out[f"{prefix}_accuracy/{labels[0]}"]
    return out


def knowledge(ctx: PhaseContext, path: str | None = None, *, items: str | dict[str, Any] | None = None,
              prefix: str = "knowledge", batch_size: int = 16, n_bins: int = 10, model: str | None = None,
              score: Literal["sum", "mean"] = "sum", baseline: str | None = None, warning_rise: float = WARNING_RISE,
              critical_rise: float = CRITICAL_RISE) -> dict[str, float]:
    """Evaluation: knowledge retention of the iteration's model (or ``model``) on the items of a
    JSON-lines file (``path``) or of an item builder over the real training data (``items``: a
    name or ``{name: ..., <kwargs>}`` of the ``item_builders`` registry, e.g. ``{name: kr_test,
    slices: parts}``). ``score``: ``sum`` (summed log-probability of the continuation's tokens, the
    published scoring) or ``mean`` (per token). Writes ``<prefix>_items.jsonl`` (per-item
    log-probabilities, token counts and verdicts) to ``ctx.out_dir``; the ECE alert compares with
    the ``baseline`` run when given."""
    from collapsebench.config import Spec
    from collapsebench.evaluations.common import read_jsonl, write_jsonl
    from collapsebench.registry import item_builders

    if (path is None) == (items is None):
        raise UserError("knowledge: give path or items (one of them): an item file, or an item builder")
    if path is not None:
        rows = read_jsonl(ctx.config.resolve_path(path), {"context": str, "true": str, "false": str})
    else:
        spec = Spec.model_validate(items)
        rows = list(item_builders.call(spec.name, ctx, key="knowledge.items", kwargs=spec.kwargs))
        if not rows:
            raise UserError(f"knowledge.items: the item builder '{spec.name}' found nothing to ask about")
    lm, tok = cached_causal_lm(ctx, model or ctx.model_dir())
    contexts = [it["context"] for it in rows]
    sums, counts = continuation_scores(lm, tok, contexts + contexts,
                                       [it["true"] for it in rows] + [it["false"] for it in rows],
                                       batch_size=batch_size)
    lp = sums / np.maximum(counts, 1) if score == "mean" else sums.astype(np.float64)
    lp_true, lp_false = lp[: len(rows)], lp[len(rows):]
    has_slices = any("slice" in it for it in rows)
    slices = [str(it.get("slice", "default")) for it in rows] if has_slices else None
    write_jsonl(ctx.out_dir / f"{prefix}_items.jsonl", (
        {**it, "logprob_true": float(st), "logprob_false": float(sf), "tokens_true": int(nt), "tokens_false": int(nf),
         "correct": bool(t > f)}
        for it, st, sf, nt, nf, t, f in zip(rows, sums[: len(rows)], sums[len(rows):], counts[: len(rows)],
                                             counts[len(rows):], lp_true, lp_false)))
    metrics = knowledge_metrics(lp_true, lp_false, slices, prefix=prefix, n_bins=n_bins)
    return add_ece_alert(ctx, metrics, f"{prefix}_ece", baseline=baseline, warning=warning_rise, critical=critical_rise)
