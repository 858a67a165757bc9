"""A run's report drawn by a process forked when a short run starts.

A vector world computes ten iterations in a tenth of a second, while the libraries its report needs
(matplotlib, jinja2 and the page's template) take four times as long to import: that import was a
third of a toy run's wall time (``benchmarks/toy_gaussian.py``). A process forked as the run
starts imports them on another core while the run computes, and draws the report when the run
hands its directory over; meanwhile the run writes the cards (:mod:`.cards`) and reads the page's
lineage and samples, which it sends over, then waits for the report, so the report exists when
``run`` returns, as before.

The ``collapsebench`` command forks it as it starts (:func:`fork_early`, from
:mod:`collapsebench.launch`), so that its imports also overlap the command line's and the config's
checks, and ``run`` stops it once the config shows a run that is not a vector world's; ``run``
called otherwise (``cli.main`` in a test) forks it first of all. Once the run hands it over, the
process draws half the figures and a copy of itself the other half (``draw_figures``).
Only where ``fork`` exists (Linux) and only for runs the batched driver computes in this process
(:func:`collapsebench.batch.applies`): a language-model run lasts minutes, and forking a process
that holds torch's threads is not safe (the early fork comes before any import of torch). The
process is forked before the run takes its directory's lock, so it never holds that lock. Whenever
the process is gone or fails, the report is written in the calling process, which raises the real
error if there is one: the report is never lost to this shortcut.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import sys
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from collapsebench.layout import RunLayout

ReportWriter = Callable[["RunLayout"], "Path | None"]


def _serve(conn: Connection) -> None:
    """The forked process: import and compile what the report needs, then draw the report of the
    run directory it is sent (nothing when sent None), with the page parts the parent sends
    (:func:`~collapsebench.analysis.report.page_parts`: the parent writes the cards meanwhile)."""
    from collapsebench.analysis.report import warm, write_report
    from collapsebench.layout import RunLayout

    with contextlib.suppress(Exception):
        warm()
    path = conn.recv()
    if path is None:
        return

    def parts() -> dict[str, Any]:
        sent = conn.recv()
        if sent is None:
            raise RuntimeError("the run's process sent no page parts")
        return cast(dict[str, Any], sent)

    try:
        out = write_report(RunLayout(path), parts=parts, split=True)
        conn.send(("ok", None if out is None else str(out)))
    except BaseException as exc:  # reported to the parent, which writes the report itself
        conn.send(("failed", repr(exc)))


def _page_parts(run: RunLayout) -> dict[str, Any] | None:
    """:func:`~collapsebench.analysis.report.page_parts` of the run (None: nothing evaluated, no page)."""
    from collapsebench.analysis.report import page_parts

    rows = run.read_metrics()
    return page_parts(run, run.load_config(), rows) if rows else None


class ReportProcess:
    """The parent's end: :meth:`write` hands the run over and waits for its report; :meth:`stop`
    ends a process that will draw nothing (the run it was forked for is not a vector world's)."""

    def __init__(self) -> None:
        context: Any = multiprocessing.get_context("fork")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child,), daemon=True, name="collapsebench-report")
        gc.freeze()  # before fork, as Python's gc docs advise: the run's full collections skip what is imported
        self.process.start()
        child.close()
        self.used = False

    def write(self, run: RunLayout) -> Path | None:
        self.used = True
        try:
            self.conn.send(str(run.path))
            try:
                parts = _page_parts(run)  # here, while the process draws the figures
            except BaseException:
                with contextlib.suppress(OSError):
                    self.conn.send(None)
                raise
            self.conn.send(parts)
            while not self.conn.poll(0.05):
                if not self.process.is_alive():
                    raise EOFError("the report process ended")
            status, value = self.conn.recv()
        except (EOFError, OSError):
            status, value = "failed", None
        if status == "ok":
            return None if value is None else Path(value)
        from collapsebench.analysis.report import write_report

        return write_report(run)  # here, so that an error is raised with its own traceback

    def stop(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()

    def close(self) -> None:
        with contextlib.suppress(EOFError, OSError):
            if not self.used:
                self.conn.send(None)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
        self.conn.close()


_early: list[ReportProcess] = []  # forked by fork_early, taken by the run it was forked for


def fork_early() -> None:
    """Fork the report process as the ``collapsebench run`` command starts, before the command
    line's own imports (:mod:`collapsebench.launch`); :func:`take_early` hands it to the run."""
    process = fork()
    if process is not None:
        _early.append(process)


def take_early() -> ReportProcess | None:
    """The process :func:`fork_early` forked, once (None if none was)."""
    return _early.pop() if _early else None


def fork() -> ReportProcess | None:
    """A report process forked now, before the caller imports what a run needs (the config's schema
    alone is a tenth of a second), so that the report's imports overlap them; None where the
    platform does not fork. :func:`report_writer` uses it, or stops it."""
    return ReportProcess() if sys.platform == "linux" else None


@contextlib.contextmanager
def report_writer(forked: bool, process: ReportProcess | None = None) -> Iterator[ReportWriter]:
    """The function that writes a run's report: one served by a forked process when ``forked``
    (and the platform forks): ``process``, forked earlier by :func:`fork`, or one forked now;
    else :func:`~collapsebench.analysis.report.write_report` itself (and ``process`` is stopped)."""
    from collapsebench.analysis.report import write_report

    if not forked or sys.platform != "linux":
        if process is not None:
            process.stop()
        yield write_report
        return
    process = process or ReportProcess()
    try:
        yield process.write
    finally:
        process.close()
