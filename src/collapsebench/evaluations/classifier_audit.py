"""An audit of samples by a sequence classifier: the same classifier a ``classifier`` validator
filters with, as a score of each iteration's samples and of the real held-out documents.

Quality filters are judged by what they let through: a classifier whose scores stay high over
iterations while other measures (an LLM judge, held-out perplexity) fall is being satisfied, not
obeyed. Putting the filter's own score next to those measures shows it. The scoring is the
validator's (:func:`collapsebench.validators.builtin.classifier`: the head read from the model, a
raw score for a one-output regression head), so the audit and the filter cannot disagree on what
a score is.

    - {name: classifier_score, model: HuggingFaceTB/finemath-classifier, threshold: 3.5, n_samples: 1000}
"""

from __future__ import annotations

import math

import numpy as np

from collapsebench.api import PhaseContext
from collapsebench.config import Config


def _scores(ctx: PhaseContext, texts: list[str], kwargs: dict[str, object]) -> np.ndarray:
    from collapsebench.validators.builtin import classifier

    if not texts:
        return np.zeros(0)
    return np.array([float(v.score) for v in classifier(ctx, {"text": texts}, **kwargs)])  # type: ignore[arg-type]


def classifier_score(ctx: PhaseContext, model: str, threshold: float | None = None, n_samples: int = 1000,
                     head: str | None = None, label: int | str = 1, batch_size: int = 32, max_length: int = 512,
                     prefix: str = "classifier", include_real: bool = True) -> dict[str, float]:
    """Evaluation: the classifier's mean score of a seeded subsample of ``n_samples`` of the
    iteration's samples (``<prefix>_mean``), the share at or above ``threshold``
    (``<prefix>_pass_rate``; for a regression head ``threshold`` is required, as in the validator),
    and the same for as many real held-out documents (``real_<prefix>_*``). Per-sample scores go to
    ``<prefix>_scores.jsonl``."""
    from collapsebench.evaluations.common import require_column, write_jsonl

    kwargs: dict[str, object] = {"model": model, "threshold": threshold, "head": head, "label": label,
                                 "batch_size": batch_size, "max_length": max_length}
    rng = np.random.default_rng(ctx.seed)
    out: dict[str, float] = {}
    rows = []
    sources = [("", ctx.samples())] + ([("real_", ctx.holdout())] if include_real else [])
    for tag, data in sources:
        require_column(data, ctx.text_field, what="real holdout" if tag else "samples")
        picked = sorted(rng.choice(len(data), size=min(n_samples, len(data)), replace=False).tolist())
        texts = [str(t) for t in data.select(picked)[ctx.text_field]]
        scores = _scores(ctx, texts, kwargs)
        cut = 0.5 if threshold is None else threshold
        out[f"{tag}{prefix}_mean"] = float(scores.mean()) if scores.size else math.nan
        out[f"{tag}{prefix}_pass_rate"] = float((scores >= cut).mean()) if scores.size else math.nan
        out[f"{tag}{prefix}_n"] = float(scores.size)
        rows += [{"source": "real" if tag else "synthetic", "text": t, "score": float(s)} for t, s in zip(texts, scores)]
    write_jsonl(ctx.out_dir / f"{prefix}_scores.jsonl", rows)
    return out


def preflight(config: Config, kwargs: dict[str, object]) -> list[str]:
    """The classifier, when it is a hub name not in the local cache: ``needs download``."""
    from collapsebench.sources.files import local_or_hub

    return local_or_hub(config, str(kwargs["model"]), "evaluate.evaluations (classifier_score).model")
