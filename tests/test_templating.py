"""User templates render under limits: hostile templates end in a clear error or a rejected row,
never a hang, a traceback or a leak of Python internals."""

from __future__ import annotations

import time

import pytest

from collapsebench.errors import UserError
from collapsebench.templating import FAIL_FAST, TIME_LIMIT, RenderError, render_rows, render_template

ROW = {"text": "hello", "n": 3}


@pytest.mark.parametrize("template, reason", [
    ("{{ 1/0 }}", "ZeroDivisionError"),
    ("{{ range(10**9) | list }}", "range of 1000000000 items"),
    ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursion too deep"),
    ("{{ 'a' * 10**10 }}", "too large"),
    ("{{ [1] * 10**9 }}", "too large"),
    ("{{ 2 ** 100000 }}", "too large"),
    ("{{ text.__class__.__mro__ }}", "unsafe"),
    ("{{ answer }}", r"'answer' is undefined \(columns: text, n\)"),
    ("{% for i in range(10000) %}{{ text * 10 }}{% endfor %}", "rendered over 100000 characters"),
])
def test_a_failing_row_is_a_render_error_with_its_reason(template, reason):
    with pytest.raises(RenderError, match=reason):
        render_template(template, ROW)


def test_a_runaway_loop_stops_at_the_time_limit():
    start = time.perf_counter()
    with pytest.raises(RenderError, match="took over"):
        render_template("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}", ROW)
    assert time.perf_counter() - start < 10 * TIME_LIMIT  # stopped, not run to its end


@pytest.mark.parametrize("template", ["{text.__class__.__mro__}", "{text:>1000000000000}", "{text.nope}",
                                      "{text!r}", "{0}", "{{ unclosed"])
def test_plain_templates_allow_column_placeholders_only(template):
    with pytest.raises(UserError, match="template"):
        render_template(template, ROW)


def test_plain_and_jinja_render_columns():
    assert render_template("{text}, {n} times", ROW) == "hello, 3 times"
    assert render_template("{{ text | upper }}", ROW) == "HELLO"
    with pytest.raises(RenderError, match="no column 'other'"):
        render_template("{other}", ROW)


def test_rows_fail_one_by_one_and_all_at_once():
    rows = [{"x": 1}, {"x": 0}, {"x": 2}]
    out = render_rows("{{ 10 // x }}", rows, "where")
    assert out[0] == "10" and isinstance(out[1], RenderError) and out[2] == "5"
    with pytest.raises(UserError, match="where: the template .* failed for every row"):
        render_rows("{{ 1 // 0 }}", rows, "where")
    many = [{"x": 0}] * (FAIL_FAST * 4)
    with pytest.raises(UserError, match=f"every row it was given \\({FAIL_FAST}\\)"):
        render_rows("{{ 1 // x }}", many, "where")  # gives up after the first rows, not after all
