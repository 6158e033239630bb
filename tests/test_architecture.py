"""The shape docs/architecture.md promises, checked: the overlay's modules import each other in one
loop at most (through the engine-core override, which is both a hook point and a door), and every
phase is fired through the one entrance, ``phases.fire``."""

from __future__ import annotations

import ast
from pathlib import Path

from harness import REPO

PACKAGE = REPO / "ascend_overlay"


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every overlay module this file imports, at any depth (function-level imports count), except
    under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from package import submodule`` depends on the submodule (as import linters count
            # it); ``from module import name`` on the module.
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name in known}


def _graph() -> dict[str, set[str]]:
    files = [p for p in PACKAGE.rglob("*.py") if "main2main" not in p.parts]
    known = {_module_name(p) for p in files}
    graph = {}
    for path in files:
        name = _module_name(path)
        graph[name] = {m for m in _imports(path, known) if m != name and m != "ascend_overlay"}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def strong(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                strong(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.add(item)
                if item == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in graph:
        if node not in index:
            strong(node)
    return components


def test_one_import_loop_at_most_and_it_runs_through_the_engine_core_door() -> None:
    cycles = _cycles(_graph())
    assert len(cycles) <= 1, cycles
    for cycle in cycles:
        assert "ascend_overlay.engine_core" in cycle, cycle
        # One loop, not a tangle: each module in it imports exactly one other module of it.
        graph = _graph()
        assert all(len(graph[m] & cycle) == 1 for m in cycle), {m: graph[m] & cycle for m in cycle}


def test_phases_are_fired_only_through_the_one_entrance() -> None:
    """Nothing but activation plugs the runner in, and nothing calls the runner directly."""
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if path.name != "activation.py":
            assert "phases.plug(" not in text, path
        if path.name != "activation.py":
            assert "run_phase(" not in text or path.name == "runtime.py", path
