"""What the terminal shows of a run: the numbers the run exists for, how far it is, and how it ended.

Pure functions over a run's own records (``metrics.jsonl``, the journal in ``state.json``), so the
driver calls them as it goes and ``--json`` prints the same summary a person reads:

* :func:`iteration_line`: the headline metrics the evaluations declare, at one iteration, each
  with its change since the first evaluated iteration (``holdout_perplexity 88.1 (+18.2% vs it.1)``);
* :class:`ProgressEstimate`: iteration k of n and the time left, from the durations of the run's
  finished iterations (the median of the last few: an iteration of a growing accumulate run costs
  more than the first, and one slow outlier should not swing the estimate);
* :func:`final_summary` / :func:`render_summary`: first -> last per headline metric, every failure
  rule's time to failure, the wall time and the report's path; a rich table on a terminal, plain
  aligned text in a CI log.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collapsebench.config import Config
from collapsebench.failure import time_to_failure
from collapsebench.journal import RunState
from collapsebench.layout import RunLayout
from collapsebench.registry import headline_metrics

RECENT = 5  # finished iterations whose median duration predicts the next ones
FALLBACK = 4  # metrics shown when no evaluation declares a headline


def shown_metrics(rows: Sequence[Mapping[str, Any]], config: Config) -> list[str]:
    """The headline metrics the evaluations declare; without any, the first few evaluation metrics
    of the rows, as the reports pick them (never the phases' bookkeeping such as ``curate/size``)."""
    from collapsebench.analysis.runs import evaluation_metrics

    return headline_metrics(config) or evaluation_metrics([dict(r) for r in rows])[:FALLBACK]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def change(first: float | None, last: float | None) -> float | None:
    """The relative change from ``first`` to ``last`` (0.182 for +18.2%); None without a nonzero first."""
    if first is None or last is None or first == 0:
        return None
    return (last - first) / abs(first)


def _first(rows: Sequence[Mapping[str, Any]], metric: str) -> tuple[int, float] | None:
    for row in sorted(rows, key=lambda r: int(r["iteration"])):
        value = _number(row.get(metric))
        if value is not None:
            return int(row["iteration"]), value
    return None


def _since(first: tuple[int, float] | None, iteration: int, value: float) -> str:
    if first is None or first[0] >= iteration:
        return ""
    rel = change(first[1], value)
    if rel is None:
        return f" ({value - first[1]:+.4g} vs it.{first[0]})"
    return f" ({rel:+.1%} vs it.{first[0]})"


def iteration_line(rows: Sequence[Mapping[str, Any]], config: Config, iteration: int) -> str:
    """The headline metrics at ``iteration``, each with its change since the first evaluated
    iteration, e.g. ``holdout_perplexity 88.1 (+18.2% vs it.1)  fitted_var 0.61 (-39.0% vs it.1)``."""
    row = next((r for r in rows if int(r["iteration"]) == iteration), None)
    if row is None:
        return f"iteration {iteration}: not evaluated"
    parts = []
    for metric in shown_metrics(rows, config):
        value = _number(row.get(metric))
        if value is not None:
            parts.append(f"{metric} {value:.4g}{_since(_first(rows, metric), iteration, value)}")
    return "  ".join(parts) or "no headline metric in this iteration's row"


# ------------------------------------------------------------------------------------ progress


def duration(seconds: float) -> str:
    """``42 s``, ``1 min 40 s``, ``2 h 05 min``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def iteration_seconds(state: RunState) -> dict[int, float]:
    """Seconds each finished iteration took (the sum of its steps' durations, from the journal);
    iteration 0 (the real data's preparation) is left out: it is paid once."""
    total: dict[int, float] = {}
    finished: set[int] = set()
    for key, record in state.records():
        iteration, _, phase = key.partition(".")
        if not record.done or record.duration_s is None:
            continue
        k = int(iteration)
        total[k] = total.get(k, 0.0) + float(record.duration_s)
        if phase == "evaluate":
            finished.add(k)
    return {k: total[k] for k in sorted(finished) if k > 0}


@dataclass(frozen=True)
class ProgressEstimate:
    """Where a run stands: ``done`` of ``iterations`` finished, and the time left at the median
    duration of the last finished iterations (None before the first one finishes)."""

    iterations: int
    done: int
    seconds_per_iteration: float | None

    @classmethod
    def from_state(cls, state: RunState, iterations: int) -> ProgressEstimate:
        seconds = iteration_seconds(state)
        recent = list(seconds.values())[-RECENT:]
        return cls(iterations, len(seconds), statistics.median(recent) if recent else None)

    @property
    def eta_s(self) -> float | None:
        if self.seconds_per_iteration is None:
            return None
        return max(0, self.iterations - self.done) * self.seconds_per_iteration

    def line(self) -> str:
        """``iteration 3/5, ETA 1 min 40 s`` (``ETA unknown`` before an iteration has finished,
        ``done`` after the last)."""
        if self.done >= self.iterations:
            return f"iteration {self.done}/{self.iterations}, done"
        eta = "unknown" if self.eta_s is None else duration(self.eta_s)
        return f"iteration {self.done}/{self.iterations}, ETA {eta}"


def progress_line(state: RunState, rows: Sequence[Mapping[str, Any]], config: Config, iteration: int, *,
                  rich: bool) -> str:
    """What the driver prints after an evaluation, from its journal and the metrics rows it has just
    written: progress, ETA and the headline metrics. With ``rich`` (a terminal) the progress is
    bold rich markup; otherwise plain text for a log."""
    estimate = ProgressEstimate.from_state(state, config.iterations)
    metrics = iteration_line(rows, config, iteration)
    if rich:
        from rich.markup import escape

        return f"[bold]{escape(estimate.line())}[/]  {escape(metrics)}"
    return f"{estimate.line()}  {metrics}"


# ------------------------------------------------------------------------------------ summary


def final_summary(run_dir: str | Path) -> dict[str, Any]:
    """The run in a few numbers (JSON-ready): first -> last per headline metric, every failure
    rule's time to failure, the wall time (first step started to last step finished), the compute
    time (the steps' durations summed) and the report's path (None if not written)."""
    run = RunLayout(run_dir)
    config = run.load_config()
    state = run.read_state()
    rows = run.read_metrics()
    metrics = []
    for metric in shown_metrics(rows, config):
        values = [(int(r["iteration"]), v) for r in rows if (v := _number(r.get(metric))) is not None]
        if values:
            (k0, first), (k1, last) = min(values), max(values)
            metrics.append({"metric": metric, "first_iteration": k0, "first": first, "last_iteration": k1,
                            "last": last, "change": change(first, last)})
    crossings = state.failure.time_to_failure if state.failure is not None else (
        time_to_failure(run, config) if config.stop_when and rows else [])
    stopped_at = state.failure.stopped_at if state.failure is not None else None
    entries = [record for _, record in state.records() if record.done]
    starts = [r.started for r in entries if r.started is not None]
    ends = [r.finished for r in entries if r.finished is not None]
    report = run.report_dir / "report.html"
    return {
        "name": config.name, "run_dir": str(run.path), "iterations": config.iterations,
        "evaluated": max((int(r["iteration"]) for r in rows), default=None),
        "metrics": metrics,
        "time_to_failure": [{"rule": c.rule, "iteration": c.iteration, "evaluated_to": c.evaluated_to, "stop": c.stop}
                            for c in crossings],
        "stopped_at": stopped_at,
        "wall_s": round(max(ends) - min(starts), 3) if starts and ends else None,
        "compute_s": round(sum(float(r.duration_s or 0.0) for r in entries), 3),
        "report": str(report) if report.exists() else None,
    }


def _failure_text(entry: Mapping[str, Any]) -> str:
    if entry.get("iteration") is not None:
        return f"failed at iteration {entry['iteration']}" + (" (run stopped)" if entry.get("stop") else "")
    if entry.get("evaluated_to") is None:
        return "not evaluated"
    return f"not failed up to iteration {entry['evaluated_to']}"


def _cells(m: Mapping[str, Any]) -> tuple[str, str, str, str]:
    rel = "" if m["change"] is None else f"{m['change']:+.1%}"
    return (m["metric"], f"{m['first']:.4g} (it.{m['first_iteration']})", f"{m['last']:.4g} (it.{m['last_iteration']})",
            rel)


def render_summary(summary: Mapping[str, Any], *, rich: bool) -> Any:
    """The summary for a person: a rich renderable on a terminal (``rich``), else plain text
    (aligned columns, no escape codes) for CI logs."""
    header = ("metric", "first", "last", "change")
    rows = [_cells(m) for m in summary["metrics"]]
    tail = [f"{e['rule']}: {_failure_text(e)}" for e in summary["time_to_failure"]]
    evaluated = summary["evaluated"]
    tail.append(f"iterations evaluated: {'none' if evaluated is None else evaluated}/{summary['iterations']}")
    if summary["wall_s"] is not None:
        tail.append(f"wall time: {duration(summary['wall_s'])} (steps: {duration(summary['compute_s'])})")
    tail.append(f"report: {summary['report'] or 'not written (no iteration evaluated)'}")
    title = f"{summary['name']}: {summary['run_dir']}"
    if rich:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, title_justify="left")
        for name in header:
            table.add_column(name, justify="left" if name == "metric" else "right")
        for row in rows:
            table.add_row(*row)
        return Group(table, *(Text(line) for line in tail))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
              for r in rows]
    return "\n".join(lines + tail)


# ------------------------------------------------------------------------------------ printing


def print_progress(state: RunState, rows: Sequence[Mapping[str, Any]], config: Config, iteration: int,
                   steps: str | None = None) -> None:
    """After iteration ``iteration``'s evaluation: progress, ETA and headline metrics on stderr
    (``steps``: the steps committed together, for a batch)."""
    from collapsebench.console import console

    rich = console.is_terminal
    line = progress_line(state, rows, config, iteration, rich=rich)
    if steps:
        line = f"{steps}  {line}"
    console.print(line, markup=rich, highlight=False)


def print_summary(run_dir: str | Path) -> dict[str, Any]:
    """The final summary on stderr (a table on a terminal, plain text in a log); returns its dict."""
    from collapsebench.console import console

    summary = final_summary(run_dir)
    rich = console.is_terminal
    console.print(render_summary(summary, rich=rich), markup=False, highlight=False)
    return summary
