"""The data of one training stage (``train.stages[i].data``): rows of the curated dataset, of the
real split or of the latest samples, optionally one of n equal parts, or a regime applied to one
part of the real data and the same part of every synthetic dataset.

Parts are equal in tokens when the rows carry token counts (language data; see
:mod:`collapsebench.models.tokens`), else in rows: with a regime in tokens, the synthetic part
then holds its share of the samples' tokens, which generation makes large enough
(:func:`synthetic_needs`)."""

from __future__ import annotations

from collections.abc import Sequence

from collapsebench.api import Dataset, PhaseContext
from collapsebench.config import StageData
from collapsebench.errors import UserError
from collapsebench.models.tokens import has_token_counts, token_counts, token_total
from collapsebench.regimes.parts import part_rows
from collapsebench.registry import regimes, synthetic_need


def stage_part(ctx: PhaseContext, ds: Dataset, part: tuple[int, int], key: str) -> Dataset:
    """Part ``part`` = [i, n] of ``ds``: equal in tokens for rows with token counts, else in rows."""
    counts = token_counts(ctx, ds) if has_token_counts(ds) else None
    return part_rows(ds, *part, key=key, tokens=counts)


def synthetic_needs(ctx: PhaseContext, real: Dataset, real_tokens: int | None) -> list[tuple[str, int]]:
    """How much of S(k) the run draws at iteration k + 1, as (unit, amount): the curation regime's
    need and, for every stage whose regime works on part i of n, n times that regime's need on the
    real part (each synthetic dataset is cut into the same n parts). Each need is what the regime
    declares (its ``needs`` hook, :func:`collapsebench.registry.synthetic_need`); a regime that
    declares none adds none."""
    k = ctx.iteration + 1
    needs = [synthetic_need(ctx.config.curate.regime, len(real), real_tokens, k)]
    for i, stage in enumerate(ctx.config.train.stages):
        if stage.data.regime is None:
            continue
        part, n = real, 1
        if stage.data.part is not None:
            part, n = stage_part(ctx, real, stage.data.part, f"train.stages[{i}].data.part"), stage.data.part[1]
        tokens = token_total(ctx, part).tokens if real_tokens is not None else None
        need = synthetic_need(stage.data.regime, len(part), tokens, k, key=f"train.stages[{i}].data.regime")
        if need is not None:
            needs.append((need[0], need[1] * n))
    return [need for need in needs if need is not None]


def stage_dataset(ctx: PhaseContext, data: StageData, key: str) -> Dataset:
    """The rows stage ``key`` trains on at this iteration."""
    if data.regime is not None:
        real = ctx.real()
        synthetic: Sequence[Dataset] = ctx.synthetic()
        if data.part is not None:
            real = stage_part(ctx, real, data.part, f"{key}.part")
            synthetic = [stage_part(ctx, s, data.part, f"{key}.part") for s in synthetic]
        spec = data.regime
        return regimes.call(spec.name, ctx, real, synthetic, key=f"{key}.regime", kwargs=spec.kwargs)
    if data.source == "samples":
        if ctx.iteration < 2:
            raise UserError(f"{key}.source: 'samples' needs iteration >= 2 (iteration 1 has no samples yet); "
                            "use a regime (e.g. {name: replace, alpha: 1.0}) to start from real data")
        ds = ctx.samples(ctx.iteration - 1)
    else:
        ds = ctx.real() if data.source == "real" else ctx.dataset()
    if data.origin is not None:
        if "origin" not in ds.column_names:
            raise UserError(f"{key}.origin: the {data.source} data has no 'origin' column")
        wanted = data.origin
        ds = ds.filter(lambda b: [o == wanted for o in b["origin"]], batched=True, batch_size=10_000,
                       cache_file_name=str(ctx.cache_dir / "stage_origin.arrow"))
    if data.part is not None:
        ds = stage_part(ctx, ds, data.part, f"{key}.part")
    if len(ds) == 0:
        raise UserError(f"{key}: no rows selected at iteration {ctx.iteration}")
    return ds
