"""The package's shape: no import circles, the runtime never imports the learning code, modules stay small."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import genguard

PACKAGE = Path(genguard.__file__).parent
RUNTIME_EXEMPT = ("genguard.learn", "genguard.cli.learn", "genguard.cli.agenet", "genguard.scan")
"""The learning code itself, the CLI commands that run it (`learn`, `agenet`), and the dataset scanner (an offline
research tool that draws the evaluation module's score histograms)."""
MAX_LINES = 300
OVER_LIMIT: dict[str, int] = {}
"""Modules still over the limit, with the most lines they may have (shrink, never grow)."""


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("genguard") and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("genguard"))
    return found


def test_no_import_circles_among_module_level_imports() -> None:
    modules = _modules()
    graph = {m: {i for i in _imports(p, top_level_only=True) if i in modules and i != m} for m, p in modules.items()}
    # A package's own __init__ importing its submodules is how packages re-export; a submodule
    # importing a sibling through the package is not a circle in Python's sense. Drop parent edges.
    graph = {m: {i for i in deps if not m.startswith(i + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_runtime_never_imports_the_learning_code() -> None:
    for name, path in _modules().items():
        if name.startswith(RUNTIME_EXEMPT):
            continue
        learn = sorted(i for i in _imports(path, top_level_only=False) if i.startswith("genguard.learn"))
        assert not learn, f"{name} imports {learn}"


def test_modules_stay_small() -> None:
    for name, path in _modules().items():
        lines = len(path.read_text().splitlines())
        assert lines <= OVER_LIMIT.get(name, MAX_LINES), f"{name} has {lines} lines (limit {OVER_LIMIT.get(name, MAX_LINES)})"


def test_import_genguard_is_lazy() -> None:
    code = "import sys, genguard; print(sorted(m for m in ('torch', 'onnxruntime', 'PIL', 'numpy', 'fastapi') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
