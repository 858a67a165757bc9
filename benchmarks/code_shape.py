"""The shape of the code base, as figures a maintainer can track from commit to commit.

    python benchmarks/code_shape.py [--root src/collapsebench] [--json]

Prints: modules over 300 and over 450 lines, the longest functions, string-key accesses to the
run journal outside the journal's own module, built-in plug-in names tested outside their
plug-ins, module-path task targets (``"collapsebench.x:y"`` strings that are not registry entries)
and the functions that open a step's journal entry (paths through the step bookkeeping). Each figure is a plain text search or
an ``ast`` walk, so the numbers before and after a change come from the same command.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
from pathlib import Path

JOURNAL_KEYS = re.compile(r"state\[\"|\.get\(\"(steps|status|fingerprint)")
NOT_THE_JOURNAL = re.compile(r"state\[\"_data_files\"\]")  # a `datasets` folder's own state.json
BUILTIN_NAMES = re.compile(r'== "(replace|grow|causal_lm|sft|knowledge|accumulate|accumulate_subsample|fresh_real)"')
TASK_TARGET = re.compile(r'"collapsebench\.[a-z_.]*:[a-z_]*"')
REGISTRY_ENTRY = re.compile(r"\.lazy\(|_B\}|preflight=|check=|pool=")
# what opens the journal entry of a step about to run: the entry helper of old, an entry written by
# hand into the journal's steps, or the typed journal's start
BOOKKEEPING = re.compile(r"\bstart_entry\(|\[\"steps\"\]\[[^]]+\] = \{|\bstate\.start\(")
JOURNAL_MODULES = ("journal.py", "run.py")  # where the entries themselves are defined


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def functions(path: Path) -> list[tuple[int, str]]:
    """(length in lines, qualified name) of every function and method of a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (child.end_lineno or child.lineno) - child.lineno + 1
                found.append((length, f"{prefix}{child.name}"))
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")

    walk(tree, "")
    return found


def bookkeeping_paths(files: list[Path], root: Path) -> list[str]:
    """The functions (outside the journal's own modules) that open a step's journal entry: each is
    one path through the step bookkeeping."""
    found = []
    for path in files:
        if path.name in JOURNAL_MODULES:
            continue
        text = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(text))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = "\n".join(text[node.lineno - 1:node.end_lineno])
                inner = [n for n in ast.walk(node) if n is not node and isinstance(n, (ast.FunctionDef,
                                                                                          ast.AsyncFunctionDef))]
                if BOOKKEEPING.search(body) and not any(BOOKKEEPING.search(
                        "\n".join(text[n.lineno - 1:n.end_lineno])) for n in inner):
                    found.append(f"{path.relative_to(root.parent)}:{node.name}")
    return sorted(found)


def grep(files: list[Path], pattern: re.Pattern[str], root: Path, skip: re.Pattern[str] | None = None) -> list[str]:
    hits = []
    for path in files:
        for number, line in enumerate(lines_of(path), 1):
            if pattern.search(line) and not (skip and skip.search(line)):
                hits.append(f"{path.relative_to(root.parent)}:{number}: {line.strip()}")
    return hits


def shape(root: Path) -> dict[str, object]:
    files = sorted(root.rglob("*.py"))
    sizes = sorted(((len(lines_of(p)), str(p.relative_to(root.parent))) for p in files), reverse=True)
    funcs = sorted(((n, f"{p.relative_to(root.parent)}:{name}") for p in files for n, name in functions(p)),
                   reverse=True)
    journal_module = [p for p in files if p.name != "journal.py"]
    return {
        "modules": len(files),
        "lines": sum(n for n, _ in sizes),
        "over_300": [f"{n} {name}" for n, name in sizes if n > 300],
        "over_450": [f"{n} {name}" for n, name in sizes if n > 450],
        "longest_functions": [f"{n} {name}" for n, name in funcs[:5]],
        "journal_string_keys": grep(journal_module, JOURNAL_KEYS, root, skip=NOT_THE_JOURNAL),
        "builtin_names_tested": grep(files, BUILTIN_NAMES, root),
        "task_target_strings": grep(files, TASK_TARGET, root, skip=REGISTRY_ENTRY),
        "bookkeeping_paths": bookkeeping_paths(files, root),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1] / "src" / "collapsebench"))
    parser.add_argument("--json", action="store_true", help="print every figure with its hits as JSON")
    args = parser.parse_args()
    figures = shape(Path(args.root))
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for key, value in figures.items():
        if isinstance(value, list):
            print(f"{key}: {len(value)}")
            for item in value:
                print(f"    {item}")
        else:
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
