"""Curation regimes: how D(k) is made from the real data and the synthetic data S(1..k-1).

Every regime works on memory-mapped `datasets` tables by selecting row indices and concatenating,
so no text is loaded into Python; lineage columns travel with the rows.

Units (``unit``): sizes, shares and budgets count ``tokens`` (the default for language data: rows
that carry token counts, ``n_tokens``, as every text run's real split and samples do; see
:mod:`collapsebench.models.tokens`) or ``rows`` (the default for everything else, e.g. vectors).
Synthetic samples are shorter or longer than real documents, so only in tokens is ``alpha`` the
synthetic share of what the model trains on, and the dataset's size the same every iteration. A
token amount is met with whole documents: the shortest uniformly drawn set of rows whose tokens
reach it (:func:`take`), so it is exact to within one document.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from collapsebench.api import Dataset, PhaseContext
from collapsebench.config import Config
from collapsebench.data import ArrowRows, concat
from collapsebench.errors import UserError
from collapsebench.models.tokens import COLUMN, has_token_counts, token_total, with_counts
from collapsebench.regimes.draw import draw
from collapsebench.regimes.parts import part_index
from collapsebench.regimes.sizes import replace_sizes

UNITS = ("tokens", "rows")


def resolve_unit(real: Dataset, unit: str | None, key: str = "curate.regime.unit") -> str:
    """``unit``, or its default: tokens when the real rows carry token counts, else rows."""
    if unit is None:
        return "tokens" if has_token_counts(real) else "rows"
    if unit not in UNITS:
        raise UserError(f"{key} must be one of {', '.join(UNITS)}, got {unit!r}")
    return unit


# the streams of the draws (with the phase's seed): replace and clean_fraction draw the same real rows
REAL, SYNTHETIC, POOL, ADDED = 1, 2, 3, 4


def take(ctx: PhaseContext, ds: Dataset, amount: int, seed: tuple[int, ...], unit: str, what: str) -> Dataset:
    """``amount`` rows drawn uniformly, or (``unit: tokens``) the shortest uniformly drawn set of
    rows whose tokens reach ``amount`` (:func:`collapsebench.regimes.draw.draw`); the rows keep
    their order. All rows when the amount is all there is."""
    tokens = unit == "tokens"
    return draw(with_counts(ctx, ds, what=what) if tokens else ds, amount, seed, weights=COLUMN if tokens else None,
                scratch=None if isinstance(ds, ArrowRows) else ctx.cache_dir, what=what)


def available(ctx: PhaseContext, ds: Dataset, unit: str, what: str) -> int:
    """How much of ``ds`` there is in ``unit`` (tokens: those a budget counts, the kept prompts' aside)."""
    return len(ds) if unit == "rows" else token_total(ctx, ds, what=what).budget


def base_size(ctx: PhaseContext, real: Dataset, unit: str, size: int | None, size_tokens: int | None) -> int:
    """The dataset's base size in ``unit`` (``size`` rows, ``size_tokens`` tokens, default: the real
    data's). With ``unit: tokens``, ``size`` rows count as that many real documents of mean length."""
    if unit == "rows":
        if size_tokens is not None:
            raise UserError("curate.regime.size_tokens is a token budget: it needs unit: tokens")
        return size or len(real)
    if size_tokens is not None:
        return int(size_tokens)
    total = available(ctx, real, unit, "real data")
    return int(round(size * total / max(len(real), 1))) if size is not None else total


def _replace_real(ctx: PhaseContext, real: Dataset, first: bool, alpha: float, size: int | None, size_policy: str,
                  unit: str | None, size_tokens: int | None) -> tuple[Dataset, int, str]:
    """The real rows of replace (the whole base size at iteration 1), the synthetic amount and the
    unit (replace and clean_fraction draw the same real rows)."""
    unit = resolve_unit(real, unit)
    n = base_size(ctx, real, unit, size, size_tokens)
    n_real, n_syn = replace_sizes(n, alpha, size_policy)
    if first:
        n_real = n
    amount = min(n_real, available(ctx, real, unit, "real data"))
    return take(ctx, real, amount, (ctx.seed, REAL), unit, "real data"), n_syn, unit


def replace(ctx: PhaseContext, real: Dataset, synthetic: Sequence[Dataset], alpha: float = 1.0, size: int | None = None,
            size_policy: str = "constant", unit: str | None = None, size_tokens: int | None = None) -> Dataset:
    """Mix real data with the latest synthetic dataset S(k-1); iteration 1 trains on real data only.

    ``size_policy``:
      * ``constant`` (default): |D(k)| = the base size (``size_tokens`` tokens or ``size`` rows;
        default: the real training data's) at every iteration; a fraction ``alpha`` of it is
        synthetic, the rest real.
      * ``real_plus_synthetic``: the base size of real data is kept and ``alpha`` times it of
        synthetic data is added (|D(k)| = (1 + alpha) x base; alpha may exceed 1: the
        synthetic-to-real ratio).

    ``unit``: ``tokens`` (default for language data) or ``rows`` (see the module docstring)."""
    real_part, n_syn, unit = _replace_real(ctx, real, not synthetic, alpha, size, size_policy, unit, size_tokens)
    if not synthetic:
        return real_part
    latest, what = synthetic[-1], f"samples of iteration {ctx.iteration - 1}"
    counted = None if unit == "rows" else token_total(ctx, latest, what=what)
    have, longest = (len(latest), 0) if counted is None else (counted.budget, counted.longest)
    if have < n_syn <= have + longest:
        n_syn = have  # within one document of the budget: the samples are what there is
    if n_syn > have:
        raise UserError(
            f"curate.regime: replace with alpha={alpha} needs {n_syn} synthetic {unit} but iteration "
            f"{ctx.iteration - 1} generated {have}; raise generate.num_samples or lower alpha"
        )
    parts = [real_part, take(ctx, latest, n_syn, (ctx.seed, SYNTHETIC), unit, what)]
    return concat([p for p in parts if len(p)] or parts[:1])


def accumulate(ctx: PhaseContext, real: Dataset, synthetic: Sequence[Dataset]) -> Dataset:
    """The real data and every synthetic dataset so far: D(k) = D_real ∪ S(1) ∪ ... ∪ S(k-1)."""
    return concat([real, *synthetic])


def accumulate_subsample(ctx: PhaseContext, real: Dataset, synthetic: Sequence[Dataset], size: int | None = None,
                         unit: str | None = None, size_tokens: int | None = None) -> Dataset:
    """The accumulated pool subsampled uniformly to the base size (``size_tokens`` tokens or
    ``size`` rows; default: the real data's)."""
    pool = concat([real, *synthetic])
    unit = resolve_unit(real, unit)
    n = base_size(ctx, real, unit, size, size_tokens)
    what = "the accumulated pool"
    return take(ctx, pool, min(n, available(ctx, pool, unit, what)), (ctx.seed, POOL), unit, what)


def grow(ctx: PhaseContext, real: Dataset, synthetic: Sequence[Dataset], rows: int | None = None, fraction: float = 1.0,
         keep_real: bool = True, unit: str | None = None) -> Dataset:
    """A fixed amount of fresh synthetic data added each round: D(k) = D_real ∪ A(1) ∪ ... ∪ A(k-1),
    where A(j) is ``rows`` rows of S(j), or else ``fraction`` of the real data (in ``unit``), drawn
    once with a seed of j, so the rows added at round j stay the same in every later round."""
    unit = "rows" if rows is not None else resolve_unit(real, unit)
    if rows is not None:
        amount = rows
    else:
        amount = int(round(fraction * available(ctx, real, unit, "real data")))
    if amount < 0:
        raise UserError(f"curate.regime: grow needs rows >= 0, got {amount}")
    added = []
    for j, s in enumerate(synthetic, start=1):
        have = available(ctx, s, unit, f"samples of iteration {j}")
        if amount > have:
            raise UserError(f"curate.regime: grow adds {amount} {unit} per round but iteration {j} generated "
                            f"{have}; raise generate.num_samples or lower rows/fraction")
        added.append(take(ctx, s, amount, (ctx.config.seed, ADDED, j), unit, f"S({j})"))
    parts = ([real] if keep_real else []) + [a for a in added if len(a)]
    if not parts:
        return real.select([])
    return concat(parts)


def clean_fraction(ctx: PhaseContext, real: Dataset, synthetic: Sequence[Dataset],
                   alpha: float = 0.0, size: int | None = None, size_policy: str = "constant",
                   parts: int | None = None, part_by: str | None = None, unit: str | None = None,
                   size_tokens: int | None = None, **ignored: object) -> Dataset:
    """The clean baseline of a run: the real rows the run's regime would train on, without its
    synthetic rows. Switch any config to it with ``curate.regime.name=clean_fraction`` (the other
    regime arguments are read where they matter and ignored otherwise):

    * with ``alpha`` (replace): the same real rows replace draws (same seed, same unit); iteration 1
      uses the full size, as replace does;
    * with ``parts`` or ``part_by`` (fresh_real): the fresh part of the iteration alone;
    * otherwise (accumulate, grow, ...): the real data."""
    if parts is not None or part_by is not None:
        index, _ = part_index(real, parts, part_by, default=ctx.config.iterations)
        return real.select(np.flatnonzero(index == ctx.iteration - 1))
    real_part, _, _ = _replace_real(ctx, real, not synthetic, alpha, size, size_policy, unit, size_tokens)
    if len(real_part) == 0:
        raise UserError(f"curate.regime: clean_fraction with alpha={alpha} keeps no real rows at iteration "
                        f"{ctx.iteration}; the clean baseline needs alpha < 1")
    return real_part


def preflight_replace(config: Config, kwargs: dict[str, Any]) -> list[str]:
    """``validate``: ``alpha`` fits ``size_policy`` (at most 1 when the size is constant)."""
    replace_sizes(1000, kwargs.get("alpha", 1.0), kwargs.get("size_policy", "constant"))
    return []
