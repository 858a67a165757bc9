"""Running a sweep: write its manifest, run the cells that are not finished through an executor,
follow them, and write the sweep's report.

The sweep directory holds ``sweep.json`` (the base config, the grid, the cells) and one ordinary
run directory per cell. Each cell is one task (:func:`run_cell`) on the sweep's executor
(``sweep.executor``, default: 2 local processes, each cell's output in ``<cell>/logs/``), so the
executors of the ``Executor`` contract (local processes, SLURM arrays, Ray) run cells as they run
phases. Every cell runs with the sweep's :class:`~collapsebench.sweep.share.SharedSteps`, so steps
that several cells share are computed once. Re-running the sweep (the same command, or ``resume
SWEEP_DIR``) submits only the cells that are not done: missing, interrupted or failed ones, and
stopped ones whose failure rules changed. The driver watches the cells' journals while they run
and prints progress (done / running / failed, ETA) and each failure as soon as a cell records it.
(Over 300 lines: the manifest, one cell's task, the driver and its progress read top to bottom as
one story; each part is short.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape

from collapsebench.api import Resources, Task
from collapsebench.config import Config, Spec, SweepConfig, config_from_dict, load_raw
from collapsebench.console import console
from collapsebench.errors import UserError
from collapsebench.failure import rules_digest
from collapsebench.io import atomic_write, write_json
from collapsebench.journal import now
from collapsebench.layout import CELL_ERROR_FILE, CellStatus, RunLayout, SweepLayout
from collapsebench.loop import run_experiment
from collapsebench.registry import executors, fingerprints
from collapsebench.run import RunDir
from collapsebench.sweep.grid import Cell, cell_raw, expand, spec_from_options, zip_groups
from collapsebench.sweep.share import SharedSteps
from collapsebench.validate import check_installed, validate_config

LOG_FILE = "sweep.log"
FINISHED = ("done", "stopped")


# ------------------------------------------------------------------------------------ the manifest

def sweep_dir_for(base: dict[str, Any], spec: SweepConfig) -> Path:
    """``output_dir`` of the base config when set, else ``runs/<sweep name>``."""
    if base.get("output_dir"):
        return Path(base["output_dir"]).resolve()
    return (Path("runs") / (spec.name or f"{base.get('name', 'sweep')}-sweep")).resolve()


def create(config_path: str | Path, overrides: Sequence[str] = (), *, grid: Sequence[str] = (),
           zips: Sequence[str] = (), exclude: Sequence[str] = (), baselines: str | None = None,
           name: str | None = None, workers: int | None = None, share: bool | None = None) -> SweepLayout:
    """Expand the grid of a config (its ``sweep:`` block and the command line's axes), check every
    cell's config, and write (or update) the sweep directory's manifest."""
    base = load_raw(config_path, list(overrides))
    block = config_from_dict(base, str(config_path)).sweep
    spec = spec_from_options(block, list(grid), list(zips), list(exclude), baselines, name)
    if workers is not None:
        spec.executor = Spec(name=spec.executor.name, **{**spec.executor.kwargs, "workers": workers})
    if share is not None:
        spec.share = share
    cells, notes = expand(base, spec)
    sweep = SweepLayout(sweep_dir_for(base, spec))
    if RunLayout(sweep.path).exists():
        raise UserError(f"{sweep.path} is a run directory, not a sweep; choose another --name")
    if RunLayout(sweep.path).is_locked():
        raise UserError(f"a sweep driver is running on {sweep.path}; follow it with: collapsebench status {sweep.path}")
    configs = []
    for cell in cells:  # every cell's plug-in arguments, before anything runs
        try:
            configs.append(cell_config(sweep.path, base, spec, cell))
            validate_config(configs[-1])
            check_installed(configs[-1], strict=True)  # the cells run from here
        except UserError as exc:
            raise UserError(f"sweep cell '{cell.label}' (seed {cell.seed}): {exc}") from None
    if configs and configs[0].contrasts is not None:  # the declared claims name cells of this grid
        from collapsebench.analysis.contrasts import check_grid

        check_grid(configs[0].contrasts, [(c.label, c.seed, k.dump()) for c, k in zip(cells, configs)])
    previous = sweep.manifest() if sweep.exists() else {}
    current = {c.id for c in cells}
    retired = [c for c in previous.get("cells", []) + previous.get("retired", []) if c["id"] not in current]
    sweep.path.mkdir(parents=True, exist_ok=True)
    write_json(sweep.manifest_file, {
        "version": 1, "name": sweep.path.name, "created": previous.get("created", now()), "updated": now(),
        "base": base, "spec": spec.model_dump(mode="json"),
        "axes": [*spec.grid, *(k for g in zip_groups(spec) for k in g)],
        "cells": [c.as_dict() for c in cells], "retired": list({c["id"]: c for c in retired}.values()),
        "notes": notes, "history": previous.get("history", []),
    })
    return sweep


def cell_config(sweep_dir: Path, base: dict[str, Any], spec: SweepConfig, cell: Cell | dict[str, Any]) -> Config:
    """The config of one cell: the base with the cell's values, its own folder, and its trackers
    grouped by the sweep with the axes as config keys."""
    entry = cell.as_dict() if isinstance(cell, Cell) else cell
    raw = cell_raw(base, entry["values"])
    raw["name"], raw["output_dir"] = entry["dir"], str(sweep_dir / entry["dir"])
    for tracker in raw.get("tracking") or []:
        if isinstance(tracker, dict) and tracker.get("name") == "wandb":
            tracker.setdefault("group", sweep_dir.name)  # the W&B run's name is the config's: the cell's folder
            tracker.setdefault("axes", entry["values"])
    return config_from_dict(raw, f"sweep cell '{entry['label']}'")


def _manifest_config(sweep: SweepLayout, cell: dict[str, Any]) -> Config:
    manifest = sweep.manifest()
    return cell_config(sweep.path, manifest["base"], SweepConfig.model_validate(manifest["spec"]), cell)


# ------------------------------------------------------------------------------------ one cell

def run_cell(sweep_dir: str, cell: str) -> None:
    """The task of one cell: run (or continue) its run directory, sharing steps with the others.
    A failure outside any step (a refused config, a broken plug-in) goes to ``<cell>/error.json``."""
    sweep = SweepLayout(sweep_dir)
    entry = next((c for c in sweep.cells() if c["id"] == cell), None)
    if entry is None:
        raise UserError(f"{sweep.path}: no cell {cell} in {sweep.manifest_file.name}")
    run = sweep.run(entry)
    run.path.mkdir(parents=True, exist_ok=True)
    (run.path / CELL_ERROR_FILE).unlink(missing_ok=True)
    while run.is_locked():  # still running under an earlier sweep driver: let it finish first
        time.sleep(1.0)
    share = SweepConfig.model_validate(sweep.manifest()["spec"]).share
    try:
        run_experiment(_manifest_config(sweep, entry), shared=SharedSteps(sweep.path, shared_steps(sweep)) if share else None)
    except BaseException as exc:
        write_json(run.path / CELL_ERROR_FILE, {"error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                                                "time": now()})
        raise


def shared_steps(sweep: SweepLayout) -> set[str]:
    """``<step>-<fingerprint>`` of every step that more than one cell of the sweep has."""
    seen: dict[str, int] = {}
    for cell in sweep.cells():
        for key, fp in fingerprints(_manifest_config(sweep, cell)).items():
            seen[f"{key}-{fp}"] = seen.get(f"{key}-{fp}", 0) + 1
    return {name for name, n in seen.items() if n > 1}


# ------------------------------------------------------------------------------------ the driver

def _needs_run(sweep: SweepLayout, cell: dict[str, Any], status: CellStatus) -> bool:
    if status.state == "done":
        return False
    if status.state == "stopped":  # continue only if the rules that stopped it changed
        failure = sweep.run(cell).read_state().failure
        recorded = failure.rules_digest if failure else None
        return recorded != rules_digest(_manifest_config(sweep, cell))
    return True


def schedule(configs: dict[str, Config]) -> list[str]:
    """Cell ids in submission order: round-robin over the groups of cells that share steps, so the
    first cells to run share nothing and the later ones find the shared steps committed."""
    fps = {cid: fingerprints(c) for cid, c in configs.items()}
    counts: dict[tuple[str, str], int] = {}
    for f in fps.values():
        for key, fp in f.items():
            counts[(key, fp)] = counts.get((key, fp), 0) + 1
    groups: dict[Any, list[str]] = {}
    for cid, f in fps.items():
        shared = [(key, fp) for key, fp in f.items() if counts[(key, fp)] > 1]
        groups.setdefault(shared[-1] if shared else cid, []).append(cid)
    order: list[str] = []
    for rank in range(max((len(g) for g in groups.values()), default=0)):
        order += [g[rank] for g in groups.values() if rank < len(g)]
    return order


class Progress:
    """Sweep-level progress from the cells' journals: counts by state, steps done, ETA.

    A cell that this session does not run, or that has ended in it, is not read again: the
    driver polls while the cells run, on the same cores."""

    def __init__(self, sweep: SweepLayout, cells: list[dict[str, Any]]):
        self.sweep, self.cells = sweep, cells
        self.start = time.time()
        self.settled: dict[str, CellStatus] = {}
        self.started: set[str] = set()  # cells seen running (or waiting to) in this session
        self.first = self.statuses()
        self.steps_at_start = sum(s.steps_done for s in self.first.values())
        self.reported: set[str] = set()
        self.last_line = ""

    def settle(self, todo: list[str]) -> None:
        """The cells this session does not run keep their first status."""
        self.settled.update({cid: status for cid, status in self.first.items() if cid not in todo})

    def statuses(self) -> dict[str, CellStatus]:
        out = {}
        for cell in self.cells:
            cid = cell["id"]
            status = self.settled.get(cid) or self.sweep.cell_status(cell)
            if status.state in ("running", "pending", "incomplete"):
                self.started.add(cid)
            elif cid in self.started:
                self.settled[cid] = status  # ended in this session
            out[cid] = status
        return out

    def line(self, statuses: dict[str, CellStatus]) -> str:
        count = {state: sum(1 for s in statuses.values() if s.state == state)
                 for state in ("done", "stopped", "running", "failed", "incomplete", "pending")}
        done = sum(s.steps_done for s in statuses.values())
        left = sum(s.steps_total - s.steps_done for s in statuses.values() if s.state not in FINISHED)
        rate = (done - self.steps_at_start) / max(time.time() - self.start, 1e-9)
        eta = f"ETA {_duration(left / rate)}" if rate > 0 and left else ("ETA -" if left else "")
        parts = [f"{n} {state}" for state, n in count.items() if n]
        return f"[{self.sweep.path.name}] {len(statuses)} cells: {', '.join(parts)}; steps {done}/{done + left} {eta}"

    def report(self, final: bool = False) -> dict[str, CellStatus]:
        statuses = self.statuses()
        for cell in self.cells:
            status = statuses[cell["id"]]
            if status.state == "failed" and cell["id"] not in self.reported:
                self.reported.add(cell["id"])
                console.print(f"[red]failed[/]: {escape(cell['label'])} seed {cell['seed']} ({cell['dir']}): "
                              f"{escape(status.error or '')}", highlight=False)
        line = self.line(statuses)
        if final or line.split(";")[0] != self.last_line.split(";")[0]:
            console.print(line, highlight=False, markup=False)
            self.last_line = line
        return statuses


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def run_sweep(sweep_dir: str | Path, *, poll: float = 2.0, report: bool = True) -> dict[str, CellStatus]:
    """Run every cell of the sweep that is not finished; return each cell's final status."""
    sweep = SweepLayout(sweep_dir)
    manifest = sweep.manifest()
    spec = SweepConfig.model_validate(manifest["spec"])
    lock = RunDir(sweep.path)
    lock.lock()
    try:
        cells = {c["id"]: c for c in manifest["cells"]}
        progress = Progress(sweep, list(cells.values()))
        todo = [cid for cid in cells if _needs_run(sweep, cells[cid], progress.first[cid])]
        progress.settle(todo)
        order = schedule({cid: _manifest_config(sweep, cells[cid]) for cid in todo})
        console.print(f"sweep {sweep.path}: {len(cells)} cells, {len(cells) - len(todo)} finished, "
                      f"running {len(order)} on {spec.executor.name}", highlight=False)
        started = now()
        if order:
            _run_cells(sweep, spec, [cells[cid] for cid in order], progress, poll)
        statuses = progress.report(final=True)
        _record(sweep, started, statuses)
    finally:
        lock.unlock()
    if report:
        from collapsebench.analysis.compare import compare

        out = compare([sweep.path], out=sweep.path / "report", quiet=True)
        if out is not None:
            console.print(f"report: {out}")
    return statuses


def _run_cells(sweep: SweepLayout, spec: SweepConfig, cells: list[dict[str, Any]], progress: Progress,
               poll: float) -> None:
    executor = executors.call(spec.executor.name, key="sweep.executor", kwargs=spec.executor.kwargs)
    tasks = [Task(key=f"cell-{c['dir']}", target=run_cell,
                  kwargs={"sweep_dir": str(sweep.path), "cell": c["id"]}, run_dir=str(sweep.path / c["dir"]))
             for c in cells]
    errors: list[BaseException] = []

    def work() -> None:  # the executor's own wait; failures are read from the cells' folders
        try:
            executor.wait([executor.submit(task, Resources()) for task in tasks])
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=work, name="sweep-cells", daemon=True)
    thread.start()
    while thread.is_alive():
        progress.report()
        thread.join(poll)


def shared_summary(sweep: SweepLayout) -> dict[str, Any]:
    """Steps each cell adopted from another, and the seconds those steps took where they ran."""
    rows = []
    for cell in sweep.cells():
        for key, record in sweep.run(cell).read_state().records():
            if record.shared:
                rows.append({"cell": cell["dir"], "step": key, "saved_s": float(record.saved_s or 0.0)})
    return {"steps": len(rows), "seconds_saved": round(sum(r["saved_s"] for r in rows), 3), "rows": rows}


def _record(sweep: SweepLayout, started: float, statuses: dict[str, CellStatus]) -> None:
    """Append this session's outcome to the manifest: cell counts and the steps shared between cells."""
    manifest = sweep.manifest()
    for cell in manifest["cells"]:  # as of this session's end; `status` reads the cells themselves
        cell["state"] = statuses[cell["id"]].state
    shared = shared_summary(sweep)
    counts = {state: sum(1 for s in statuses.values() if s.state == state) for state in
              ("done", "stopped", "failed", "incomplete", "pending", "running")}
    manifest["history"].append({"started": started, "finished": now(), "cells": counts,
                                "shared_steps": shared["steps"], "shared_seconds_saved": shared["seconds_saved"]})
    atomic_write(sweep.manifest_file, json.dumps(manifest, indent=1, sort_keys=True, default=float))


def detach(sweep: SweepLayout) -> str:
    """Start the sweep's driver (``collapsebench resume SWEEP``) so that it outlives this command;
    say where it runs. An executor that can host it (``Detaching``: SLURM) runs it as a job of its
    own, its output under ``logs/driver/``; otherwise it runs here in the background, in its own
    session, its output in ``sweep.log``."""
    argv = [sys.executable, "-m", "collapsebench", "resume", str(sweep.path)]
    spec = SweepConfig.model_validate(sweep.manifest()["spec"])
    executor = executors.call(spec.executor.name, key="sweep.executor", kwargs=spec.executor.kwargs)
    if hasattr(executor, "detach"):
        job = executor.detach(argv, sweep.path / "logs" / "driver", f"cb-sweep-{sweep.path.name}")
        return f"{spec.executor.name} job {job} (log in {sweep.path / 'logs' / 'driver' / job})"
    with open(sweep.path / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, "COLLAPSEBENCH_PROGRESS": "0"})
    return f"the background (pid {proc.pid}, log {sweep.path / LOG_FILE})"
