"""Reading a config file safely: YAML 1.2 floats, a size bound, aliases counted at every use, UTF-8
checked with the byte named; and :func:`short`, the cut-down ``repr`` every message quotes input with."""

from __future__ import annotations

import re
import reprlib
from pathlib import Path
from typing import Any

import yaml

from collapsebench.errors import UserError


class YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML that also reads ``1e-3`` as a float (YAML 1.2), as users write learning rates."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+(?:[eE][-+]?[0-9]+)?)$"),
    list("-+0123456789."),
)


MAX_CONFIG_BYTES = 1 << 20  # a config is a page of YAML; a megabyte is a mistake or an attack
MAX_CONFIG_NODES = 100_000  # values after expanding YAML aliases (an "alias bomb" expands exponentially)


def read_yaml(text: str, source: str = "config") -> Any:
    """Parse YAML text safely: size-bounded, aliases counted every time they are used."""
    if len(text) > MAX_CONFIG_BYTES:
        raise UserError(f"{source}: {len(text)} characters; a config holds at most {MAX_CONFIG_BYTES}")
    try:
        data = yaml.load(text, Loader=YamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: not valid YAML: {exc}") from None
    nodes = expanded_size(data)
    if nodes > MAX_CONFIG_NODES:
        raise UserError(f"{source}: the YAML expands to over {MAX_CONFIG_NODES} values (aliases repeat what they "
                        "point to); write the values out or use fewer aliases")
    return data


def expanded_size(data: Any, limit: int = MAX_CONFIG_NODES) -> int:
    """Values in ``data`` with shared (aliased) objects counted at every use, stopping past ``limit``."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        node, expanded = stack.pop()
        children = list(node.items()) if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None or id(node) in sizes:
            continue
        flat = [c for pair in children for c in pair] if isinstance(node, dict) else children
        if expanded:
            sizes[id(node)] = min(limit + 1, 1 + sum(sizes.get(id(c), 1) for c in flat))
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in flat if isinstance(c, (dict, list)))
    return sizes.get(id(data), 1)


def short(value: Any, limit: int = 120) -> str:
    """``repr(value)`` cut to ``limit`` characters: messages quote user input, never all of it."""
    cut = reprlib.Repr()
    cut.maxstring, cut.maxother, cut.maxlist, cut.maxdict, cut.maxlevel = limit, limit, 8, 8, 3
    text = cut.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_text(path: Path) -> str:
    """A text file as UTF-8; a file that is not names the byte where it stops being so."""
    data = path.read_bytes()
    if len(data) > MAX_CONFIG_BYTES:
        raise UserError(f"{path}: {len(data)} bytes; a config holds at most {MAX_CONFIG_BYTES}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r})") from None


def value_at(tree: Any, dotted: str) -> Any:
    """The value at a dotted path (mapping keys and list indices) of plain data; KeyError if absent.
    (What ``a.b=value`` overrides set, sweep cells and contrast arms read.)"""
    node = tree
    for key in dotted.split("."):
        if isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            raise KeyError(dotted)
    return node
