"""The dependency rules of docs/architecture.md, checked on every import statement of the package
(module level, inside functions and under TYPE_CHECKING alike):

* layers: cli -> driver (run, loop, batch, validate, prepare, status, analysis, sweep) -> phases -> plug-in packages ->
  contract (api, tasks, context, registry, plugins, data, layout, journal, failure) -> config -> core (errors, io, console,
  templating, allocator, environment, arrow_numpy). An import may go down or stay in its layer, never up;
* no import cycle between modules, nor between the packages of one layer;
* ``analysis`` reads run directories through ``layout``, never through the driver;
* no plug-in package imports a phase or the executors: a phase asks its context for tasks and
  workers, and the executor the driver chose runs them;
* the torch family (torch, transformers, trl, vllm, accelerate, deepspeed, lm_eval, tokenizers)
  is imported at run time only by the modules allowed to (models, trainers, losses, generators,
  the scoring evaluation that drives a harness, the VAE toy); names a type checker alone reads
  (``if TYPE_CHECKING:``) may appear anywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "collapsebench"

LAYERS = {
    "core": 0, "config": 1, "contract": 2, "plugin": 3, "phases": 4, "driver": 5, "cli": 6,
}
LAYER_OF = {
    "errors": "core", "io": "core", "console": "core", "templating": "core", "allocator": "core",
    "environment": "core", "arrow_numpy": "core",
    "config": "config",
    "api": "contract", "tasks": "contract", "context": "contract",
    "registry": "contract", "plugins": "contract", "data": "contract", "layout": "contract",
    "failure": "contract", "journal": "contract",
    "sources": "plugin", "models": "plugin", "trainers": "plugin", "losses": "plugin", "generators": "plugin",
    "prompts": "plugin", "validators": "plugin", "regimes": "plugin", "preprocessors": "plugin",
    "evaluations": "plugin", "executors": "plugin", "trackers": "plugin", "toy": "plugin",
    "phases": "phases",
    "run": "driver", "loop": "driver", "redo": "driver", "validate": "driver", "status": "driver", "listing": "driver",
    "analysis": "driver",
    "batch": "driver", "sweep": "driver", "prepare": "driver", "summary": "driver",
    "cli": "cli", "__main__": "cli", "launch": "cli", "__init__": "core",
}
TORCH_FAMILY = {"torch", "transformers", "trl", "vllm", "accelerate", "deepspeed", "lm_eval", "tokenizers"}
TORCH_ALLOWED = ("models.", "trainers.", "losses.", "generators.", "evaluations.lm_eval", "toy.vae")


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__") or "__init__"] = path
    return out


MODULES = modules()


def resolve(name: str) -> str | None:
    """The package module an absolute import of ``collapsebench.<name>`` lands in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:``."""
    return {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
            and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
            for stmt in block.body for node in ast.walk(stmt)}


def imports(path: Path) -> tuple[set[str], set[str]]:
    """(collapsebench modules imported anywhere, top-level external packages imported at run time)."""
    internal, external = set(), set()
    tree = ast.parse(path.read_text())
    typing_only = type_checking_only(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "collapsebench" else [node.module]
        else:
            continue
        for name in names:
            top, _, rest = name.partition(".")
            if top == "collapsebench":
                target = resolve(rest)
                if target:
                    internal.add(target)
            elif id(node) not in typing_only:
                external.add(top)
    return internal, external


GRAPH = {m: imports(p) for m, p in MODULES.items()}


def layer(module: str) -> int:
    return LAYERS[LAYER_OF[module.split(".")[0]]]


def test_every_module_has_a_layer():
    assert not [m for m in MODULES if m.split(".")[0] not in LAYER_OF]


def test_no_upward_imports():
    upward = [f"{m} -> {t}" for m, (internal, _) in GRAPH.items() for t in internal if layer(t) > layer(m)]
    assert not upward


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_module_cycles():
    assert cycles({m: internal - {m} for m, (internal, _) in GRAPH.items()}) == []


def test_no_package_cycles():
    packages: dict[str, set[str]] = {}
    for m, (internal, _) in GRAPH.items():
        top = m.split(".")[0]
        packages.setdefault(top, set()).update(t.split(".")[0] for t in internal if t.split(".")[0] != top)
    assert cycles(packages) == []


def test_analysis_reads_runs_through_the_layout_only():
    for m, (internal, _) in GRAPH.items():
        if m.startswith("analysis"):
            assert not {t for t in internal if t.split(".")[0] in ("run", "loop", "phases")}, m


def test_no_plugin_imports_a_phase():
    offenders = [m for m, (internal, _) in GRAPH.items()
                 if LAYER_OF[m.split(".")[0]] == "plugin" and any(t.startswith("phases") for t in internal)]
    assert offenders == []


PLUGIN_PACKAGES = ("sources", "models", "trainers", "losses", "generators", "prompts", "validators", "regimes",
                   "preprocessors", "evaluations", "trackers", "toy")


def test_no_plugin_imports_an_executor():
    assert set(PLUGIN_PACKAGES) == {p for p, layer in LAYER_OF.items() if layer == "plugin"} - {"executors"}
    offenders = [m for m, (internal, _) in GRAPH.items()
                 if m.split(".")[0] in PLUGIN_PACKAGES and any(t.split(".")[0] == "executors" for t in internal)]
    assert offenders == []


def test_torch_only_where_allowed():
    offenders = {m: sorted(external & TORCH_FAMILY) for m, (_, external) in GRAPH.items()
                 if external & TORCH_FAMILY and not (m + ".").startswith(TORCH_ALLOWED)}
    assert offenders == {}


@pytest.mark.parametrize("bad", ["import torch", "from transformers import AutoModel"])
def test_the_torch_check_would_catch_a_violation(bad, tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(f"def f():\n    {bad}\n")
    assert imports(probe)[1] & TORCH_FAMILY
