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
filters other than ``none``). For multiple-choice tasks the per-sample log-likelihoods of the
choices are normalised into choice probabilities and give ``lm_eval/<task>/ece``,
``.../overconfidence`` and ``.../ece_alert_level`` (see :mod:`collapsebench.evaluations.calibration`).
The full results go to ``lm_eval_results.json`` and the per-sample records to
``lm_eval_samples_<task>.jsonl`` in the evaluation folder. Needs the ``eval`` extra (``lm-eval``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from collapsebench.api import PhaseContext
from collapsebench.errors import UserError
from collapsebench.evaluations.calibration import (
    CRITICAL_RISE,
    WARNING_RISE,
    add_ece_alert,
    calibration_metrics,
    choice_probabilities,
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


def lm_eval(ctx: PhaseContext, tasks: list[str] | str, *, num_fewshot: int | None = None, batch_size: int | str = 8,
            limit: int | float | None = None, include_path: str | list[str] | None = None,
            model_args: dict[str, Any] | None = None, model: str | None = None, device: str | None = None,
            apply_chat_template: bool = False, bootstrap_iters: int = 1000, log_samples: bool = True,
            include_defaults: bool = True, n_bins: int = 10, baseline: str | None = None,
            warning_rise: float = WARNING_RISE, critical_rise: float = CRITICAL_RISE) -> dict[str, float]:
    """Evaluation: run lm-evaluation-harness ``tasks`` on the iteration's model (or ``model``).

    ``include_defaults: false`` indexes only the ``include_path`` folders (faster start-up when
    every task is local).
    """
    try:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise UserError("evaluation 'lm_eval' needs lm-evaluation-harness: pip install 'collapsebench[eval]'") from None

    task_list = [tasks] if isinstance(tasks, str) else list(tasks)
    if not task_list:
        raise UserError("evaluation 'lm_eval': 'tasks' is empty")
    paths = [include_path] if isinstance(include_path, str) else list(include_path or [])
    resolved = [str(ctx.config.resolve_path(p)) for p in paths]
    for given, path in zip(paths, resolved):
        if not os.path.isdir(path):
            raise UserError(f"evaluation 'lm_eval': include_path '{given}' is not a folder ({path})")
    if not include_defaults and not resolved:
        raise UserError("evaluation 'lm_eval': include_defaults is false but no include_path is given")
    manager = TaskManager(include_path=resolved or None, include_defaults=include_defaults)
    unknown = [t for t in task_list if t not in manager.all_tasks]
    if unknown:
        raise UserError(f"evaluation 'lm_eval': unknown task(s) {', '.join(unknown)} "
                        f"(add their folder with include_path)")
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    lm = HFLM(pretrained=str(model or ctx.model_dir()), batch_size=batch_size, device=device, **(model_args or {}))
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
        cal = samples_calibration(samples, n_bins)
        if cal is not None and not math.isnan(cal["ece"]):
            metrics.update({f"lm_eval/{task}/{k}": v for k, v in cal.items()})
            add_ece_alert(ctx, metrics, f"lm_eval/{task}/ece", baseline=baseline, warning=warning_rise,
                          critical=critical_rise)
    return metrics
