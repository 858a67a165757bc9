"""User templates: ``{column}`` placeholders and sandboxed Jinja2, with limits.

Every template a config holds (validators, prompt sources, preprocessors, SFT formats) is user
input, rendered once per row of data the user does not control either. Both kinds render under
the same rules:

* Jinja2 templates run in an immutable sandbox (no Python internals, no mutation), with ``range``
  capped at :data:`MAX_RANGE` items, ``*`` and ``**`` refused when they would build more than
  :data:`MAX_OUTPUT` characters or items, an output cap of :data:`MAX_OUTPUT` characters and a
  wall-clock limit of :data:`TIME_LIMIT` seconds per row (enforced in the main thread);
* a plain template holds ``{column}`` placeholders only: no attribute or index access, no format
  specification (``{text.__class__}``, ``{text:>1000000}`` are refused when it is compiled).

A template that cannot compile is a :class:`UserError`. A row that fails to render (an unknown
column, a runtime error, a limit) raises :class:`RenderError`: the caller rejects that row with the
reason, and ends the phase with one error only when every row fails.
"""

from __future__ import annotations

import functools
import signal
import string
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from collapsebench.errors import UserError

MAX_OUTPUT = 100_000
MAX_RANGE = 10_000
TIME_LIMIT = 1.0
FAIL_FAST = 5  # the first rows all failing: the template is broken, stop before the limits add up


class RenderError(Exception):
    """One row's rendering failed; the message is the reason recorded with the row."""


def placeholders(template: str) -> list[str]:
    """The ``{column}`` names of a plain template, in order."""
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def is_jinja(template: str) -> bool:
    return "{{" in template or "{%" in template


@functools.lru_cache(maxsize=64)
def compile_template(source: str, where: str = "template") -> Callable[[dict[str, Any]], str]:
    """A renderer ``row -> text`` for a Jinja2 or plain template (cached per source)."""
    return _compile_jinja(source, where) if is_jinja(source) else _compile_plain(source, where)


def render_template(source: str, row: dict[str, Any], where: str = "template") -> str:
    """Render one row; raises :class:`RenderError` for a failure of this row."""
    return compile_template(source, where)(row)


def render_rows(source: str, rows: list[dict[str, Any]], where: str) -> list[str | RenderError]:
    """Render every row: its text, or the :class:`RenderError` that rejects it. A template that fails
    on every row, or on each of the first :data:`FAIL_FAST` rows, is a :class:`UserError`."""
    render = compile_template(source, where)
    out: list[str | RenderError] = []
    for i, row in enumerate(rows):
        try:
            out.append(render(row))
        except RenderError as exc:
            out.append(exc)
            if i + 1 == FAIL_FAST and all(isinstance(o, RenderError) for o in out):
                break
    failed = [o for o in out if isinstance(o, RenderError)]
    if rows and len(failed) == len(out):
        raise UserError(f"{where}: the template {source!r} failed for every row it was given ({len(out)}); "
                        f"the first: {failed[0]}")
    return out


# ------------------------------------------------------------------------------------ plain templates

def _compile_plain(source: str, where: str) -> Callable[[dict[str, Any]], str]:
    try:
        parts = list(string.Formatter().parse(source))
    except ValueError as exc:
        raise UserError(f"{where}: template {source!r}: {exc}") from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise UserError(f"{where}: template {source!r}: only {{column}} placeholders are allowed "
                            f"(got {{{field}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}); "
                            "use a Jinja2 template ({{ ... }}) for more")

    def render(row: dict[str, Any]) -> str:
        out = []
        for literal, field, _, _ in parts:
            out.append(literal)
            if field is not None:
                if field not in row:
                    raise RenderError(f"no column '{field}' (columns: {', '.join(row)})")
                out.append(str(row[field]))
        text = "".join(out)
        if len(text) > MAX_OUTPUT:
            raise RenderError(f"rendered {len(text)} characters (at most {MAX_OUTPUT})")
        return text

    return render


# ------------------------------------------------------------------------------------ Jinja2

def _sandbox() -> Any:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

    class LimitedSandbox(ImmutableSandboxedEnvironment):
        """The immutable sandbox with size limits on ``range``, ``*`` and ``**``."""

        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            numbers = isinstance(right, (int, float)) and isinstance(left, (int, float))
            if operator == "**" and numbers and abs(right) > 64 and abs(left) > 1:
                raise SecurityError(f"{left} ** {right} is too large")
            if operator == "*":
                for seq, times in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and len(seq) * times > MAX_OUTPUT:
                        raise SecurityError(f"a sequence of {len(seq)} repeated {times} times is too large")
            return super().call_binop(context, operator, left, right)

    env = LimitedSandbox(undefined=jinja2.StrictUndefined, autoescape=False)
    env.globals["range"] = _limited_range
    return env


def _limited_range(*args: int) -> range:
    from jinja2.sandbox import SecurityError

    items = range(*args)
    if len(items) > MAX_RANGE:
        raise SecurityError(f"range of {len(items)} items (at most {MAX_RANGE})")
    return items


def _compile_jinja(source: str, where: str) -> Callable[[dict[str, Any]], str]:
    import jinja2

    try:
        template = _sandbox().from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise UserError(f"{where}: Jinja template {source!r}: {exc}") from None

    def render(row: dict[str, Any]) -> str:
        try:
            with _time_limit(TIME_LIMIT):
                chunks: list[str] = []
                size = 0
                for chunk in template.generate(**row):
                    size += len(chunk)
                    if size > MAX_OUTPUT:
                        raise RenderError(f"rendered over {MAX_OUTPUT} characters")
                    chunks.append(chunk)
                return "".join(chunks)
        except RenderError:
            raise
        except jinja2.UndefinedError as exc:
            raise RenderError(f"{exc} (columns: {', '.join(row)})") from None
        except RecursionError:
            raise RenderError("recursion too deep") from None
        except Exception as exc:  # a runtime error of the user's template (1/0, a sandbox refusal, ...)
            raise RenderError(f"{type(exc).__name__}: {exc}") from None

    return render


class _Timeout(Exception):
    pass


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (a SIGALRM timer: only in the main thread; elsewhere
    the size limits alone apply)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Timeout:
        raise RenderError(f"took over {seconds:g} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
