"""train: M(k) = train(D(k)) with the configured trainer, in one stage or several (train.stages)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil
from typing import Any

from collapsebench.config import phase_seed
from collapsebench.context import PhaseContext
from collapsebench.errors import UserError
from collapsebench.registry import trainers
from collapsebench.run import atomic_write


def run(ctx: PhaseContext) -> dict[str, Any]:
    if ctx.config.train.stages:
        return run_stages(ctx)
    spec = ctx.config.train.trainer
    stats = trainers.get(spec.name, key="train.trainer")(ctx, ctx.dataset(), **spec.kwargs)
    return {"init": ctx.config.model.init, **(stats or {})}


def _stage_trainer(ctx: PhaseContext, i: int, stage: Any) -> tuple[Any, dict[str, Any]]:
    spec = stage.trainer_spec(ctx.config.train.trainer)
    key = f"train.stages[{i}].trainer" if stage.trainer else "train.trainer"
    return trainers.get(spec.name, key=key), spec.kwargs


def run_stages(ctx: PhaseContext) -> dict[str, Any]:
    """Run the stages in order, each from the previous stage's model; a finished stage (its
    ``stats.json``) is skipped on resume, an interrupted one resumes from its checkpoint."""
    from collapsebench.curation.stages import stage_dataset
    from collapsebench.data import count_by

    results: list[dict[str, Any]] = []
    previous = None
    for i, stage in enumerate(ctx.config.train.stages):
        name = stage.name or f"stage{i}"
        sdir = ctx.out_dir / "stages" / name
        done = sdir / "stats.json"
        if not done.exists():
            sdir.mkdir(parents=True, exist_ok=True)
            sctx = dataclasses.replace(ctx, out_dir=sdir, seed=phase_seed(ctx.seed, i, "stage"))
            key = f"train.stages[{i}]"
            ds = stage_dataset(sctx, stage.data, f"{key}.data")
            fn, kwargs = _stage_trainer(ctx, i, stage)
            if previous is not None:
                if "init_from" not in inspect.signature(fn).parameters:
                    raise UserError(f"{key}: trainer '{fn.__name__}' takes no 'init_from' argument, so it cannot "
                                    "continue from the previous stage's model")
                kwargs["init_from"] = str(previous)
            stats = dict(fn(sctx, ds, **kwargs) or {})
            stats.update(stage=name, rows=len(ds))
            if "generation" in ds.column_names:
                stats["rows_by_generation"] = count_by(ds, "generation")
            atomic_write(done, json.dumps(stats, indent=1, sort_keys=True, default=float))
            shutil.rmtree(sdir / ".cache", ignore_errors=True)
            if previous is not None:  # no later stage starts from it any more
                shutil.rmtree(previous, ignore_errors=True)
        results.append(json.loads(done.read_text()))
        previous = sdir / "model"
    final = ctx.out_dir / "model"
    if previous is not None and previous.exists():
        if final.exists():
            shutil.rmtree(final)
        os.replace(previous, final)
    metrics: dict[str, Any] = {"loss": results[-1].get("metrics", {}).get("loss")}
    for r in results:
        for k, v in r.get("metrics", {}).items():
            metrics[f"{r['stage']}/{k}"] = v
    seconds = sum(r.get("seconds", 0) for r in results)
    return {"init": ctx.config.model.init, "init_from": results[0].get("init_from"), "metrics": metrics,
            "stages": results, "seconds": round(seconds, 3),
            "resumed_from": next((r["resumed_from"] for r in results if r.get("resumed_from")), None)}
