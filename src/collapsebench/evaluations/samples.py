"""Cheap statistics of the iteration's synthetic samples (text settings)."""

from __future__ import annotations

from typing import Any

import numpy as np

from collapsebench.api import PhaseContext


def sample_stats(ctx: PhaseContext) -> dict[str, Any]:
    """The samples' length in words (mean, std) and the fraction that are empty."""
    samples = ctx.samples()
    field = ctx.text_field
    if field not in samples.column_names:
        return {}
    lengths = []
    for batch in samples.select_columns([field]).iter(batch_size=10_000):
        lengths.append(np.fromiter((len(t.split()) for t in batch[field]), dtype=np.int64))
    words = np.concatenate(lengths) if lengths else np.zeros(0)
    return {"sample_words_mean": float(words.mean()) if words.size else 0.0,
            "sample_words_std": float(words.std()) if words.size else 0.0,
            "sample_empty_fraction": float((words == 0).mean()) if words.size else 0.0}
