"""The batched driver of vector worlds: the same phases, plug-ins, run directory and journal, at
NumPy speed.

A step of a vector world (the Gaussian, mixture and KDE settings) computes for microseconds; what
the general driver spends around each step (the context rebuilt from the saved config, `datasets`
imported, opened and saved, an fsync per file, the journal written twice, and for accumulate every
earlier generation read again) made 100 iterations take 10-30 s. When :func:`applies`, this
driver runs the steps still to do in this process:

* the same phases and plug-ins (:func:`collapsebench.phases.work`) write the same folders; the
  data travel as :class:`~collapsebench.data.ArrowRows`, and the real split, the holdout and each
  S(k) are read once and kept, so accumulate's curate is one concatenation, not k reads;
* steps are sealed in their work folders and committed together, at the end of an iteration once
  ``BATCH_S`` seconds have passed since the last commit, and at the end: one sync makes the
  batch's files durable, the folders are renamed in step order, the journal and ``metrics.jsonl``
  are written once, and a second sync makes those durable (no file is fsynced on its own); a step
  reads the earlier steps of its batch from their sealed work folders.

Resuming is unchanged: a committed folder proves its step finished (the journal is repaired from
committed folders), and the sealed work folders of a batch interrupted before its commit are
redone, by either driver, with the same numbers. ``COLLAPSEBENCH_BATCH=0`` turns this driver off.
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
from collapsebench.console import console, metrics_line
from collapsebench.data import ArrowRows, read_saved
from collapsebench.io import deferred_sync, publish_folder, sync
from collapsebench.layout import Step, step_key, steps
from collapsebench.phases import work
from collapsebench.run import RunDir, fail_entry, finish_entry, start_entry

BATCH_S = 1.0  # seconds of work between commits: at most this much is redone after a kill
SWITCH = "COLLAPSEBENCH_BATCH"  # "0": every step through the general driver

# the built-in plug-ins that work on ArrowRows
SOURCES = frozenset({"gaussian", "gaussian_mixture"})
REGIMES = frozenset({"replace", "accumulate", "accumulate_subsample", "grow", "clean_fraction"})
TRAINERS = frozenset({"gaussian_mle", "gmm", "kde"})
GENERATORS = frozenset({"gaussian", "gmm", "kde"})
EVALUATIONS = frozenset({"toy_stats"})
PREPROCESSORS = frozenset({"truncate_likely"})  # in curate.preprocess


def applies(config: Config) -> bool:
    """A vector world made of built-in plug-ins only, run inline, without data preprocessing,
    training stages or trackers (those take `datasets` tables or run elsewhere), and not switched off."""
    if os.environ.get(SWITCH, "1") == "0":
        return False
    if config.tracking or config.train.stages or config.data.preprocess:
        return False
    if any(config.executor_for(phase).name != "inline" for phase in ("curate", "train", "generate", "evaluate")):
        return False
    chosen: list[tuple[Any, Spec, frozenset[str]]] = [
        (R.data_sources, config.data.source, SOURCES), (R.regimes, config.curate.regime, REGIMES),
        (R.trainers, config.train.trainer, TRAINERS), (R.generators, config.generate.generator, GENERATORS),
        *((R.evaluations, spec, EVALUATIONS) for spec in config.evaluate.evaluations),
        *((R.preprocessors, spec, PREPROCESSORS) for spec in config.curate.preprocess)]
    return all(spec.name in allowed and registry.entry(spec.name).builtin for registry, spec, allowed in chosen)


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


def run_batched(run: RunDir, state: dict[str, Any], config: Config, fingerprints: dict[str, str], quiet: bool,
                stop: Callable[[int], bool] | None = None) -> None:
    """Run every step of ``config`` not yet committed in ``run``, in batches (see the module docstring).

    ``stop`` (the run's failure rules, ``stop_when``): after each evaluation the batch is committed
    and ``stop(iteration)`` says whether the run ends there."""
    todo = [step for step in steps(config.iterations) if not run.is_committed(*step)]
    if not todo:
        return
    staged: set[Step] = set()
    kept: dict[tuple[str, int], ArrowRows] = {}
    pending: list[Step] = []
    last = time.monotonic()
    with deferred_sync():
        try:
            for iteration, phase in todo:
                fingerprint = fingerprints[step_key((iteration, phase))]
                entry = start_entry(state, config, (iteration, phase), fingerprint, "inline")
                entry["batched"] = True
                orphan = run.stop_worker(iteration, phase)
                if orphan is not None:
                    entry["stopped_orphan"] = orphan  # a worker left by a killed driver
                ctx = BatchContext(config=config, run_dir=run.path, iteration=iteration, phase=phase, seed=entry["seed"],
                                   out_dir=run.tmp_dir(iteration, phase), staged=staged, kept=kept)
                try:
                    stats = work(ctx, fingerprint)
                except BaseException as exc:
                    fail_entry(entry, exc)
                    raise
                finish_entry(entry, stats)
                staged.add((iteration, phase))
                pending.append((iteration, phase))
                if phase == "evaluate" and (stop is not None or time.monotonic() - last >= BATCH_S):
                    _commit(run, state, pending, staged, quiet)
                    last = time.monotonic()
                    if stop is not None and stop(iteration):
                        return
        finally:
            _commit(run, state, pending, staged, quiet)  # sealed steps are finished work, also when a later one failed


def _commit(run: RunDir, state: dict[str, Any], pending: list[Step], staged: set[Step], quiet: bool) -> None:
    """Commit the sealed steps of a batch: sync, rename in step order, journal and metrics, sync."""
    if pending:
        sync()
        for step in pending:
            publish_folder(run.tmp_dir(*step), run.phase_dir(*step))
        staged.difference_update(pending)
    run.write_state(state)
    evaluated = [iteration for iteration, phase in pending if phase == "evaluate"]
    rows = run.rebuild_metrics(evaluated[-1]) if evaluated else []
    sync()
    if not quiet and rows:
        console.print(f"[bold]{step_key(pending[0])} .. {step_key(pending[-1])}[/] (inline, batched)  "
                      + metrics_line(rows[-1], R.headline_metrics(run.load_config())))
    pending.clear()
