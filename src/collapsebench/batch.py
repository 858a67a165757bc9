"""The batched commit policy of vector worlds: the same steps, plug-ins, run directory and journal
as every run, at NumPy speed.

A step of a vector world (the Gaussian, mixture and KDE settings) computes for microseconds; what
the general path spends around each step (the context rebuilt from the saved config, `datasets`
imported, opened and saved, an fsync per file, the journal written twice, and for accumulate every
earlier generation read again) made 100 iterations take 10-30 s. When :func:`applies`, the step
runner of :mod:`collapsebench.loop` completes the steps with :class:`Batched`:

* it computes a step in this process with the same phases and plug-ins
  (:func:`collapsebench.phases.work`), writing the same folders; the data travel as
  :class:`~collapsebench.data.ArrowRows`, and the real split, the holdout and each S(k) are read
  once and kept, so accumulate's curate is one concatenation, not k reads;
* steps (computed here or adopted from another cell of a sweep) are sealed in their work folders
  and committed together, at the end of an iteration once ``BATCH_S`` seconds have passed since
  the last commit, after each evaluation when failure rules may stop the run, when a shared step
  is offered to other cells, and at the end: one sync makes the batch's files durable, the folders
  are renamed in step order, the journal and ``metrics.jsonl`` are written once, and a second sync
  makes those durable (no file is fsynced on its own); a step reads the earlier steps of its batch
  from their sealed work folders.

Which runs are batched follows the plug-ins' declarations (``batched=True`` at registration: the
plug-in works on in-memory ArrowRows), not their names. Resuming is unchanged: a committed folder
proves its step finished (the journal is repaired from committed folders), and the sealed work
folders of a batch interrupted before its commit are redone, by either policy, with the same
numbers. ``COLLAPSEBENCH_BATCH=0`` turns batching off.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collapsebench import registry as R
from collapsebench.api import PhaseContext
from collapsebench.config import Config, Spec
from collapsebench.data import ArrowRows, read_saved
from collapsebench.io import deferred_sync, publish_folder, sync
from collapsebench.journal import RunState, StepRecord
from collapsebench.layout import Step, step_key
from collapsebench.phases import work
from collapsebench.redo import release
from collapsebench.run import RunDir
from collapsebench.summary import print_progress

BATCH_S = 1.0  # seconds of work between commits: at most this much is redone after a kill
SWITCH = "COLLAPSEBENCH_BATCH"  # "0": no run is batched (every step committed as it ends)



def applies(config: Config) -> bool:
    """Every plug-in of the run declares ``batched`` (it works on ArrowRows), every phase runs
    inline, without data preprocessing, training stages or trackers (those take `datasets` tables
    or run elsewhere), and batching is not switched off."""
    if os.environ.get(SWITCH, "1") == "0":
        return False
    if config.tracking or config.train.stages or config.data.preprocess:
        return False
    if any(config.executor_for(phase).name != "inline" for phase in ("curate", "train", "generate", "evaluate")):
        return False
    chosen: list[tuple[Any, Spec]] = [
        (R.data_sources, config.data.source), (R.regimes, config.curate.regime), (R.trainers, config.train.trainer),
        (R.generators, config.generate.generator), *((R.evaluations, spec) for spec in config.evaluate.evaluations),
        *((R.preprocessors, spec) for spec in config.curate.preprocess)]
    return all(registry.entry(spec.name).batched for registry, spec in chosen)


@dataclass
class BatchContext(PhaseContext):
    """A phase context whose datasets are kept in memory for the whole run and whose earlier steps
    may be sealed work folders of the current batch (``staged``)."""

    staged: set[Step] = field(default_factory=set)
    kept: dict[tuple[str, int], ArrowRows] = field(default_factory=dict)

    def phase_dir(self, iteration: int, phase: str) -> Path:
        if (iteration, phase) in self.staged:
            return self.layout.tmp_dir(iteration, phase)
        return super().phase_dir(iteration, phase)

    def load(self, path: Path) -> Any:
        return read_saved(path)

    def _kept(self, key: tuple[str, int], where: Callable[[], Path]) -> ArrowRows:
        if key not in self.kept:
            self.kept[key] = read_saved(where())
        return self.kept[key]

    def real(self) -> Any:
        return self._kept(("real", 0), lambda: self.real_dir)

    def holdout(self) -> Any:
        return self._kept(("holdout", 0), lambda: self.holdout_dir)

    def samples(self, iteration: int | None = None) -> Any:
        k = self.iteration if iteration is None else iteration
        return self._kept(("samples", k), lambda: self.require(k, "generate", "samples"))


class Batched:
    """The commit policy of :func:`applies` runs (see the module docstring): steps computed in this
    process, sealed, and committed in batches. Used as a context manager around the run's steps:
    leaving it commits what is sealed, also when a later step failed (sealed steps are finished work)."""

    batched = True

    def __init__(self, run: RunDir, state: RunState, config: Config, quiet: bool):
        self.run, self.state, self.config, self.quiet = run, state, config, quiet
        self.staged: set[Step] = set()
        self.kept: dict[tuple[str, int], ArrowRows] = {}
        self.pending: list[Step] = []
        self.dirty = False  # the journal has changes not yet written
        self.last = time.monotonic()
        self._deferred = deferred_sync()

    def __enter__(self) -> Batched:
        self._deferred.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.flush()
        finally:
            self._deferred.__exit__(None, None, None)

    def executor(self, step: Step) -> str:
        return "inline"

    def started(self, step: Step, record: StepRecord) -> None:
        self.dirty = True

    def compute(self, step: Step, record: StepRecord) -> tuple[dict[str, Any], bool]:
        """Run the step here, into its work folder, sealed: (its stats, sealed)."""
        iteration, phase = step
        ctx = BatchContext(config=self.config, run_dir=self.run.path, iteration=iteration, phase=phase,
                           seed=record.seed or 0, out_dir=self.run.tmp_dir(iteration, phase), staged=self.staged,
                           kept=self.kept)
        return work(ctx, record.fingerprint or "", resumable=False), True

    def finished(self, step: Step, record: StepRecord, sealed: bool) -> None:
        if sealed:
            self.staged.add(step)
        self.pending.append(step)
        if step[1] == "evaluate" and time.monotonic() - self.last >= BATCH_S:
            self.flush()

    def failed(self, step: Step, record: StepRecord) -> None:
        pass  # written with the batch's commit

    def flush(self) -> None:
        """Commit the batch: what is sealed, the journal, the metrics."""
        if self.pending or self.dirty:
            _commit(self.run, self.state, self.config, self.pending, self.staged, self.quiet)
            self.dirty = False
            self.last = time.monotonic()


def _commit(run: RunDir, state: RunState, config: Config, pending: list[Step], staged: set[Step], quiet: bool) -> None:
    """Commit the sealed steps of a batch: sync, rename in step order, journal and metrics, sync;
    their superseded copies go."""
    if pending:
        sync()
        for step in pending:
            if step in staged:
                publish_folder(run.tmp_dir(*step), run.phase_dir(*step))
        staged.difference_update(pending)
    run.write_state(state)
    evaluated = [iteration for iteration, phase in pending if phase == "evaluate"]
    rows = run.rebuild_metrics(evaluated[-1]) if evaluated else []
    sync()
    for step in pending:
        release(run, step)
    if not quiet and rows:
        print_progress(state, rows, config, evaluated[-1],  # progress, ETA, headline metrics of the batch
                       steps=f"{step_key(pending[0])} .. {step_key(pending[-1])} (inline, batched)")
    pending.clear()
