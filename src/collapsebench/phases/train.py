"""train: M(k) = train(D(k)) with the configured trainer, in one stage or several (train.stages).

A multi-stage iteration commits each stage the way the run commits a phase: the stage works in
``stages/<name>.tmp/`` and renames it to ``stages/<name>/`` with its ``stats.json``, so a resumed
phase skips finished stages and resumes the interrupted one from its trainer checkpoint.

Under ``train.launcher`` (torchrun, accelerate), this process starts the ranks
(:mod:`collapsebench.executors.launch`); each rank runs :func:`run_rank`, which trains as above.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import socket
import time
import traceback
from pathlib import Path
from typing import Any

from collapsebench.api import PhaseContext
from collapsebench.config import Spec, StageConfig
from collapsebench.errors import UserError
from collapsebench.io import atomic_write, commit_folder, derive_seed, is_committed, read_stats
from collapsebench.registry import launchers, trainers


def run(ctx: PhaseContext) -> dict[str, Any]:
    if ctx.config.train.launcher is not None:
        return run_launched(ctx, ctx.config.train.launcher)
    return train(ctx)


def train(ctx: PhaseContext) -> dict[str, Any]:
    """The phase's work in this process (one rank of it under a launcher)."""
    if ctx.config.train.stages:
        return run_stages(ctx)
    spec = ctx.config.train.trainer
    stats = trainers.call(spec.name, ctx, ctx.dataset(), key="train.trainer", kwargs=spec.kwargs)
    return {"init": ctx.config.model.init, **(stats or {})}


def _train_stage(ctx: PhaseContext, i: int, stage: StageConfig, previous: Path | None) -> dict[str, Any]:
    from collapsebench.data import count_by
    from collapsebench.regimes.stages import stage_dataset

    key = f"train.stages[{i}]"
    ds = stage_dataset(ctx, stage.data, f"{key}.data")
    spec = stage.trainer_spec(ctx.config.train.trainer)
    trainer_key = f"{key}.trainer" if stage.trainer else "train.trainer"
    kwargs = spec.kwargs
    if previous is not None:
        if "init_from" not in inspect.signature(trainers.get(spec.name, key=trainer_key)).parameters:
            raise UserError(f"{key}: trainer '{spec.name}' takes no 'init_from' argument, so it cannot continue "
                            "from the previous stage's model")
        kwargs["init_from"] = str(previous)
    stats = dict(trainers.call(spec.name, ctx, ds, key=trainer_key, kwargs=kwargs) or {})
    stats.update(stage=stage.name or f"stage{i}", rows=len(ds))
    if "generation" in ds.column_names:
        stats["rows_by_generation"] = count_by(ds, "generation")
    return stats


def run_stages(ctx: PhaseContext) -> dict[str, Any]:
    """Run the stages in order, each from the previous stage's model (see the module docstring)."""
    results: list[dict[str, Any]] = []
    previous: Path | None = None
    for i, stage in enumerate(ctx.config.train.stages):
        final = ctx.out_dir / "stages" / (stage.name or f"stage{i}")
        if not is_committed(final):
            work = final.with_name(final.name + ".tmp")
            work.mkdir(parents=True, exist_ok=True)
            # the stage seed keeps the derivation of earlier releases: derive_seed(phase seed, i, "stage")
            sctx = ctx.replace(out_dir=work, seed=derive_seed(ctx.seed, i, "stage", hex_digits=8))
            commit_folder(work, final, _train_stage(sctx, i, stage, previous))
            if previous is not None:  # no later stage starts from it any more
                shutil.rmtree(previous, ignore_errors=True)
        results.append(read_stats(final))
        previous = final / "model"
    model = ctx.out_dir / "model"
    if previous is not None and previous.exists():
        if model.exists():
            shutil.rmtree(model)
        os.replace(previous, model)
    metrics: dict[str, Any] = {"loss": results[-1].get("metrics", {}).get("loss")}
    for r in results:
        for k, v in r.get("metrics", {}).items():
            metrics[f"{r['stage']}/{k}"] = v
    seconds = sum(r.get("seconds", 0) for r in results)
    return {"init": ctx.config.model.init, "init_from": results[0].get("init_from"), "metrics": metrics,
            "stages": results, "seconds": round(seconds, 3),
            "resumed_from": next((r["resumed_from"] for r in results if r.get("resumed_from")), None)}


# ------------------------------------------------------------------------------------ under a launcher

def run_launched(ctx: PhaseContext, spec: Spec) -> dict[str, Any]:
    """Train as the ranks of ``train.launcher`` (see :mod:`collapsebench.executors.launch`)."""
    from collapsebench.executors.launch import run_launched as launch

    how = launchers.call(spec.name, ctx, key="train.launcher", kwargs=spec.kwargs)
    task = ctx.task("launch", run_rank, keep_global_batch=how.keep_global_batch,
                    timeout_min=how.timeout_min)
    return {"init": ctx.config.model.init, **launch(ctx, spec.name, how, task)}


def run_rank(ctx: PhaseContext, keep_global_batch: bool, timeout_min: float) -> None:
    """One rank: join the process group, train; rank 0 leaves the stats for the launching process,
    and a failing rank its error, in ``<phase>.tmp/.launch/``."""
    from collapsebench.executors.launch import launch_dir
    from collapsebench.trainers.distributed import KEEP_GLOBAL_BATCH, init_process_group, leave_process_group, world

    rank, size = world()
    records = launch_dir(ctx)
    me = {"rank": rank, "world_size": size, "local_rank": int(os.environ.get("LOCAL_RANK", "0")), "pid": os.getpid(),
          "host": socket.gethostname()}
    atomic_write(records / f"rank{rank}.json", json.dumps(me))
    print(f"collapsebench: rank {rank} of {size} (pid {me['pid']} on {me['host']})", flush=True)
    if keep_global_batch:
        os.environ[KEEP_GLOBAL_BATCH] = "1"
    try:
        init_process_group(timeout_min)
        stats = train(ctx)
    except Exception as exc:
        error = {"rank": rank, "world_size": size, "type": type(exc).__name__, "message": str(exc),
                 "user_error": isinstance(exc, UserError), "traceback": traceback.format_exc(limit=8), "time": time.time()}
        atomic_write(records / f"error-rank{rank}.json", json.dumps(error))
        raise
    if rank == 0:
        atomic_write(records / "stats.json", json.dumps(stats, default=str))
    leave_process_group()
