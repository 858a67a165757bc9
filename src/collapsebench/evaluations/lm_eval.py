"""lm-evaluation-harness tasks on the iteration's model, run in-process.

Config example::

    evaluate:
      evaluations:
        - name: lm_eval
          tasks: [hellaswag, arc_easy]       # any task or group names lm-eval knows
          num_fewshot: 0
          batch_size: 16
          limit: 500                         # optional: documents per task
          include_path: ./my_tasks           # optional: folders with task YAML files
          model_args: {dtype: bfloat16}      # optional: passed to lm_eval's HFLM

Results are flattened into ``lm_eval/<task>/<metric>`` (``lm_eval/<task>/<metric>/<filter>`` for
filters other than ``none``). Calibration (see :mod:`collapsebench.evaluations.calibration`) gives
``lm_eval/<task>/ece``, ``.../confidence``, ``.../overconfidence``, ``.../calibration_items`` and
``.../ece_alert_level`` (with ``/<filter>`` as above):

* multiple-choice tasks: the per-sample log-likelihoods of the choices, normalised into choice
  probabilities; the confidence is the chosen choice's probability;
* generative tasks (``generate_until``, e.g. GSM8K, where the published ECE series is measured):
  the confidence of an answer is the probability of the extracted answer's tokens under the model
  (the Pythia mixing study's overconfidence gap is "E_x[max_y P(y|x)] - Accuracy": the probability
  of the answer given, by default the product of its tokens' probabilities, P(y|x) itself:
  ``generative_confidence: product``; ``geometric_mean`` takes their geometric mean, which does not
  fall with the answer's length), and it is correct when the sample's ``correct_metric``
  (``exact_match``) is 1. The answer is found at its last occurrence in the generated text and
  scored after BOS + the prompt + the generated text before it (:func:`generative_answer`); an
  answer the filter rewrote so that it is not in the text (GSM8K's ``[invalid]`` when no answer was
  given) has no probability: it is left out, counted in ``.../calibration_unscored``.

The full results go to ``lm_eval_results.json`` and the per-sample records to
``lm_eval_samples_<task>.jsonl`` in the evaluation folder. Needs the ``eval`` extra (``lm-eval``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from collapsebench.api import PhaseContext
from collapsebench.errors import UserError
from collapsebench.evaluations.calibration import (
    CRITICAL_RISE,
    WARNING_RISE,
    add_ece_alert,
    calibration_metrics,
    choice_probabilities,
    expected_calibration_error,
)


def flatten_results(results: dict[str, dict[str, Any]], prefix: str = "lm_eval") -> dict[str, float]:
    """``{task: {"acc,none": 0.5, ...}}`` -> ``{"lm_eval/task/acc": 0.5, ...}`` (numbers only)."""
    out = {}
    for task, values in results.items():
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            metric, _, filt = key.partition(",")
            name = f"{prefix}/{task}/{metric}" + (f"/{filt}" if filt and filt != "none" else "")
            out[name] = float(value)
    return out


def choice_loglikelihoods(sample: dict[str, Any]) -> tuple[list[float], int] | None:
    """(log-likelihood of each choice, index of the right one) of one multiple-choice sample, or None."""
    resps = sample.get("filtered_resps") or sample.get("resps")
    args = sample.get("arguments")
    if not resps or not args or len(resps) != len(args) or len(args) < 2:
        return None
    try:
        lls = [float(r[0] if isinstance(r, (list, tuple)) and not isinstance(r[0], (list, tuple)) else r[0][0])
               for r in resps]
        choices = [str(a[1]) for a in args]
    except (TypeError, IndexError, ValueError):
        return None
    target = sample.get("target")
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool) and 0 <= int(target) < len(choices):
        return lls, int(target)
    if isinstance(target, str):
        stripped = [c.strip() for c in choices]
        if target.strip() in stripped:
            return lls, stripped.index(target.strip())
        if target.strip().isdigit() and int(target) < len(choices):
            return lls, int(target)
    return None


def samples_calibration(samples: Sequence[dict[str, Any]], n_bins: int = 10) -> dict[str, float] | None:
    """ECE / overconfidence from lm-eval's logged multiple-choice samples (None if not multiple-choice)."""
    parsed = [p for p in (choice_loglikelihoods(s) for s in samples) if p is not None]
    if not parsed:
        return None
    probs = choice_probabilities([lls for lls, _ in parsed])
    m = calibration_metrics(probs, [t for _, t in parsed], n_bins)
    return {"ece": m["ece"], "overconfidence": m["overconfidence"], "confidence": m["confidence"],
            "calibration_items": float(len(parsed))}


def generative_answer(sample: dict[str, Any], correct_metric: str = "exact_match") -> tuple[str, str, bool] | None:
    """(scoring context, answer, correct) of one logged generative sample, or None when it is not
    one (no generated text, or no 0/1 ``correct_metric``); the answer is ``""`` when the extracted
    answer does not occur in the generated text. The context is the prompt and the generated text
    before the answer's last occurrence; whitespace before the answer goes with the answer, as a
    tokenizer that marks word starts generated it."""
    args: Any = sample.get("arguments")
    resps: Any = sample.get("resps")
    filtered: Any = sample.get("filtered_resps")
    try:
        prompt, kwargs = args[0][0], args[0][1]
        generated = resps[0][0] if isinstance(resps[0], (list, tuple)) else resps[0]
        answer = filtered[0] if isinstance(filtered, (list, tuple)) else filtered
        value = float(sample[correct_metric])
    except (TypeError, IndexError, KeyError, ValueError):
        return None
    if not (isinstance(kwargs, dict) and isinstance(generated, str) and isinstance(answer, str)) or value not in (0, 1):
        return None
    at = generated.rfind(answer) if answer else -1
    if at < 0:
        return prompt, "", value == 1
    before = generated[:at]
    space = len(before) - len(before.rstrip())
    return prompt + before[:len(before) - space], before[len(before) - space:] + answer, value == 1


def answer_confidence(logprob_sums: np.ndarray, token_counts: np.ndarray,
                      how: Literal["product", "geometric_mean"] = "product") -> np.ndarray:
    """An answer's probability from its tokens' log-probabilities: their product exp(sum), or their
    geometric mean exp(sum / tokens)."""
    sums = np.asarray(logprob_sums, dtype=np.float64)
    return np.exp(sums / np.maximum(token_counts, 1) if how == "geometric_mean" else sums)


def generative_calibration(ctx: PhaseContext, samples: Sequence[dict[str, Any]], model: str, *, n_bins: int = 10,
                           how: Literal["product", "geometric_mean"] = "product", correct_metric: str = "exact_match",
                           batch_size: int = 16) -> dict[str, float] | None:
    """Accuracy, confidence, ECE and overconfidence of the answers of logged generative samples
    (None if there are none), each answer scored by ``model`` (see the module docstring)."""
    from collapsebench.models.loading import cached_causal_lm
    from collapsebench.models.scoring import continuation_scores

    parsed = [p for p in (generative_answer(s, correct_metric) for s in samples) if p is not None]
    if not parsed:
        return None
    scored = [p for p in parsed if p[1]]
    out = {"calibration_items": float(len(scored)), "calibration_unscored": float(len(parsed) - len(scored))}
    if not scored:
        return {**out, "ece": math.nan, "overconfidence": math.nan, "confidence": math.nan}
    lm, tok = cached_causal_lm(ctx, model)
    sums, counts = continuation_scores(lm, tok, [c for c, _, _ in scored], [a for _, a, _ in scored],
                                       batch_size=batch_size)
    conf = answer_confidence(sums, counts, how)
    correct = np.array([ok for _, _, ok in scored], dtype=bool)
    return {**out, "ece": expected_calibration_error(conf, correct, n_bins),
            "overconfidence": float(conf.mean() - correct.mean()), "confidence": float(conf.mean())}


def task_manager(ctx: PhaseContext, manager_class: Any, task_list: list[str], include_path: str | list[str] | None,
                 include_defaults: bool) -> Any:
    """lm-eval's task index over ``include_path`` (folders relative to the config) and, unless
    ``include_defaults`` is false, its own tasks; every task of ``task_list`` must be in it."""
    if not task_list:
        raise UserError("evaluation 'lm_eval': 'tasks' is empty")
    paths = [include_path] if isinstance(include_path, str) else list(include_path or [])
    resolved = [str(ctx.config.resolve_path(p)) for p in paths]
    for given, path in zip(paths, resolved):
        if not os.path.isdir(path):
            raise UserError(f"evaluation 'lm_eval': include_path '{given}' is not a folder ({path})")
    if not include_defaults and not resolved:
        raise UserError("evaluation 'lm_eval': include_defaults is false but no include_path is given")
    manager = manager_class(include_path=resolved or None, include_defaults=include_defaults)
    unknown = [t for t in task_list if t not in manager.all_tasks]
    if unknown:
        raise UserError(f"evaluation 'lm_eval': unknown task(s) {', '.join(unknown)} "
                        f"(add their folder with include_path)")
    return manager


def lm_eval(ctx: PhaseContext, tasks: list[str] | str, *, num_fewshot: int | None = None, batch_size: int | str = 8,
            limit: int | float | None = None, include_path: str | list[str] | None = None,
            model_args: dict[str, Any] | None = None, model: str | None = None, device: str | None = None,
            apply_chat_template: bool = False, bootstrap_iters: int = 1000, log_samples: bool = True,
            include_defaults: bool = True, n_bins: int = 10,
            generative_confidence: Literal["product", "geometric_mean"] = "product",
            correct_metric: str = "exact_match", baseline: str | None = None,
            warning_rise: float = WARNING_RISE, critical_rise: float = CRITICAL_RISE) -> dict[str, float]:
    """Evaluation: run lm-evaluation-harness ``tasks`` on the iteration's model (or ``model``).

    ``include_defaults: false`` indexes only the ``include_path`` folders (faster start-up when
    every task is local). ``generative_confidence`` and ``correct_metric``: the calibration of
    generative tasks (module docstring).
    """
    try:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise UserError("evaluation 'lm_eval' needs lm-evaluation-harness: pip install 'collapsebench[eval]'") from None

    task_list = [tasks] if isinstance(tasks, str) else list(tasks)
    manager = task_manager(ctx, TaskManager, task_list, include_path, include_defaults)
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    model_path = str(model or ctx.model_dir())
    lm = HFLM(pretrained=model_path, batch_size=batch_size, device=device, **(model_args or {}))
    seed = int(ctx.seed) % (2**31)
    res = simple_evaluate(model=lm, tasks=task_list, num_fewshot=num_fewshot, limit=limit, task_manager=manager,
                          log_samples=log_samples, bootstrap_iters=bootstrap_iters,
                          apply_chat_template=apply_chat_template, random_seed=seed, numpy_random_seed=seed,
                          torch_random_seed=seed, fewshot_random_seed=seed)
    if res is None:  # non-zero rank in a distributed run
        return {}
    (ctx.out_dir / "lm_eval_results.json").write_text(json.dumps(
        {k: res.get(k) for k in ("results", "groups", "configs", "versions", "n-shot", "n-samples")},
        indent=1, default=str))
    metrics = flatten_results(res.get("results", {}))
    for task, samples in (res.get("samples") or {}).items():
        with (ctx.out_dir / f"lm_eval_samples_{task}.jsonl").open("w", encoding="utf-8") as fh:
            for s in samples:
                fh.write(json.dumps(s, default=str) + "\n")
        by_filter: dict[str, list[dict[str, Any]]] = {}
        for s in samples:
            by_filter.setdefault(str(s.get("filter", "none")), []).append(s)
        for filt, group in by_filter.items():
            cal = samples_calibration(group, n_bins) or generative_calibration(
                ctx, group, model_path, n_bins=n_bins, how=generative_confidence, correct_metric=correct_metric)
            if cal is None or math.isnan(cal["ece"]):
                continue
            suffix = f"/{filt}" if filt != "none" else ""
            metrics.update({f"lm_eval/{task}/{k}{suffix}": v for k, v in cal.items()})
            add_ece_alert(ctx, metrics, f"lm_eval/{task}/ece{suffix}", baseline=baseline, warning=warning_rise,
                          critical=critical_rise)
    return metrics
