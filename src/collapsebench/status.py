"""`collapsebench status`: a table of iterations x phases with status, durations, counts and the
latest metrics, read from the journal and the committed folders (no torch)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from collapsebench.config import PHASES
from collapsebench.console import console
from collapsebench.journal import StepRecord
from collapsebench.layout import RunLayout, SweepLayout, step_key, steps
from collapsebench.registry import headline_metrics

ALERTS = {0: "[green]ok[/]", 1: "[yellow]warning[/]", 2: "[bold red]critical[/]"}  # ECE early warning
COUNTS = {"curate": ("size", "real_size"), "generate": ("samples",), "train": ("loss",)}


def cell(record: StepRecord | None, committed: bool, active: bool, phase: str) -> str:
    if committed:
        text = "[green]done[/]"
        if record is not None and record.duration_s is not None:
            text += f" {record.duration_s:.1f}s"
        metrics = (record.stats.metrics if record is not None and record.stats is not None else None) or {}
        for key in COUNTS.get(phase, ()):
            value = metrics.get(key)
            if value is not None:
                text += f" {key}={value:.4g}" if isinstance(value, float) else f" n={value}"
        return text
    if record is None:
        return "[dim]pending[/]"
    if record.running:
        return "[yellow]running[/]" if active else "[red]interrupted[/]"
    if record.failed:
        return f"[red]failed[/] {(record.error or '')[:40]}"
    return "[dim]pending[/]"


def status_table(run_dir: str | Path) -> RenderableType:
    run = RunLayout(run_dir)
    config = run.load_config()
    state = run.read_state()
    active = run.is_locked()
    metrics = {row["iteration"]: row for row in run.read_metrics()}
    shown = [k for k in headline_metrics(config) if any(k in r for r in metrics.values())]
    alert = sorted({k for r in metrics.values() for k in r if k.endswith("_alert_level")})
    rows: list[list[str]] = []
    by_iter: dict[int, list[str]] = {}
    for step in steps(config.iterations):
        record = state.step(step_key(step))
        by_iter.setdefault(step[0], []).append(cell(record, run.is_committed(*step), active, step[1]))
    for k, cells in by_iter.items():
        if k == 0:
            cells = cells + [""] * (len(PHASES) - 1)
        row = metrics.get(k, {})
        extra = [f"{row[m]:.4g}" if isinstance(row.get(m), float) else "" for m in shown]
        extra += [ALERTS.get(int(row[m]), "") if isinstance(row.get(m), (int, float)) else "" for m in alert]
        rows.append(["0 (real)" if k == 0 else str(k), *cells, *extra])
    return status_view(f"{config.name}  ({run.path})", [*shown, *alert], rows)


# Metric columns go by a short name and a legend: a full key as a header is cut even at 120 columns.
ABBREVIATIONS = {"holdout_perplexity": "ppl", "holdout_cross_entropy": "CE"}
TABLE_WIDTH = 100  # what the run's table needs without folding every cell


def abbreviate(metric: str) -> str:
    if metric in ABBREVIATIONS:
        return ABBREVIATIONS[metric]
    if metric.endswith("_alert_level"):
        return f"alert {abbreviate(metric.removesuffix('_alert_level'))}"
    return metric


def status_view(title: str, metrics: list[str], rows: list[list[str]]) -> RenderableType:
    """The run's rows (iteration, one cell a phase, then the metrics) as a table, or, on a terminal
    narrower than the table needs, as one paragraph an iteration; either way with the legend of the
    abbreviated metric names, so that nothing is cut."""
    headers = [abbreviate(m) for m in metrics]
    legend = "; ".join(f"{h} = {m}" for h, m in zip(headers, metrics, strict=True) if h != m)
    parts: list[RenderableType] = []
    if console.width < TABLE_WIDTH:
        parts.append(Text.from_markup(f"[bold]{escape(title)}[/]"))
        for row in rows:
            values = "  ".join(f"{h} {v}" for h, v in zip(headers, row[1 + len(PHASES):], strict=True) if v)
            parts.append(Text.from_markup(f"[bold]iteration {row[0]}[/]" + (f"   {values}" if values else "")))
            for phase, text in zip(PHASES, row[1:1 + len(PHASES)], strict=True):
                if text:
                    parts.append(Padding(Text.from_markup(f"{phase:<9} {text}"), (0, 0, 0, 2), expand=False))
    else:
        table = Table("iter", *PHASES, *headers, title=escape(title))
        for column in table.columns:
            column.overflow = "fold"
        for row in rows:
            table.add_row(*row)
        parts.append(table)
    if legend:
        parts.append(Text(legend, style="dim"))
    return Group(*parts)


def failure_lines(run_dir: str | Path) -> list[str]:
    """The time to failure of each failure rule, as the driver recorded it."""
    failure = RunLayout(run_dir).read_state().failure
    lines = []
    for c in failure.time_to_failure if failure else []:
        if c.iteration is not None:
            lines.append(f"[red]failed[/] at iteration {c.iteration}: {escape(c.rule)} (value {c.value or 0.0:.4g})"
                         + (" - run stopped" if failure and failure.stopped_at == c.iteration and c.stop else ""))
        else:
            lines.append(f"[green]not failed[/] up to iteration {c.evaluated_to}: {escape(c.rule)}")
    return lines


def sweep_table(sweep: SweepLayout) -> Table:
    """The cells of a sweep: state, progress, latest headline metric, time to failure, error line."""
    from collapsebench.analysis.cells import cell_rows

    table = Table("cell", "seed", "state", "steps", "iter", "latest", "time to failure", "error",
                  title=f"sweep {sweep.path.name}  ({sweep.path})")
    style = {"done": "green", "stopped": "yellow", "running": "yellow", "failed": "red", "incomplete": "red"}
    for row in cell_rows(sweep):
        state = f"[{style[row['state']]}]{row['state']}[/]" if row["state"] in style else row["state"]
        latest = f"{row['metric']}={row['value']:.4g}" if row["metric"] else ""
        table.add_row(escape(row["label"]), str(row["seed"]), state, row["steps"], str(row["iteration"] or ""), latest,
                      escape(row["time_to_failure"]), escape(row["error"][:120]))
    return table


def print_sweep_status(sweep: SweepLayout) -> None:
    from collapsebench.analysis.cells import cell_rows

    console.print(sweep_table(sweep))
    rows = cell_rows(sweep)
    counts = {s: sum(1 for r in rows if r["state"] == s) for s in dict.fromkeys(r["state"] for r in rows)}
    history = sweep.manifest().get("history") or [{}]
    line = ", ".join(f"{n} {s}" for s, n in counts.items())
    shared = history[-1].get("shared_steps")
    if shared:
        line += f"; {shared} shared steps saved {history[-1].get('shared_seconds_saved', 0):.1f} s"
    locked = RunLayout(sweep.path).is_locked()
    console.print(f"{len(rows)} cells: {line}" + ("; the sweep's driver is running" if locked else ""))
    for row in rows:  # the error lines in full (the table may cut them)
        if row["error"]:
            console.print(f"[red]{row['state']}[/]: {escape(row['label'])} seed {row['seed']} ({row['dir']}): "
                          f"{escape(row['error'])}", highlight=False)


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

    if SweepLayout(run_dir).exists():
        print_sweep_status(SweepLayout(run_dir))
        return
    console.print(status_table(run_dir))
    for line in failure_lines(run_dir):
        console.print(line)
    run = RunLayout(run_dir)
    jobs = jobs_table(run, run.is_locked())
    if jobs is not None:
        console.print(jobs)
    if run.jobs_file.exists():
        console.print(f"jobs: {run.jobs_file} (job ids, states, logs and resources of every job)")
    entries, size = cache_size()
    console.print(f"token cache: {cache_root()} ({entries} entries, {size / 2**20:.1f} MiB)")
