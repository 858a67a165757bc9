"""User templates: ``{column}`` placeholders and sandboxed Jinja2.

Every template a config holds (validators, prompt sources, preprocessors, SFT formats) is user
input. Jinja2 templates render in an immutable sandbox (no access to Python internals, no
mutation); unknown names and sandbox violations are user errors naming the template.
"""

from __future__ import annotations

import functools
import string
from typing import Any

from collapsebench.errors import UserError


def placeholders(template: str) -> list[str]:
    """The ``{column}`` names of a ``str.format`` template, in order."""
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def is_jinja(template: str) -> bool:
    return "{{" in template or "{%" in template


@functools.lru_cache(maxsize=32)
def compile_template(source: str) -> Any:
    """A Jinja2 template in an immutable sandbox."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise UserError(f"Jinja template {source!r}: {exc}") from None


def render_template(source: str, row: dict[str, Any], where: str) -> str:
    """Render a sandboxed template for one row; sandbox violations and unknown names are UserErrors."""
    import jinja2
    from jinja2.sandbox import SecurityError

    try:
        return str(compile_template(source).render(**row))
    except SecurityError as exc:
        raise UserError(f"{where}: template {source!r} is not allowed in the sandbox: {exc}") from None
    except jinja2.UndefinedError as exc:
        raise UserError(f"{where}: template {source!r}: {exc}; columns: {', '.join(row)}") from None
