"""Phase contexts over real folders, for testing toy plug-ins without the loop driver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from collapsebench.config import config_from_dict, phase_seed
from collapsebench.context import PhaseContext, iter_name
from collapsebench.registry import data_sources


def make_config(**overrides: Any):
    raw = {"name": "toy", "seed": 0, "iterations": 3,
           "data": {"source": {"name": "gaussian", "n": 220}, "holdout": 20},
           "train": {"trainer": "gaussian_mle"},
           "generate": {"generator": "gaussian", "num_samples": 100},
           "evaluate": {"evaluations": ["toy_stats"]}}
    for key, value in overrides.items():
        raw[key] = value
    return config_from_dict(raw)


def context(run_dir: Path, config, iteration: int, phase: str) -> PhaseContext:
    out = run_dir / iter_name(iteration) / f"{phase}.tmp"
    out.mkdir(parents=True, exist_ok=True)
    return PhaseContext(config, run_dir, iteration, phase, phase_seed(config.seed, iteration, phase), out)


def commit(ctx: PhaseContext) -> None:
    ctx.out_dir.rename(ctx.phase_dir(ctx.iteration, ctx.phase))


def prepare_real(run_dir: Path, config, n_holdout: int = 20) -> None:
    """Iteration 0: the data source, lineage columns, a holdout split, saved like the curate phase does."""
    ctx = context(run_dir, config, 0, "curate")
    spec = config.data.source
    ds = data_sources.get(spec.name)(ctx, **spec.kwargs)
    n = len(ds)
    ds = ds.add_column("id", [f"r-{i:07d}" for i in range(n)])
    ds = ds.add_column("origin", ["real"] * n).add_column("generation", np.zeros(n, dtype=np.int64))
    ds = ds.add_column("parent", [""] * n)
    ds.select(range(n_holdout, n)).save_to_disk(str(ctx.out_dir / "real"))
    ds.select(range(n_holdout)).save_to_disk(str(ctx.out_dir / "holdout"))
    commit(ctx)
