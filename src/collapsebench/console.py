"""Terminal output: one rich console, progress bars that stay quiet when output is not a terminal."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

console = Console(stderr=True, soft_wrap=True)


class ConsoleHandler(logging.Handler):
    """The ``collapsebench`` loggers' warnings and errors on the console, as ``warning: ...``.

    The one place a plug-in's warning reaches the terminal: a plug-in calls ``ctx.log.warning``
    and nothing else (printing it as well showed every warning twice)."""

    def emit(self, record: logging.LogRecord) -> None:
        from rich.markup import escape

        style = "bold red" if record.levelno >= logging.ERROR else "yellow"
        try:
            console.print(f"[{style}]{record.levelname.lower()}:[/] {escape(record.getMessage())}", highlight=False)
        except Exception:  # noqa: BLE001 - logging must not raise; the standard handlers report it this way
            self.handleError(record)


def setup_logging() -> None:
    """Route the package's log records of level WARNING and above to the console, once a process."""
    logger = logging.getLogger("collapsebench")
    if not any(isinstance(h, ConsoleHandler) for h in logger.handlers):
        handler = ConsoleHandler(logging.WARNING)
        logger.addHandler(handler)


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


_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")  # :func:`x`, :class:`~a.B`
_LITERAL = re.compile(r"``([^`]+)``|`([^`]+)`")


def plain(text: str) -> str:
    """Docstring text without its reST markup, for a terminal or a page: ``x`` and :func:`x` read as x.

    Summaries are written for the API documentation; in a table the backticks are noise."""
    text = _ROLE.sub(lambda m: m.group(1).rpartition(".")[2] if m.group(0).count("~") else m.group(1), text)
    return _LITERAL.sub(lambda m: m.group(1) or m.group(2), text)


def narrow(width: int | None = None) -> bool:
    """Whether the terminal is too narrow for a table of several free-text columns (lists read better)."""
    return (console.width if width is None else width) < NARROW


NARROW = 110  # below this, a five-column table leaves a few characters a cell
