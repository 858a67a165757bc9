"""``truncate_likely``: drop the most likely synthetic rows before fitting (a mitigation of collapse).

Recursive fitting loses the tails first; discarding the samples that the generating model found
most likely (the truncation argument for truncated cross-entropy) keeps the tails in the data.
Real rows are never touched. A synthetic row of generation ``g`` is scored under the model
trained at iteration ``g``.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from collapsebench.api import Dataset, PhaseContext
from collapsebench.errors import UserError
from collapsebench.toy.common import VECTOR_FIELD, list_array_to_matrix, log_likelihood, read_meta

COLUMNS = ["origin", "generation", VECTOR_FIELD]


def _per_generation(batch: Any, score: Any) -> tuple[np.ndarray, np.ndarray]:
    """``score(generation, x)`` for the synthetic rows of a batch; NaN for real rows. Also the synthetic mask."""
    origin, generation, x = (batch[c] for c in COLUMNS)
    synthetic = np.asarray(origin.to_numpy(zero_copy_only=False) == "synthetic", dtype=bool)
    gens = np.asarray(generation.to_numpy(zero_copy_only=False))
    values = np.full(len(synthetic), np.nan)
    if synthetic.any():
        matrix = list_array_to_matrix(x, what="dataset to truncate")
        for g in np.unique(gens[synthetic]):
            rows = synthetic & (gens == g)
            values[rows] = score(int(g), matrix[rows])
    return values, synthetic


def truncate_likely(ctx: PhaseContext, dataset: Dataset, *, keep_below_percentile: float | None = None,
                    min_sigmas: float | None = None, batch_size: int = 10_000) -> Dataset:
    """Drop synthetic rows that their generating model found most likely.

    ``keep_below_percentile=p``: per generation, drop the synthetic rows whose log-likelihood is above
    the p-th percentile of that generation's rows in this dataset (p=90 drops the 10% most likely).
    ``min_sigmas=a`` (Gaussian models): keep only rows at least ``a`` standard deviations from the
    fitted mean (Mahalanobis distance in several dimensions).
    """
    if (keep_below_percentile is None) == (min_sigmas is None):
        raise UserError("curate.preprocess truncate_likely: give exactly one of keep_below_percentile, min_sigmas")
    if keep_below_percentile is not None and not 0 < keep_below_percentile <= 100:
        raise UserError(f"curate.preprocess truncate_likely: keep_below_percentile must be in (0, 100], "
                        f"got {keep_below_percentile}")
    missing = [c for c in COLUMNS if c not in dataset.column_names]
    if missing:
        raise UserError(f"curate.preprocess truncate_likely: the dataset has no column(s) {missing}")
    if len(dataset) == 0:
        return dataset

    if min_sigmas is not None:
        from collapsebench.toy.gaussian import mahalanobis

        def distance(g: int, x: np.ndarray) -> np.ndarray:
            model_dir = ctx.model_dir(g)
            if read_meta(model_dir)["kind"] != "gaussian":
                raise UserError(f"curate.preprocess truncate_likely: min_sigmas needs Gaussian models; "
                                f"{model_dir} holds another kind (use keep_below_percentile)")
            return mahalanobis(model_dir, x)

        def keep_far(*columns: Any) -> list[bool]:
            values, synthetic = _per_generation(dict(zip(COLUMNS, columns)), distance)
            return (~synthetic | (values >= min_sigmas)).tolist()

        return dataset.with_format("arrow").filter(keep_far, batched=True, batch_size=batch_size,
                                                   input_columns=COLUMNS, **_cache(ctx)).with_format(None)

    assert keep_below_percentile is not None
    # Percentile mode: one pass scores the rows, a second keeps those at or below their generation's threshold.
    loglik = np.full(len(dataset), np.nan)
    gens = np.zeros(len(dataset), dtype=np.int64)
    start = 0
    for batch in dataset.select_columns(COLUMNS).with_format("arrow").iter(batch_size=batch_size):
        values, _ = _per_generation(batch, lambda g, x: log_likelihood(ctx.model_dir(g), x))
        loglik[start:start + len(values)] = values
        gens[start:start + len(values)] = np.asarray(batch["generation"])
        start += len(values)
    synthetic = ~np.isnan(loglik)
    threshold = np.full(len(dataset), np.inf)
    for g in np.unique(gens[synthetic]):
        rows = synthetic & (gens == g)
        threshold[rows] = np.percentile(loglik[rows], keep_below_percentile)
    keep = ~synthetic | (loglik <= threshold)

    def keep_rows(_: Any, indices: list[int]) -> list[bool]:
        return keep[np.asarray(indices, dtype=np.int64)].tolist()

    return dataset.with_format("arrow").filter(keep_rows, batched=True, batch_size=batch_size, with_indices=True,
                                               input_columns=["generation"], **_cache(ctx)).with_format(None)


def _cache(ctx: PhaseContext) -> dict[str, Any]:
    """Write filter indices into the phase folder, not next to the source dataset."""
    return {"cache_file_name": str(ctx.cache_dir / f"truncate-{uuid.uuid4().hex}.arrow")}
