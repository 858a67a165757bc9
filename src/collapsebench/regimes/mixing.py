"""Curation regimes: how D(k) is made from the real data and the synthetic data S(1..k-1).

Every regime works on memory-mapped `datasets` tables by selecting row indices and concatenating,
so no text is loaded into Python; lineage columns travel with the rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from collapsebench.api import Dataset, PhaseContext
from collapsebench.config import Config
from collapsebench.data import concat, sample_rows
from collapsebench.errors import UserError
from collapsebench.regimes.parts import part_rows

SIZE_POLICIES = ("constant", "real_plus_synthetic")


def replace_sizes(n: int, alpha: float, size_policy: str) -> tuple[int, int]:
    """(real rows, synthetic rows) of the replace regime for a base size ``n``."""
    if size_policy not in SIZE_POLICIES:
        raise UserError(f"curate.regime.size_policy must be one of {', '.join(SIZE_POLICIES)}, got {size_policy!r}")
    if size_policy == "constant":
        if not 0.0 <= alpha <= 1.0:
            raise UserError(f"curate.regime.alpha must be in [0, 1], got {alpha}")
        n_syn = int(round(alpha * n))
        return n - n_syn, n_syn
    if alpha < 0:
        raise UserError(f"curate.regime.alpha must be >= 0 with size_policy real_plus_synthetic, got {alpha}")
    return n, int(round(alpha * n))


def replace(ctx: PhaseContext, real: Dataset, synthetic: list[Dataset],
            alpha: float = 1.0, size: int | None = None, size_policy: str = "constant") -> Dataset:
    """Mix real rows with rows of the latest synthetic dataset S(k-1); iteration 1 trains on real data only.

    ``size_policy``:
      * ``constant`` (default): |D(k)| = ``size`` (default: the real training size) at every
        iteration; a fraction ``alpha`` of it is synthetic, the rest real.
      * ``real_plus_synthetic``: all ``size`` real rows are kept and ``alpha * size`` synthetic rows
        are added (|D(k)| = (1 + alpha) * size; alpha may exceed 1: the synthetic-to-real ratio)."""
    n = size or len(real)
    n_real, n_syn = replace_sizes(n, alpha, size_policy)
    rng = np.random.default_rng(ctx.seed)
    if not synthetic:
        return sample_rows(real, min(n, len(real)), rng, what="real data")
    latest = synthetic[-1]
    if n_syn > len(latest):
        raise UserError(
            f"curate.regime: replace with alpha={alpha} needs {n_syn} synthetic rows but iteration "
            f"{ctx.iteration - 1} generated {len(latest)}; raise generate.num_samples or lower alpha"
        )
    parts = [sample_rows(real, n_real, rng, what="real data"), sample_rows(latest, n_syn, rng, what="synthetic data")]
    return concat([p for p in parts if len(p)] or parts[:1])


def accumulate(ctx: PhaseContext, real: Dataset, synthetic: list[Dataset]) -> Dataset:
    """The real data and every synthetic dataset so far: D(k) = D_real ∪ S(1) ∪ ... ∪ S(k-1)."""
    return concat([real, *synthetic])


def accumulate_subsample(ctx: PhaseContext, real: Dataset, synthetic: list[Dataset],
                         size: int | None = None) -> Dataset:
    """The accumulated pool subsampled uniformly to ``size`` rows (default: the real size)."""
    pool = concat([real, *synthetic])
    n = size or len(real)
    return sample_rows(pool, min(n, len(pool)), np.random.default_rng(ctx.seed), what="the accumulated pool")


def grow(ctx: PhaseContext, real: Dataset, synthetic: list[Dataset],
         rows: int | None = None, fraction: float = 1.0, keep_real: bool = True) -> Dataset:
    """A fixed amount of fresh synthetic data added each round: D(k) = D_real ∪ A(1) ∪ ... ∪ A(k-1),
    where A(j) is ``rows`` rows (default: ``fraction`` of the real size) of S(j), drawn once with a
    seed of j, so the rows added at round j stay the same in every later round."""
    amount = rows if rows is not None else int(round(fraction * len(real)))
    if amount < 0:
        raise UserError(f"curate.regime: grow needs rows >= 0, got {amount}")
    added = []
    for j, s in enumerate(synthetic, start=1):
        if amount > len(s):
            raise UserError(f"curate.regime: grow adds {amount} rows per round but iteration {j} generated "
                            f"{len(s)}; raise generate.num_samples or lower rows/fraction")
        added.append(sample_rows(s, amount, np.random.default_rng([ctx.config.seed, j]), what=f"S({j})"))
    parts = ([real] if keep_real else []) + [a for a in added if len(a)]
    if not parts:
        return real.select([])
    return concat(parts)


def clean_fraction(ctx: PhaseContext, real: Dataset, synthetic: list[Dataset],
                   alpha: float = 0.0, size: int | None = None, size_policy: str = "constant",
                   parts: int | None = None, **ignored: object) -> Dataset:
    """The clean baseline of a run: the real rows the run's regime would train on, without its
    synthetic rows. Switch any config to it with ``curate.regime.name=clean_fraction`` (the other
    regime arguments are read where they matter and ignored otherwise):

    * with ``alpha`` (replace): the same ``(1 - alpha) * size`` real rows replace draws (same seed);
      iteration 1 uses the full size, as replace does;
    * with ``parts`` (fresh_real): the fresh part of the iteration alone;
    * otherwise (accumulate, grow, ...): the real data."""
    if parts is not None:
        return part_rows(real, ctx.iteration - 1, parts)
    n = size or len(real)
    rng = np.random.default_rng(ctx.seed)
    if not synthetic:
        return sample_rows(real, min(n, len(real)), rng, what="real data")
    n_real, _ = replace_sizes(n, alpha, size_policy)
    if n_real == 0:
        raise UserError(f"curate.regime: clean_fraction with alpha={alpha} keeps no real rows at iteration "
                        f"{ctx.iteration}; the clean baseline needs alpha < 1")
    return sample_rows(real, min(n_real, len(real)), rng, what="real data")


def preflight_replace(config: Config, kwargs: dict[str, Any]) -> list[str]:
    """``validate``: ``alpha`` fits ``size_policy`` (at most 1 when the size is constant)."""
    replace_sizes(1000, kwargs.get("alpha", 1.0), kwargs.get("size_policy", "constant"))
    return []
