"""Steps computed once for all the cells of a sweep that need them.

Fingerprints chain along the data flow (:func:`collapsebench.config.fingerprints`), so two cells
whose step has the same fingerprint have identical inputs up to it: the same seed, data,
tokenizer, and, when only the regime's alpha differs, the same first iteration (there is nothing
to mix before iteration 1 has generated). The first cell to reach such a step computes it while
holding a lock named after the fingerprint (``<sweep>/.shared/<step>-<fingerprint>.lock``) and
records where it committed it; a cell that reaches it later (or waits on the lock meanwhile)
adopts that committed folder: every file hard-linked (copied where the file system cannot link),
the folders themselves new, then committed like any phase. Committed files are never written
again, so linked copies cannot diverge; removing one cell's folder leaves the others' intact.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from collapsebench.io import atomic_write, seal_folder
from collapsebench.journal import Adopted, CommittedStats
from collapsebench.layout import RunLayout, Step, step_key

SHARED_DIR = ".shared"


def link_tree(src: Path, dst: Path) -> int:
    """Recreate the folder tree of ``src`` at ``dst`` with every file hard-linked (or copied where
    linking fails, e.g. across file systems); returns the number of bytes linked."""
    linked = 0
    for folder, _, files in os.walk(src):
        target = dst / Path(folder).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            source = Path(folder) / name
            try:
                os.link(source, target / name)
                linked += source.stat().st_size
            except OSError:
                shutil.copy2(source, target / name)
    return linked


class SharedSteps:
    """The sweep's index of committed steps by fingerprint (what :func:`collapsebench.loop.run_experiment`
    asks before computing a step)."""

    def __init__(self, sweep_dir: str | Path, candidates: set[str] | None = None):
        self.root = Path(sweep_dir) / SHARED_DIR
        self.candidates = candidates  # "<step>-<fingerprint>" of the steps more than one cell has; None: any

    def run(self, run_dir: Path, step: Step, fingerprint: str, execute: Callable[[], None],
            publish: Callable[[], None]) -> Adopted | None:
        """Adopt the step from the cell that committed it, sealed in this cell's work folder for the
        cell's commit policy to commit (returning where from and the seconds it took there), or
        compute it with ``execute``, commit it with ``publish`` and record it for the others
        (returning None)."""
        name = f"{step_key(step)}-{fingerprint}"
        if self.candidates is not None and name not in self.candidates:
            execute()
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{name}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another cell computing this step holds it until it commits
            try:
                source = self._committed(name, step, fingerprint, run_dir)
                if source is None:
                    execute()
                    publish()  # committed before the others may look for it
                    atomic_write(self.root / f"{name}.json", json.dumps({"run": str(run_dir)}))
                    return None
                return self._adopt(source, RunLayout(run_dir), step)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _committed(self, name: str, step: Step, fingerprint: str, run_dir: Path) -> RunLayout | None:
        record = self.root / f"{name}.json"
        if not record.exists():
            return None
        source = RunLayout(json.loads(record.read_text())["run"])
        if source.path == Path(run_dir).resolve() or not source.is_committed(*step):
            return None
        if CommittedStats.of(source.committed_stats(*step)).fingerprint != fingerprint:  # redone since under another config
            return None
        return source

    @staticmethod
    def _adopt(source: RunLayout, run: RunLayout, step: Step) -> Adopted:
        tmp = run.tmp_dir(*step)
        if tmp.exists():
            shutil.rmtree(tmp)
        linked = link_tree(source.phase_dir(*step), tmp)
        seal_folder(tmp, source.committed_stats(*step))
        record = source.read_state().step(step_key(step))
        saved = None if record is None else record.saved_s if record.shared else record.duration_s
        return Adopted(shared_from=str(source.phase_dir(*step)), saved_s=float(saved or 0.0), linked_bytes=linked)
