"""The four phases. Each reads committed folders of the run directory and writes its own work
folder; :func:`execute` runs one (iteration, phase) and commits it atomically.

Phases are thin: they dispatch to the registries. ``SPLITS`` names the phases whose work splits
into tasks (``PhaseContext.map_tasks``): an executor that coordinates in the driver (Ray, SLURM)
runs their loop in the driver and only their tasks remotely.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collapsebench.api import Executor, PhaseContext, context_for
from collapsebench.errors import UserError
from collapsebench.executors.local import InlineExecutor
from collapsebench.io import FileLock, publish_folder, seal_folder
from collapsebench.models.loading import quiet_libraries
from collapsebench.phases import curate, evaluate, generate, train
from collapsebench.registry import fingerprints

FINGERPRINT_FILE = ".fingerprint"
SPLITS = frozenset({"generate", "evaluate"})
RUNS: dict[str, Callable[[PhaseContext], dict[str, Any]]] = {
    "curate": curate.run, "train": train.run, "generate": generate.run, "evaluate": evaluate.run,
}


def execute(run_dir: str | Path, iteration: int, phase: str, executor: Executor | None = None) -> dict[str, Any]:
    """Run one phase of one iteration from the run directory's config; commit it; return its stats.

    Work left in ``<phase>.tmp/`` by an interrupted attempt under the same fingerprint is kept,
    so the phase can resume (training checkpoints, finished generation shards). ``executor`` runs
    the phase's tasks (default: in this process) and starts its long-lived workers (default: as
    child processes of this one)."""
    quiet_libraries()
    ctx = context_for(run_dir, iteration, phase)
    lock = FileLock(ctx.layout.step_lock(iteration, phase))
    if not lock.acquire():
        raise UserError(f"step {iteration}.{phase} of {ctx.run_dir} is being worked on by another process")
    try:
        return _execute(ctx, iteration, phase, executor)
    finally:
        lock.release()


def _execute(ctx: PhaseContext, iteration: int, phase: str, executor: Executor | None) -> dict[str, Any]:
    fingerprint = fingerprints(ctx.config, max(iteration, 1))[f"{iteration}.{phase}"]
    stats = work(ctx.replace(executor=executor), fingerprint)
    publish_folder(ctx.out_dir, ctx.layout.phase_dir(iteration, phase))
    return stats


def work(ctx: PhaseContext, fingerprint: str, resumable: bool = True) -> dict[str, Any]:
    """Run the phase of ``ctx`` in its work folder (``ctx.out_dir``) and seal it: its ``stats.json``
    written, ready for the rename that commits it. Work left there by an interrupted attempt under
    the same ``fingerprint`` (its ``.fingerprint`` marker, removed once the work is done) is kept;
    under another, it is removed first. A step that is not ``resumable`` (the batched driver's:
    milliseconds of work, redone whole) writes no marker and always starts from an empty folder:
    a marker costs a toy run a file per step. Without an executor, the phase's long-lived workers
    are child processes of this one."""
    if ctx.executor is None and ctx.worker_host is None:
        ctx = ctx.replace(worker_host=InlineExecutor())
    tmp = ctx.out_dir
    marker = tmp / FINGERPRINT_FILE
    if tmp.exists() and (not resumable or not marker.exists() or marker.read_text() != fingerprint):
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    if resumable:
        marker.write_text(fingerprint)
    try:
        stats = dict(RUNS[ctx.phase](ctx) or {})
    finally:
        ctx.close()
    stats.update(iteration=ctx.iteration, phase=ctx.phase, seed=ctx.seed, fingerprint=fingerprint)
    marker.unlink(missing_ok=True)  # finished: its stats.json names the fingerprint from now on
    seal_folder(tmp, stats)
    return stats
