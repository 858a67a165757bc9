"""The driver: for each iteration, for each phase: skip (committed) | execute | record in the journal."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from collapsebench.api import Dataset, Task, Tracker, phase_resources
from collapsebench.config import Config, fingerprints
from collapsebench.console import console
from collapsebench.errors import UserError
from collapsebench.io import phase_seed
from collapsebench.layout import Step, parse_step, step_key, step_order, steps
from collapsebench.plugins import load_plugins
from collapsebench.registry import executors, trackers
from collapsebench.run import RunDir, now


def stale_steps(run: RunDir, config: Config) -> list[str]:
    """Committed steps whose recorded fingerprint differs from the config's."""
    fps = fingerprints(config)
    stale = []
    for step in steps(config.iterations):
        if run.is_committed(*step) and run.committed_stats(*step).get("fingerprint") != fps[step_key(step)]:
            stale.append(step_key(step))
    return stale


def invalidate_from(run: RunDir, state: dict[str, Any], start: Step) -> list[str]:
    """Remove every step at or after ``start`` (folders and journal entries)."""
    removed = []
    for key in list(state["steps"]):
        step = parse_step(key)
        if step_order(step) >= step_order(start):
            state["steps"].pop(key)
    for path in sorted(run.path.glob("iter_*/*")):
        if not path.is_dir():
            continue
        step = (int(path.parent.name.split("_")[1]), path.name.removesuffix(".tmp"))
        if step_order(step) >= step_order(start):
            run.remove_step(*step)
            removed.append(step_key(step))
    return sorted(set(removed), key=lambda k: step_order(parse_step(k)))


def _summary(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if k in ("metrics", "seconds", "resumed_from", "shards_resumed", "init",
                                                     "init_from")}


def run_experiment(config: Config, *, redo_from: str | None = None, quiet: bool = False) -> RunDir:
    """Start or continue the run of ``config``; returns its run directory."""
    run = RunDir(config.run_dir())
    start_step = parse_step(redo_from) if redo_from else None
    run.lock()
    try:
        state = run.read_state()
        if start_step is not None:
            removed = invalidate_from(run, state, start_step)
            run.write_state(state)
            if removed and not quiet:
                console.print(f"redoing from {redo_from}: removed {', '.join(removed)}")
        stale = stale_steps(run, config)
        if stale:
            raise UserError(
                f"{run.path}: the config changed since these phases ran: {', '.join(stale)}; refusing to "
                f"resume. Add --from {stale[0]} to redo from there, or choose a new output_dir."
            )
        run.save_config(config)
        run.rebuild_metrics()  # from the committed folders: repairs a driver killed mid-bookkeeping
        load_plugins(config)
        state.setdefault("name", config.name)
        state.setdefault("created", now())
        fps = fingerprints(config)
        trackers = Trackers(config, run)
        for step in steps(config.iterations):
            key = step_key(step)
            if run.is_committed(*step):
                entry = state["steps"].get(key, {})
                if entry.get("status") != "done":  # killed between the commit and the journal write
                    stats = run.committed_stats(*step)
                    state["steps"][key] = {**entry, "status": "done", "fingerprint": fps[key],
                                           "seed": stats.get("seed"), "stats": _summary(stats)}
                    run.write_state(state)
                continue
            _execute(run, state, config, step, fps[key], quiet)
            if step[1] == "evaluate":
                trackers.log(step[0])
        trackers.finish()
        if not quiet:
            console.print(f"[green]done[/]: {run.path}")
        from collapsebench.analysis.report import write_report

        write_report(run)
        return run
    finally:
        run.unlock()


class Trackers:
    """The config's trackers, started on first use; each gets every newly evaluated iteration."""

    def __init__(self, config: Config, run: RunDir):
        self.config, self.run = config, run
        self.active: list[Tracker] | None = None

    def log(self, iteration: int) -> None:
        if not self.config.tracking:
            return
        if self.active is None:
            self.active = [trackers.call(s.name, self.config.dump(), self.run.path, key=f"tracking[{i}]",
                                         kwargs=s.kwargs) for i, s in enumerate(self.config.tracking)]
        row = next((r for r in self.run.read_metrics() if r["iteration"] == iteration), {})
        samples = self.run.phase_dir(iteration, "generate") / "samples"
        dataset = datasets_load(samples) if samples.exists() else None
        for tracker in self.active:
            tracker.log_iteration(iteration, row, dataset)

    def finish(self) -> None:
        for tracker in self.active or []:
            tracker.finish()


def datasets_load(path: Path) -> Dataset:
    import datasets

    return datasets.load_from_disk(str(path))


def run_step(config: Config, run: RunDir, step: Step) -> None:
    """Run one step on its executor: the whole phase as one task, or, for a phase that splits into
    tasks under an executor that coordinates in the driver, the phase here and its tasks there."""
    from collapsebench.phases import SPLITS, execute

    iteration, phase = step
    spec = config.executor_for(phase)
    key = f"executor.{phase}" if isinstance(config.executor, dict) else "executor"
    executor = executors.call(spec.name, key=key, kwargs=spec.kwargs)
    try:
        if phase in SPLITS and executor.coordinates_in_driver:
            execute(run.path, iteration, phase, executor=executor)
            return
        task = Task(key=step_key(step), target="collapsebench.phases:execute", run_dir=str(run.path),
                    kwargs={"run_dir": str(run.path), "iteration": iteration, "phase": phase})
        executor.wait([executor.submit(task, phase_resources(config, phase))])
    finally:
        close = getattr(executor, "close", None)  # executors written before close() joined the contract have none
        if close is not None:
            close()


def _execute(run: RunDir, state: dict[str, Any], config: Config, step: Step, fingerprint: str, quiet: bool) -> None:
    iteration, phase = step
    key = step_key(step)
    spec = config.executor_for(phase)
    previous = state["steps"].get(key, {})
    entry = {"status": "running", "started": now(), "seed": phase_seed(config.seed, iteration, phase),
             "fingerprint": fingerprint, "executor": spec.name, "attempts": previous.get("attempts", 0) + 1}
    state["steps"][key] = entry
    run.write_state(state)
    if not quiet:
        console.print(f"[bold]{key}[/] ({spec.name}) ...")
    try:
        run_step(config, run, step)
    except BaseException as exc:
        entry.update(status="failed", finished=now(), error=f"{type(exc).__name__}: {exc}",
                     traceback=None if isinstance(exc, UserError) else traceback.format_exc(limit=5))
        run.write_state(state)
        raise
    stats = run.committed_stats(iteration, phase)
    entry.update(status="done", finished=now(), duration_s=round(now() - entry["started"], 3), stats=_summary(stats))
    run.write_state(state)
    if phase == "evaluate":
        rows = run.rebuild_metrics(iteration)
        if not quiet and rows:
            shown = {k: v for k, v in rows[-1].items() if isinstance(v, float)}
            console.print("  " + "  ".join(f"{k}={v:.4g}" for k, v in list(shown.items())[:6]))
