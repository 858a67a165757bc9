"""The run directory, read-only: where everything lives and how to read it.

    runs/<name>/
      config.yaml      resolved config snapshot
      state.json       journal, written only by the driver, atomically
      metrics.jsonl    one row per evaluated iteration (rebuilt from committed phases)
      jobs.jsonl       what the scheduling executors (SLURM, Ray) ran: job ids, states, logs, resources
      iter_000/curate/ the real data, prepared once: real/, holdout/, tokenizer/
      iter_001/{curate,train,generate,evaluate}/
      report/

A phase writes into ``<phase>.tmp/``; its last act is the rename to ``<phase>/`` with its
``stats.json``, so a committed folder proves the phase finished. Readers (phases reading earlier
phases, ``status``, ``report``, ``compare``) use :class:`RunLayout`; only the driver writes
through :class:`collapsebench.run.RunDir`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collapsebench import journal
from collapsebench.config import PHASES, Config, config_from_dict, read_yaml
from collapsebench.errors import UserError
from collapsebench.io import FileLock, is_committed, read_stats
from collapsebench.journal import RunState

CONFIG_FILE = "config.yaml"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".lock"
SWEEP_FILE = "sweep.json"
CELL_ERROR_FILE = "error.json"  # a sweep cell's failure outside any step (written by the cell's task)
JOBS_FILE = "jobs.jsonl"

Step = tuple[int, str]


def iter_name(iteration: int) -> str:
    return f"iter_{iteration:03d}"


def steps(iterations: int) -> list[Step]:
    """The order of work: iteration 0 prepares the real data, then the loop."""
    return [(0, "curate")] + [(k, p) for k in range(1, iterations + 1) for p in PHASES]


def step_key(step: Step) -> str:
    return f"{step[0]}.{step[1]}"


def step_order(step: Step) -> tuple[int, int]:
    return step[0], PHASES.index(step[1])


def parse_step(text: str) -> Step:
    """'3.train' -> (3, 'train')."""
    it, _, phase = text.partition(".")
    if not it.isdigit() or phase not in PHASES:
        raise UserError(f"'{text}' is not ITERATION.PHASE (phase one of {', '.join(PHASES)}), e.g. 2.train")
    return int(it), phase


class RunLayout:
    """Paths of a run directory and read access to what it holds."""

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def state_file(self) -> Path:
        return self.path / STATE_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def jobs_file(self) -> Path:
        return self.path / JOBS_FILE

    @property
    def report_dir(self) -> Path:
        return self.path / "report"

    def phase_dir(self, iteration: int, phase: str) -> Path:
        return self.path / iter_name(iteration) / phase

    def step_lock(self, iteration: int, phase: str) -> Path:
        """The lock file the process working on a step holds (driver or worker)."""
        return self.path / ".locks" / f"{iteration}.{phase}"

    def tmp_dir(self, iteration: int, phase: str) -> Path:
        return self.path / iter_name(iteration) / f"{phase}.tmp"

    def exists(self) -> bool:
        return self.config_file.exists()

    def is_locked(self) -> bool:
        """Whether a driver holds the run's lock (it is running now)."""
        return FileLock(self.path / LOCK_FILE).holder() is not None

    def load_config(self) -> Config:
        if not self.config_file.exists():
            raise UserError(f"{self.path} is not a collapsebench run directory (no {CONFIG_FILE})")
        return config_from_dict(read_yaml(self.config_file.read_text()), str(self.config_file))

    def read_state(self) -> RunState:
        """The journal (:mod:`collapsebench.journal`; an empty one before the first step)."""
        return journal.read(self.state_file)

    def is_committed(self, iteration: int, phase: str) -> bool:
        return is_committed(self.phase_dir(iteration, phase))

    def committed_stats(self, iteration: int, phase: str) -> dict[str, Any]:
        return read_stats(self.phase_dir(iteration, phase))

    def evaluated_iterations(self) -> Iterator[int]:
        for path in sorted(self.path.glob("iter_*/evaluate/metrics.json")):
            yield int(path.parent.parent.name.split("_")[1])

    def metrics_row(self, k: int) -> dict[str, Any]:
        """Iteration k's row: its evaluation metrics plus the ``metrics`` of its other phases."""
        row: dict[str, Any] = {"iteration": k}
        for phase in ("curate", "train", "generate"):
            if self.is_committed(k, phase):
                summary = self.committed_stats(k, phase).get("metrics", {})
                row.update({f"{phase}/{key}": v for key, v in summary.items()})
        row.update(json.loads((self.phase_dir(k, "evaluate") / "metrics.json").read_text()))
        return row

    def read_jobs(self) -> list[dict[str, Any]]:
        """Every record of ``jobs.jsonl``, oldest first (a job appears once per change of its state)."""
        if not self.jobs_file.exists():
            return []
        return [json.loads(line) for line in self.jobs_file.read_text().splitlines() if line.strip()]

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_file.exists():
            return []
        return [json.loads(line) for line in self.metrics_file.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------ sweeps


@dataclass(frozen=True)
class CellStatus:
    """A sweep cell's progress, read from its run directory."""

    state: str  # pending | running | done | stopped | failed | incomplete
    steps_done: int
    steps_total: int
    last_iteration: int  # the last evaluated iteration (0: none yet)
    error: str | None = None
    stopped_at: int | None = None


class SweepLayout:
    """A sweep directory, read-only: ``sweep.json`` (the manifest ``collapsebench sweep`` writes: the
    base config, the axes, and each cell's id, folder, axis values, label, seed and baseline role)
    and one ordinary run directory per cell."""

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()

    @property
    def manifest_file(self) -> Path:
        return self.path / SWEEP_FILE

    def exists(self) -> bool:
        return self.manifest_file.exists()

    def manifest(self) -> dict[str, Any]:
        if not self.exists():
            raise UserError(f"{self.path} is not a sweep directory (no {SWEEP_FILE})")
        try:
            manifest: dict[str, Any] = json.loads(self.manifest_file.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{self.manifest_file} is corrupt: {exc}") from None
        return manifest

    def cells(self) -> list[dict[str, Any]]:
        cells: list[dict[str, Any]] = self.manifest()["cells"]
        return cells

    def run(self, cell: dict[str, Any]) -> RunLayout:
        return RunLayout(self.path / cell["dir"])

    def cell_status(self, cell: dict[str, Any]) -> CellStatus:
        """Where a cell stands: its journal, its lock, its committed folders and its error file."""
        run = self.run(cell)
        iterations = int(cell.get("iterations") or self.manifest()["base"].get("iterations") or 0)
        total = len(steps(iterations))
        if not run.path.exists():
            return CellStatus("pending", 0, total, 0)
        state = run.read_state()
        done = sum(1 for step in steps(iterations) if run.is_committed(*step))
        evaluated = [k for k in run.evaluated_iterations() if k <= iterations]
        last = max(evaluated, default=0)
        stopped = state.failure.stopped_at if state.failure else None
        error_file = run.path / CELL_ERROR_FILE
        failed = state.failed_steps()
        if run.is_locked():
            return CellStatus("running", done, total, last, failed[-1].error if failed else None)
        if error_file.exists():
            error = json.loads(error_file.read_text()).get("error", "")
            return CellStatus("failed", done, total, last, error)
        if done == total:
            return CellStatus("done", done, total, last)
        if stopped is not None:
            return CellStatus("stopped", done, total, last, stopped_at=int(stopped))
        if failed:
            return CellStatus("failed", done, total, last, failed[-1].error)
        return CellStatus("incomplete" if done else "pending", done, total, last)
