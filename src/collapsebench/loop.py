"""The driver: for each iteration, for each phase: skip (committed) | execute | record in the journal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from collapsebench import batch
from collapsebench.analysis.report import write_report
from collapsebench.api import Dataset, Task, Tracker, phase_resources
from collapsebench.config import Config
from collapsebench.console import console
from collapsebench.errors import UserError
from collapsebench.failure import journal_entry, time_to_failure
from collapsebench.layout import Step, step_key, steps
from collapsebench.phases import SPLITS, execute
from collapsebench.plugins import load_plugins
from collapsebench.prepare import ensure_prepared
from collapsebench.redo import check_from, check_run_dir, confirm, make_plan, release, supersede
from collapsebench.registry import executors, trackers
from collapsebench.run import RunDir, fail_entry, finish_entry, now, start_entry, step_summary


class SharedSteps(Protocol):
    """Steps computed once for several runs (a sweep's cells): ``run`` either adopts a committed copy
    of the step with the same fingerprint from another run (returning where it came from) or calls
    ``execute`` and offers the result to the others (returning None)."""

    def run(self, run_dir: Path, step: Step, fingerprint: str, execute: Callable[[], None]) -> dict[str, Any] | None: ...


def preflight(config: Config, *, allow_download: bool = False) -> None:
    """Every check of ``collapsebench validate``, before the run directory is touched."""
    from collapsebench.validate import check_backends, validate_config

    check_run_dir(config)
    report = validate_config(config)
    if report.downloads and not allow_download:
        raise UserError(f"needs download: {', '.join(report.downloads)}; these hub models or datasets are not in the "
                        "local cache (download them first, or run with --allow-download)")
    check_backends(config)


def run_experiment(config: Config, *, redo_from: str | None = None, yes: bool = False, ask: bool = False,
                   allow_download: bool = False, quiet: bool = False, shared: SharedSteps | None = None,
                   checked: bool = False) -> RunDir:
    """Start or continue the run of ``config``; returns its run directory.

    Plan, validate, then act: the whole config is checked (unless ``checked``: a sweep checked its
    cells already) and the plan of what to redo is made before anything in the run directory
    changes; committed work is removed only with consent (``yes``, or ``ask`` at a terminal), into
    ``superseded/``. The run ends early after the evaluation at which a ``stop_when`` rule with
    ``stop: true`` fails (see :mod:`collapsebench.failure`)."""
    start = check_from(redo_from, config) if redo_from else None
    if not checked:
        preflight(config, allow_download=allow_download)
    ensure_prepared(config, lambda nested: run_experiment(nested, yes=True, quiet=quiet), quiet=quiet)
    run = RunDir(config.run_dir())
    run.lock()
    try:
        state = run.read_state()
        plan = make_plan(run, config, start)
        confirm(plan, run, yes, ask)
        if plan.redo and not quiet:
            console.print(f"redoing {len(plan.redo)} step(s):\n{plan.describe()}")
        supersede(run, plan, state)
        run.write_state(state)
        run.save_config(config)
        run.rebuild_metrics()  # from the committed folders: repairs a driver killed mid-bookkeeping
        load_plugins(config)
        state.setdefault("name", config.name)
        state.setdefault("created", now())
        fps = plan.fingerprints
        if shared is None and batch.applies(config):  # a vector world: its steps at NumPy speed, in batches
            stop = (lambda k: _failed(run, state, config, k, quiet)) if config.stop_when else None
            batch.run_batched(run, state, config, fps, quiet, stop=stop)
        trackers = Trackers(config, run)
        for step in steps(config.iterations):
            key = step_key(step)
            if run.is_committed(*step):
                entry = state["steps"].get(key, {})
                if entry.get("status") != "done":  # killed between the commit and the journal write
                    stats = run.committed_stats(*step)
                    state["steps"][key] = {**entry, "status": "done", "fingerprint": fps[key],
                                           "seed": stats.get("seed"), "stats": step_summary(stats)}
                    run.write_state(state)
            else:
                if shared is not None:
                    _execute_or_share(run, state, config, step, fps[key], quiet, shared)
                else:
                    _execute(run, state, config, step, fps[key], quiet)
                if step[1] == "evaluate":
                    trackers.log(step[0])
            release(run, step)
            if step[1] == "evaluate" and _failed(run, state, config, step[0], quiet):
                break
        trackers.finish()
        write_report(run)
        # --- terminal summary (collapsebench.summary): provisional wiring, to be redone in the driver rewrite
        if not quiet:
            from collapsebench.summary import print_summary

            print_summary(run.path)
        # --- end of provisional wiring
        return run
    finally:
        run.unlock()


def _failed(run: RunDir, state: dict[str, Any], config: Config, iteration: int, quiet: bool) -> bool:
    """Record every failure rule's time to failure (up to ``iteration``) in the journal; True when a
    rule with ``stop: true`` has failed, so the run ends here."""
    if not config.stop_when:
        if state.pop("failure", None) is not None:
            run.write_state(state)
        return False
    entry = journal_entry(config, time_to_failure(run, config, upto=iteration))
    if entry != state.get("failure"):
        state["failure"] = entry
        run.write_state(state)
    if entry["stopped_at"] is not None and not quiet:
        console.print(f"[yellow]stopped[/] at iteration {entry['stopped_at']}: {entry['stopped_by']}")
    return entry["stopped_at"] is not None


def _execute_or_share(run: RunDir, state: dict[str, Any], config: Config, step: Step, fingerprint: str, quiet: bool,
                      shared: SharedSteps) -> None:
    """Adopt the step from another run with the same fingerprint, or compute it (and offer it)."""
    key = step_key(step)
    source = shared.run(run.path, step, fingerprint, lambda: _execute(run, state, config, step, fingerprint, quiet))
    if source is None:
        return
    stats = run.committed_stats(*step)
    state["steps"][key] = {"status": "done", "started": now(), "finished": now(), "duration_s": 0.0,
                           "seed": stats.get("seed"), "fingerprint": fingerprint, "executor": "shared",
                           "stats": step_summary(stats), **source}
    run.write_state(state)
    if step[1] == "evaluate":
        run.rebuild_metrics(step[0])
    if not quiet:
        console.print(f"[bold]{key}[/] shared from {source.get('shared_from')}")


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
    entry = start_entry(state, config, step, fingerprint, spec.name)
    run.write_state(state)
    if not quiet:
        console.print(f"[bold]{key}[/] ({spec.name}) ...")
    orphan = run.stop_worker(iteration, phase)
    if orphan is not None:
        entry["stopped_orphan"] = orphan  # a worker left by a killed driver, stopped before its folder is reused
    try:
        run_step(config, run, step)
    except BaseException as exc:
        fail_entry(entry, exc)
        run.write_state(state)
        raise
    finish_entry(entry, run.committed_stats(iteration, phase))
    run.write_state(state)
    if phase == "evaluate":
        rows = run.rebuild_metrics(iteration)
        if not quiet and rows:  # --- provisional wiring of collapsebench.summary (see run_experiment)
            from collapsebench.summary import print_progress

            print_progress(run, config, iteration)
