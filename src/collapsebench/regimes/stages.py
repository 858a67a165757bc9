"""The data of one training stage (``train.stages[i].data``): rows of the curated dataset, of the
real split or of the latest samples, optionally one of n equal parts, or a regime applied to one
part of the real data and the same part of every synthetic dataset."""

from __future__ import annotations

from collections.abc import Sequence

from collapsebench.api import Dataset, PhaseContext
from collapsebench.config import StageData
from collapsebench.errors import UserError
from collapsebench.regimes.parts import part_rows
from collapsebench.registry import regimes


def stage_dataset(ctx: PhaseContext, data: StageData, key: str) -> Dataset:
    """The rows stage ``key`` trains on at this iteration."""
    if data.regime is not None:
        real = ctx.real()
        synthetic: Sequence[Dataset] = ctx.synthetic()
        if data.part is not None:
            i, n = data.part
            real = part_rows(real, i, n, key=f"{key}.part")
            synthetic = [part_rows(s, i, n, key=f"{key}.part") for s in synthetic]
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
        ds = part_rows(ds, *data.part, key=f"{key}.part")
    if len(ds) == 0:
        raise UserError(f"{key}: no rows selected at iteration {ctx.iteration}")
    return ds
