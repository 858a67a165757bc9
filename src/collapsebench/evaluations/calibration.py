"""Calibration of multiple-choice answers: expected calibration error, overconfidence, early warning.

For an item with choices c_1..c_m, the model's score of each choice is log P(c_i | context); the
choice probabilities are these scores normalised over the choices (a softmax). The prediction is
the most probable choice, its probability is the *confidence*. With 10 equal-width confidence
bins B_1..B_10 over [0, 1],

    ECE            = sum_b |B_b|/n * |accuracy(B_b) - mean confidence(B_b)|
    overconfidence = mean confidence - accuracy          (> 0: the model is overconfident)

Early warning (the published rule): ECE that rises by more than 50% over the clean baseline's is a
``warning``, by more than 100% ``critical`` (both thresholds configurable). The baseline is the run
of the same setting without synthetic data (``baseline``: its run directory, or a folder of its
runs, one per seed): each iteration is compared with the same iteration of that run (and of the run
with the same seed, when the baseline has several), and ``<key>_baseline``, ``<key>_rise`` and the
level go into the metrics. Without a baseline the run's own first iteration stands in for it
(:func:`ece_alert`), which only sees a rise within the run. The level is a number (0 ok, 1
warning, 2 critical; NaN when the baseline has not evaluated the iteration yet) so plots and
``status`` can read it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from collapsebench.api import Model, PhaseContext, Tokenizer
from collapsebench.errors import UserError
from collapsebench.models.loading import cached_causal_lm
from collapsebench.models.scoring import continuation_logprobs

ALERT_LEVELS = {"ok": 0, "warning": 1, "critical": 2}
WARNING_RISE = 0.5
CRITICAL_RISE = 1.0


def choice_probabilities(logprobs: Sequence[Sequence[float] | np.ndarray]) -> list[np.ndarray]:
    """Softmax of each item's choice log-probabilities (items may have different numbers of choices)."""
    out = []
    for row in logprobs:
        x = np.asarray(row, dtype=np.float64)
        x = np.exp(x - x.max())
        out.append(x / x.sum())
    return out


def confidence_and_correct(probs: Sequence[np.ndarray], answers: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per item: the probability of the predicted (most probable) choice and whether it is the answer."""
    conf = np.array([float(p.max()) for p in probs], dtype=np.float64)
    correct = np.array([int(np.argmax(p)) == int(a) for p, a in zip(probs, answers)], dtype=bool)
    return conf, correct


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> float:
    """ECE with ``n_bins`` equal-width bins over [0, 1] (confidence 1.0 falls into the last bin)."""
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    if conf.size == 0:
        return math.nan
    bins = np.clip(np.floor(conf * n_bins).astype(int), 0, n_bins - 1)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    hit_sum = np.bincount(bins, weights=hit, minlength=n_bins)
    return float(np.abs(hit_sum - conf_sum).sum() / conf.size)


def calibration_metrics(probs: Sequence[np.ndarray], answers: Sequence[int], n_bins: int = 10) -> dict[str, float]:
    """Accuracy, mean confidence, ECE and overconfidence gap of normalised choice probabilities."""
    conf, correct = confidence_and_correct(probs, answers)
    if conf.size == 0:
        return {"accuracy": math.nan, "confidence": math.nan, "ece": math.nan, "overconfidence": math.nan}
    accuracy = float(correct.mean())
    mean_conf = float(conf.mean())
    return {
        "accuracy": accuracy,
        "confidence": mean_conf,
        "ece": expected_calibration_error(conf, correct, n_bins),
        "overconfidence": mean_conf - accuracy,
    }


def rise_alert(reference: float, value: float, warning: float = WARNING_RISE, critical: float = CRITICAL_RISE) -> str:
    """``ok`` / ``warning`` / ``critical`` for ``value``'s relative rise over ``reference`` (a
    reference of zero makes any positive value critical)."""
    if reference <= 0:
        return "critical" if value > 0 else "ok"
    rise = (value - reference) / reference
    if rise > critical:
        return "critical"
    if rise > warning:
        return "warning"
    return "ok"


def ece_alert(ece_series: Sequence[float], warning: float = WARNING_RISE, critical: float = CRITICAL_RISE) -> str:
    """``ok`` / ``warning`` / ``critical`` for the latest ECE relative to the first one (the stand-in
    for a baseline run). NaN values are ignored; with fewer than two values the answer is ``ok``."""
    values = [float(v) for v in ece_series if v is not None and not math.isnan(float(v))]
    if len(values) < 2:
        return "ok"
    return rise_alert(values[0], values[-1], warning, critical)


def baseline_run(ctx: PhaseContext, baseline: str) -> Path:
    """The baseline's run directory: ``baseline`` itself, or, in a folder of runs, the run with this
    run's seed (the only one when there is one)."""
    from collapsebench.layout import RunLayout

    path = ctx.config.resolve_path(baseline)
    if (path / "config.yaml").is_file():
        return path
    runs = sorted(p.parent for p in path.glob("*/config.yaml")) if path.is_dir() else []
    if not runs:
        raise UserError(f"baseline: {path} is neither a run directory nor a folder of run directories")
    seeds = {run: RunLayout(run).load_config().seed for run in runs}
    same = [run for run, seed in seeds.items() if seed == ctx.config.seed]
    if same:
        return same[0]
    if len(runs) == 1:
        return runs[0]
    raise UserError(f"baseline: no run of {path} has this run's seed {ctx.config.seed} (seeds: "
                    f"{sorted(set(seeds.values()))})")


def add_ece_alert(ctx: PhaseContext, metrics: dict[str, float], ece_key: str, *, baseline: str | None = None,
                  warning: float = WARNING_RISE, critical: float = CRITICAL_RISE) -> dict[str, float]:
    """Add ``<ece_key>_alert_level`` (0/1/2): against the same iteration of the ``baseline`` run (with
    ``<ece_key>_baseline`` and ``<ece_key>_rise``), or, without one, against this run's first
    iteration (earlier ``metrics.jsonl`` rows); see the module docstring."""
    from collapsebench.evaluations.common import earlier_metrics

    value = metrics[ece_key]
    if baseline is None:
        history = [row.get(ece_key) for row in earlier_metrics(ctx.run_dir, ctx.iteration)]
        level = ece_alert([v for v in history if isinstance(v, (int, float))] + [value], warning, critical)
        metrics[f"{ece_key}_alert_level"] = float(ALERT_LEVELS[level])
        return metrics
    run = baseline_run(ctx, baseline)
    rows = {row.get("iteration"): row for row in earlier_metrics(run, ctx.iteration + 1)}
    reference = rows.get(ctx.iteration, {}).get(ece_key)
    if not isinstance(reference, (int, float)) or math.isnan(reference) or value is None or math.isnan(value):
        ctx.log.warning("ECE alert: the baseline %s has no %s at iteration %d yet", run, ece_key, ctx.iteration)
        metrics.update({f"{ece_key}_baseline": math.nan, f"{ece_key}_rise": math.nan,
                        f"{ece_key}_alert_level": math.nan})
        return metrics
    metrics[f"{ece_key}_baseline"] = float(reference)
    metrics[f"{ece_key}_rise"] = (value - reference) / reference if reference > 0 else math.inf
    metrics[f"{ece_key}_alert_level"] = float(ALERT_LEVELS[rise_alert(reference, value, warning, critical)])
    return metrics


# ------------------------------------------------------------------------------- model scoring


def score_choices(model: Model, tokenizer: Tokenizer, contexts: Sequence[str], choices: Sequence[Sequence[str]],
                  *, batch_size: int = 16) -> list[np.ndarray]:
    """log P(choice | context) of every choice of every item (one array per item)."""
    flat_ctx = [c for c, opts in zip(contexts, choices) for _ in opts]
    flat_opt = [o for opts in choices for o in opts]
    flat = np.asarray(continuation_logprobs(model, tokenizer, flat_ctx, flat_opt, batch_size=batch_size))
    out, start = [], 0
    for opts in choices:
        out.append(flat[start:start + len(opts)])
        start += len(opts)
    return out


def calibration(ctx: PhaseContext, path: str, *, prefix: str = "calibration", batch_size: int = 16,
                n_bins: int = 10, model: str | None = None, baseline: str | None = None,
                warning_rise: float = WARNING_RISE, critical_rise: float = CRITICAL_RISE) -> dict[str, float]:
    """Evaluation: calibration of the iteration's model on a multiple-choice JSONL file.

    Each line: ``{"context": str, "choices": [str, ...], "answer": int}``. Writes
    ``<prefix>_items.jsonl`` to ``ctx.out_dir``; returns ``<prefix>_accuracy``, ``_confidence``,
    ``_ece``, ``_overconfidence`` and ``_ece_alert_level`` (against the ``baseline`` run, with
    ``_ece_baseline`` and ``_ece_rise``, when given; rises over ``warning_rise`` / ``critical_rise``).
    """
    from collapsebench.evaluations.common import read_jsonl, write_jsonl

    file = ctx.config.resolve_path(path)
    items = read_jsonl(file, {"context": str, "choices": list, "answer": int})
    for i, item in enumerate(items, 1):
        if len(item["choices"]) < 2 or not 0 <= item["answer"] < len(item["choices"]):
            raise UserError(f"{file}, item {i}: needs at least two choices and 0 <= answer < number of choices")
    lm, tok = cached_causal_lm(ctx, model or ctx.model_dir())
    scores = score_choices(lm, tok, [it["context"] for it in items], [it["choices"] for it in items],
                           batch_size=batch_size)
    probs = choice_probabilities(scores)
    answers = [it["answer"] for it in items]
    write_jsonl(ctx.out_dir / f"{prefix}_items.jsonl", (
        {"context": it["context"], "answer": it["answer"], "logprobs": s.tolist(), "probs": p.tolist(),
         "predicted": int(np.argmax(p)), "correct": int(np.argmax(p)) == it["answer"]}
        for it, s, p in zip(items, scores, probs)))
    metrics = {f"{prefix}_{k}": v for k, v in calibration_metrics(probs, answers, n_bins).items()}
    return add_ece_alert(ctx, metrics, f"{prefix}_ece", baseline=baseline, warning=warning_rise, critical=critical_rise)
