"""`collapsebench status`: a table of iterations x phases with status, durations, counts and the
latest metrics, read from the journal and the committed folders (no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from collapsebench.config import PHASES
from collapsebench.console import console
from collapsebench.io import FileLock
from collapsebench.layout import LOCK_FILE, RunLayout, step_key, steps

ALERTS = {0: "[green]ok[/]", 1: "[yellow]warning[/]", 2: "[bold red]critical[/]"}  # ECE early warning
COUNTS = {"curate": ("size", "real_size"), "generate": ("samples",), "train": ("loss",)}


def is_locked(run: RunLayout) -> bool:
    return FileLock(run.path / LOCK_FILE).holder() is not None


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


def print_status(run_dir: str | Path) -> None:
    from collapsebench.trainers.token_cache import cache_root, cache_size

    console.print(status_table(run_dir))
    entries, size = cache_size()
    console.print(f"token cache: {cache_root()} ({entries} entries, {size / 2**20:.1f} MiB)")
