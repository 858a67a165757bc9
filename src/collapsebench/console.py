"""Terminal output: one rich console, progress bars that stay quiet when output is not a terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console

console = Console(stderr=True, soft_wrap=True)


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``. Draws a rich bar on a terminal; off with COLLAPSEBENCH_PROGRESS=0."""
    enabled = os.environ.get("COLLAPSEBENCH_PROGRESS", "1") != "0" and sys.stderr.isatty()
    if not enabled:
        yield _ignore
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            progress.advance(task, n)

        yield advance


def _ignore(n: int = 1) -> None:
    """``advance`` when no bar is drawn."""


def metrics_line(row: dict[str, Any], headline: Sequence[str] = (), limit: int = 6) -> str:
    """``limit`` float metrics of a ``metrics.jsonl`` row, for the progress of a run: the ``headline``
    ones first (those the run's evaluations declare), then the others in the row's order."""
    first = [k for k in headline if isinstance(row.get(k), float)]
    shown = [(k, row[k]) for k in first] + [(k, v) for k, v in row.items() if isinstance(v, float) and k not in first]
    shown = shown[:limit]
    return "  ".join(f"{k}={v:.4g}" for k, v in shown)
