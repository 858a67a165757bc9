"""``truncate_likely``: drop the most likely synthetic rows before fitting (a mitigation of collapse).

Recursive fitting loses the tails first; discarding the samples that the generating model found
most likely (the truncation argument for truncated cross-entropy) keeps the tails in the data.
Real rows are never touched. A synthetic row of generation ``g`` is scored under the model
trained at iteration ``g``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from collapsebench import arrow_numpy
from collapsebench.api import Dataset, PhaseContext
from collapsebench.errors import UserError
from collapsebench.toy.common import VECTOR_FIELD, list_array_to_matrix, log_likelihood, read_meta

COLUMNS = ["origin", "generation", VECTOR_FIELD]


def _per_generation(batch: Any, score: Any) -> tuple[np.ndarray, np.ndarray]:
    """``score(generation, x)`` for the synthetic rows of a batch; NaN for real rows. Also the synthetic mask."""
    origin, generation, x = (batch[c] for c in COLUMNS)
    synthetic = np.asarray(np.array(origin.to_pylist(), dtype=object) == "synthetic", dtype=bool)
    gens = arrow_numpy.to_numpy(generation)
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
    # one pass scores the synthetic rows (distance from the mean, or log-likelihood), batch by batch
    def score(g: int, x: np.ndarray) -> np.ndarray:
        model_dir = ctx.model_dir(g)
        if min_sigmas is None:
            return log_likelihood(model_dir, x)
        if read_meta(model_dir)["kind"] != "gaussian":
            raise UserError(f"curate.preprocess truncate_likely: min_sigmas needs Gaussian models; "
                            f"{model_dir} holds another kind (use keep_below_percentile)")
        from collapsebench.toy.gaussian import mahalanobis

        return mahalanobis(model_dir, x)

    values = np.full(len(dataset), np.nan)
    synthetic = np.zeros(len(dataset), dtype=bool)
    gens = np.zeros(len(dataset), dtype=np.int64)
    start = 0
    for batch in dataset.select_columns(COLUMNS).with_format("arrow").iter(batch_size=batch_size):
        rows = slice(start, start + batch.num_rows)
        values[rows], synthetic[rows] = _per_generation(batch, score)
        gens[rows] = arrow_numpy.to_numpy(batch["generation"])
        start += batch.num_rows
    # then the rows to keep, selected by position (for either kind of dataset)
    if min_sigmas is not None:
        keep = ~synthetic | (values >= min_sigmas)
    else:  # at or below the percentile of the row's generation
        assert keep_below_percentile is not None
        scored = ~np.isnan(values)
        threshold = np.full(len(dataset), np.inf)
        for g in np.unique(gens[scored]):
            same = scored & (gens == g)
            threshold[same] = np.percentile(values[same], keep_below_percentile)
        keep = ~scored | (values <= threshold)
    return dataset.select(np.flatnonzero(keep))
