"""`collapsebench status`: a table of iterations x phases with status, durations, counts and the
latest metrics, read from the journal and the committed folders (no torch)."""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Any

from rich.table import Table

from collapsebench.config import PHASES
from collapsebench.console import console
from collapsebench.layout import LOCK_FILE, RunLayout, step_key, steps

ALERTS = {0: "[green]ok[/]", 1: "[yellow]warning[/]", 2: "[bold red]critical[/]"}  # ECE early warning
COUNTS = {"curate": ("size", "real_size"), "generate": ("samples",), "train": ("loss",)}


def is_locked(run: RunLayout) -> bool:
    path = run.path / LOCK_FILE
    if not path.exists():
        return False
    with open(path) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def cell(entry: dict[str, Any] | None, committed: bool, active: bool, phase: str) -> str:
    if committed:
        stats = (entry or {}).get("stats", {})
        text = "[green]done[/]"
        if "duration_s" in (entry or {}):
            text += f" {entry['duration_s']:.1f}s"  # type: ignore[index]
        for key in COUNTS.get(phase, ()):
            value = stats.get("metrics", {}).get(key)
            if value is not None:
                text += f" {key}={value:.4g}" if isinstance(value, float) else f" n={value}"
        return text
    if entry is None:
        return "[dim]pending[/]"
    if entry.get("status") == "running":
        return "[yellow]running[/]" if active else "[red]interrupted[/]"
    if entry.get("status") == "failed":
        return f"[red]failed[/] {entry.get('error', '')[:40]}"
    return "[dim]pending[/]"


def status_table(run_dir: str | Path) -> Table:
    run = RunLayout(run_dir)
    config = run.load_config()
    state = run.read_state()
    active = is_locked(run)
    metrics = {row["iteration"]: row for row in run.read_metrics()}
    shown = [k for k in ("holdout_perplexity", "holdout_cross_entropy") if any(k in r for r in metrics.values())]
    alert = sorted({k for r in metrics.values() for k in r if k.endswith("_alert_level")})
    table = Table("iter", *PHASES, *shown, *alert, title=f"{config.name}  ({run.path})")
    by_iter: dict[int, list[str]] = {}
    for step in steps(config.iterations):
        entry = state["steps"].get(step_key(step))
        by_iter.setdefault(step[0], []).append(cell(entry, run.is_committed(*step), active, step[1]))
    for k, cells in by_iter.items():
        if k == 0:
            cells = cells + [""] * (len(PHASES) - 1)
        row = metrics.get(k, {})
        extra = [f"{row[m]:.4g}" if isinstance(row.get(m), float) else "" for m in shown]
        extra += [ALERTS.get(int(row[m]), "") if isinstance(row.get(m), (int, float)) else "" for m in alert]
        table.add_row("0 (real)" if k == 0 else str(k), *cells, *extra)
    return table


def jobs_table(run: RunLayout, active: bool) -> Table | None:
    """The jobs of ``jobs.jsonl`` that are queued or running (SLURM's states refreshed by ``sacct``
    where it is on this machine), or None when there are none."""
    from collapsebench.executors.records import FINAL, live_jobs, slurm_states

    live = live_jobs(run.read_jobs())
    states = slurm_states([str(r["job_id"]) for r in live if r.get("executor") == "slurm"])
    table = Table(title="jobs queued or running")
    for column in ("task", "executor", "job", "state", "log"):
        table.add_column(column, no_wrap=column != "log", overflow="fold")
    for r in live:
        state = r.get("state", "")
        if r.get("executor") == "slurm":
            state = states.get(str(r["job_id"]), state)
        elif not active:
            state = f"{state} (its driver has stopped)"
        if state not in FINAL:
            table.add_row(r.get("key", ""), r.get("executor", ""), str(r.get("job_id") or r.get("actor") or ""),
                          state, r.get("log", ""))
    return table if table.row_count else None


def print_status(run_dir: str | Path) -> None:
    from collapsebench.trainers.token_cache import cache_root, cache_size

    console.print(status_table(run_dir))
    run = RunLayout(run_dir)
    jobs = jobs_table(run, is_locked(run))
    if jobs is not None:
        console.print(jobs)
    if run.jobs_file.exists():
        console.print(f"jobs: {run.jobs_file} (job ids, states, logs and resources of every job)")
    entries, size = cache_size()
    console.print(f"token cache: {cache_root()} ({entries} entries, {size / 2**20:.1f} MiB)")
