"""`collapsebench ls`: the registered plug-ins with their summaries, arguments and needs, as a table
on a wide terminal and one paragraph a plug-in on a narrow one (no torch: the registry describes
plug-ins from their source)."""

from __future__ import annotations

from rich.markup import escape
from rich.padding import Padding
from rich.table import Table

from collapsebench.console import console, narrow, plain
from collapsebench.errors import UserError, did_you_mean
from collapsebench.registry import ALL


def print_registries(registry: str | None = None) -> None:
    """Every plug-in of ``registry`` (a registry's name or kind), or of all registries."""
    if registry and not any(registry in (name, reg.kind) for name, reg in ALL.items()):
        raise UserError(f"unknown registry '{registry}'{did_you_mean(registry, ALL)}; known: {', '.join(ALL)}")
    rows = []  # (registry, name, summary, arguments, needs)
    for reg_name, reg in ALL.items():
        if registry and registry not in (reg_name, reg.kind):
            continue
        for name in reg.names():
            entry, desc = reg.entry(name), reg.describe(name)
            arguments = ", ".join(f"{a.name}" + (f": {a.annotation}" if a.annotation else "")
                                  + (f" = {a.default}" if a.default is not None else "") for a in desc.arguments)
            needs = " ".join(n for n, on in (("torch", entry.torch), ("gpu", entry.gpu)) if on)
            rows.append((reg_name, name, escape(plain(desc.summary)), escape(arguments), needs))
    if narrow():  # one entry a paragraph: name, then its summary, arguments and needs indented below
        heading = None
        for reg_name, name, summary, arguments, needs in rows:
            if not registry and reg_name != heading:
                heading = reg_name
                console.print(f"\n[bold underline]{reg_name}[/]")
            console.print(f"[bold]{name}[/]" + (f"  [dim](needs {needs})[/]" if needs else ""), highlight=False)
            for label, text in (("", summary), ("arguments: ", arguments)):
                if text:
                    console.print(Padding(f"{label}{text}", (0, 0, 0, 4), expand=False), highlight=False, soft_wrap=False)
        return
    table = Table()
    columns = ("name", "summary", "arguments", "needs") if registry else \
        ("registry", "name", "summary", "arguments", "needs")
    for column in columns:
        table.add_column(column, no_wrap=column in ("registry", "name"))  # names are what users copy: never cut
    for row in rows:
        table.add_row(*(row[1:] if registry else row))
    console.print(table)
