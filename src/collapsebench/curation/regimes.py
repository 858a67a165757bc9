"""Curation regimes: how D(k) is made from the real data and the synthetic data S(1..k-1).

Every regime works on memory-mapped `datasets` tables by selecting row indices and concatenating,
so no text is loaded into Python; lineage columns travel with the rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from collapsebench.errors import UserError

if TYPE_CHECKING:
    import datasets

    from collapsebench.context import PhaseContext


def align(parts: list["datasets.Dataset"]) -> list["datasets.Dataset"]:
    """Keep the columns all parts share (in the first part's order) and cast to its features."""
    common = [c for c in parts[0].column_names if all(c in p.column_names for p in parts[1:])]
    first = parts[0].select_columns(common)
    out = [first]
    for p in parts[1:]:
        p = p.select_columns(common)
        if p.features != first.features:
            p = p.cast(first.features)
        out.append(p)
    return out


def concat(parts: list["datasets.Dataset"]) -> "datasets.Dataset":
    import datasets

    parts = [p for p in align(parts)]
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def sample_rows(ds: "datasets.Dataset", n: int, rng: np.random.Generator, *, what: str) -> "datasets.Dataset":
    """``n`` rows drawn uniformly without replacement (order kept)."""
    if n > len(ds):
        raise UserError(f"curate.regime: needs {n} rows of {what} but only {len(ds)} exist")
    if n == len(ds):
        return ds
    return ds.select(np.sort(rng.choice(len(ds), size=n, replace=False)))


def replace(ctx: "PhaseContext", real: "datasets.Dataset", synthetic: list["datasets.Dataset"],
            alpha: float = 1.0, size: int | None = None) -> "datasets.Dataset":
    """Keep a fraction 1-alpha of the real data and fill the rest with the latest synthetic data.

    The dataset size stays ``size`` (default: the real training size) at every iteration;
    iteration 1 trains on real data only."""
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"curate.regime.alpha must be in [0, 1], got {alpha}")
    n = size or len(real)
    rng = np.random.default_rng(ctx.seed)
    if not synthetic:
        return sample_rows(real, min(n, len(real)), rng, what="real data")
    n_syn = int(round(alpha * n))
    latest = synthetic[-1]
    if n_syn > len(latest):
        raise UserError(
            f"curate.regime: replace with alpha={alpha} needs {n_syn} synthetic rows but iteration "
            f"{ctx.iteration - 1} generated {len(latest)}; raise generate.num_samples or lower alpha"
        )
    parts = [sample_rows(real, n - n_syn, rng, what="real data"), sample_rows(latest, n_syn, rng, what="synthetic data")]
    return concat([p for p in parts if len(p)] or parts[:1])


def accumulate(ctx: "PhaseContext", real: "datasets.Dataset", synthetic: list["datasets.Dataset"]) -> "datasets.Dataset":
    """The real data and every synthetic dataset so far: D(k) = D_real ∪ S(1) ∪ ... ∪ S(k-1)."""
    return concat([real, *synthetic])


def accumulate_subsample(ctx: "PhaseContext", real: "datasets.Dataset", synthetic: list["datasets.Dataset"],
                         size: int | None = None) -> "datasets.Dataset":
    """The accumulated pool subsampled uniformly to ``size`` rows (default: the real size)."""
    pool = concat([real, *synthetic])
    n = size or len(real)
    return sample_rows(pool, min(n, len(pool)), np.random.default_rng(ctx.seed), what="the accumulated pool")
