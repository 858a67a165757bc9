"""The driver: for each iteration, for each phase: skip (committed) | run the step | record it.

Every step that is not committed goes through one path, :class:`StepRunner`, whether it is computed
here, run on an executor, or adopted from another run of a sweep (a shared step): that path stops
a worker a killed driver left on the step, records the attempt in the journal, completes the step,
records its end (done, with its stats, or failed, with the error), and hands it to the run's commit
policy. The policy decides when finished work becomes committed: :class:`Immediate` (each step as
it ends: its folder, the journal, the metrics) or :class:`collapsebench.batch.Batched` (vector
worlds: sealed steps committed together). After each evaluation the failure rules (``stop_when``,
:mod:`collapsebench.failure`) may end the run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from collapsebench import batch
from collapsebench.analysis.report import write_report
from collapsebench.api import Dataset, Task, Tracker, phase_resources
from collapsebench.config import Config
from collapsebench.console import console
from collapsebench.environment import record as record_environment
from collapsebench.errors import UserError
from collapsebench.failure import journal_entry, time_to_failure
from collapsebench.io import phase_seed, publish_folder, read_stats
from collapsebench.journal import Adopted, RunState, StepRecord, now
from collapsebench.layout import RunLayout, Step, step_key, steps
from collapsebench.phases import SPLITS, execute
from collapsebench.plugins import load_plugins
from collapsebench.prepare import ensure_prepared
from collapsebench.redo import check_from, check_run_dir, confirm, make_plan, release, supersede
from collapsebench.registry import executors, trackers
from collapsebench.run import RunDir
from collapsebench.summary import print_progress, print_summary


class SharedSteps(Protocol):
    """Steps computed once for several runs (a sweep's cells): ``run`` either adopts a committed copy
    of the step with the same fingerprint from another run, sealed in this run's work folder
    (returning where it came from), or calls ``execute`` and then ``publish`` (which commits what is
    finished) and offers the result to the others (returning None)."""

    def run(self, run_dir: Path, step: Step, fingerprint: str, execute: Callable[[], None],
            publish: Callable[[], None]) -> Adopted | None: ...


class CommitPolicy(Protocol):
    """When the steps the runner finishes become committed (see the module docstring). ``compute``
    returns the step's stats and whether its folder is only sealed (committed later by the policy)."""

    batched: bool

    def __enter__(self) -> CommitPolicy: ...

    def __exit__(self, *exc: object) -> None: ...

    def executor(self, step: Step) -> str: ...

    def started(self, step: Step, record: StepRecord) -> None: ...

    def compute(self, step: Step, record: StepRecord) -> tuple[dict[str, Any], bool]: ...

    def finished(self, step: Step, record: StepRecord, sealed: bool) -> None: ...

    def failed(self, step: Step, record: StepRecord) -> None: ...

    def flush(self) -> None: ...


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
                   checked: bool = False, report: Callable[[RunLayout], Path | None] = write_report) -> RunDir:
    """Start or continue the run of ``config``; returns its run directory.

    Plan, validate, then act: the whole config is checked (unless ``checked``: a sweep checked its
    cells already) and the plan of what to redo is made before anything in the run directory
    changes; committed work is removed only with consent (``yes``, or ``ask`` at a terminal), into
    ``superseded/``. The run ends early after the evaluation at which a ``stop_when`` rule with
    ``stop: true`` fails (see :mod:`collapsebench.failure`). ``report`` writes the report when the
    run ends (the command line passes one drawn by another process: :mod:`.analysis.report_process`)."""
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
        record_environment(run.path)  # before any step: a run that fails or is killed has it too
        run.rebuild_metrics()  # from the committed folders: repairs a driver killed mid-bookkeeping
        load_plugins(config)
        state.name = state.name or config.name
        state.created = state.created or now()
        fps = plan.fingerprints
        policy: CommitPolicy = (batch.Batched(run, state, config, quiet) if batch.applies(config)
                                else Immediate(run, state, config, quiet))
        runner = StepRunner(run, state, config, fps, policy, shared, quiet)
        trackers = Trackers(config, run)
        with policy:
            for step in steps(config.iterations):
                if run.is_committed(*step):
                    if state.repair(step_key(step), fps[step_key(step)], run.committed_stats(*step)):
                        run.write_state(state)  # killed between the commit and the journal write
                    release(run, step)
                else:
                    runner.run(step)
                    if step[1] == "evaluate":
                        trackers.log(step[0])
                if step[1] == "evaluate":
                    if config.stop_when:
                        policy.flush()  # the rules read the committed metrics
                    if _failed(run, state, config, step[0], quiet):
                        break
        trackers.finish()
        report(run)
        if not quiet:
            print_summary(run.path)  # first -> last per headline metric, time to failure, wall time, report
        return run
    finally:
        run.unlock()


def _failed(run: RunDir, state: RunState, config: Config, iteration: int, quiet: bool) -> bool:
    """Record every failure rule's time to failure (up to ``iteration``) in the journal; True when a
    rule with ``stop: true`` has failed, so the run ends here."""
    if not config.stop_when:
        if state.set_failure(None):
            run.write_state(state)
        return False
    entry = journal_entry(config, time_to_failure(run, config, upto=iteration))
    if state.set_failure(entry):
        run.write_state(state)
    if entry.stopped_at is not None and not quiet:
        console.print(f"[yellow]stopped[/] at iteration {entry.stopped_at}: {entry.stopped_by}")
    return entry.stopped_at is not None


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
        task = Task(key=step_key(step), target=execute, run_dir=str(run.path),
                    kwargs={"run_dir": str(run.path), "iteration": iteration, "phase": phase})
        executor.wait([executor.submit(task, phase_resources(config, phase))])
    finally:
        executor.close()


# ------------------------------------------------------------------------------------ one step, one path


class StepRunner:
    """The one path of every step that is not committed: the bookkeeping is done here once, and the
    commit policy decides when the finished step is committed (see the module docstring)."""

    def __init__(self, run: RunDir, state: RunState, config: Config, fingerprints: dict[str, str],
                 policy: CommitPolicy, shared: SharedSteps | None, quiet: bool):
        self.run_dir, self.state, self.config, self.fingerprints = run, state, config, fingerprints
        self.policy, self.shared, self.quiet = policy, shared, quiet

    def run(self, step: Step) -> None:
        key = step_key(step)
        record = self.state.start(key, seed=phase_seed(self.config.seed, *step), fingerprint=self.fingerprints[key],
                                  executor=self.policy.executor(step), batched=self.policy.batched)
        self.policy.started(step, record)
        try:
            record.stopped_orphan = self.run_dir.stop_worker(*step)  # a worker a killed driver left
            if self.shared is None:
                self._compute(step, record)
                return
            adopted = self.shared.run(self.run_dir.path, step, self.fingerprints[key],
                                      lambda: self._compute(step, record), self.policy.flush)
            if adopted is not None:  # sealed in our work folder
                record.adopt(adopted, read_stats(self.run_dir.tmp_dir(*step)))
                if not self.quiet:
                    console.print(f"[bold]{key}[/] shared from {adopted.shared_from}")
                self.policy.finished(step, record, True)
        except BaseException as exc:
            if record.running:  # not when committing a finished step failed
                record.fail(exc)
                self.policy.failed(step, record)
            raise

    def _compute(self, step: Step, record: StepRecord) -> None:
        stats, sealed = self.policy.compute(step, record)
        record.finish(stats)
        self.policy.finished(step, record, sealed)


class Immediate:
    """The commit policy of most runs: each step runs on its executor (which commits it) and is
    recorded as it starts and as it ends; an adopted step is committed at once."""

    batched = False

    def __init__(self, run: RunDir, state: RunState, config: Config, quiet: bool):
        self.run, self.state, self.config, self.quiet = run, state, config, quiet

    def __enter__(self) -> Immediate:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def executor(self, step: Step) -> str:
        return self.config.executor_for(step[1]).name

    def started(self, step: Step, record: StepRecord) -> None:
        self.run.write_state(self.state)
        if not self.quiet:
            console.print(f"[bold]{step_key(step)}[/] ({record.executor}) ...")

    def compute(self, step: Step, record: StepRecord) -> tuple[dict[str, Any], bool]:
        run_step(self.config, self.run, step)
        return self.run.committed_stats(*step), False

    def finished(self, step: Step, record: StepRecord, sealed: bool) -> None:
        if sealed:
            publish_folder(self.run.tmp_dir(*step), self.run.phase_dir(*step))
        self.run.write_state(self.state)
        if step[1] == "evaluate":
            rows = self.run.rebuild_metrics(step[0])
            if not self.quiet and rows:
                print_progress(self.state, rows, self.config, step[0])  # progress, ETA, headline metrics
        release(self.run, step)

    def failed(self, step: Step, record: StepRecord) -> None:
        self.run.write_state(self.state)

    def flush(self) -> None:
        pass  # every step is committed as it ends
