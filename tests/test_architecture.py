"""The shape docs/architecture.md promises, checked: the package's modules import each other without
a cycle (function-level imports count: an import moved into a function to dodge a cycle is still a
cycle), the layers depend downwards only, every module imports on its own, and every phase is fired
through the one entrance, ``phases.fire``."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from harness import REPO

PACKAGE = REPO / "ascend_overlay"
# What each layer may import of the package's other top-level parts (itself always). The core is what
# runs in every vLLM process; it reads the NPU mode for its report, and knows nothing of how it is
# reached (doors) or of the tools.
LAYERS = {
    "core": {"npu"},
    "doors": {"core", "npu"},
    "npu": {"core"},
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every package module this file imports, at any depth (function-level imports count), except
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


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _graph() -> dict[str, set[str]]:
    files = _modules()
    known = {_module_name(p) for p in files}
    return {_module_name(path): {m for m in _imports(path, known) if m != _module_name(path)} for path in files}


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


def test_cycle_finder_sees_a_loop_closed_by_a_function_level_import(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def f():\n    import a\n")
    known = {"a", "b"}
    graph = {"a": _imports(tmp_path / "a.py", known), "b": _imports(tmp_path / "b.py", known)}
    assert _cycles(graph) == [{"a", "b"}]


def test_the_package_has_no_import_cycle() -> None:
    assert _cycles(_graph()) == []


def test_each_layer_imports_only_the_layers_below_it() -> None:
    wrong = []
    for module, imported in _graph().items():
        parts = module.split(".")
        layer = parts[1] if len(parts) > 2 else None
        if layer not in LAYERS:
            continue
        for target in imported:
            target_parts = target.split(".")
            target_layer = target_parts[1] if len(target_parts) > 2 else None
            if target_layer not in (layer, None) and target_layer not in LAYERS[layer]:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_every_module_imports_on_its_own() -> None:
    """Each module imported first, with no other module of the package loaded before it: an import
    that works only after another module was imported is an order bug waiting for a new caller.
    One interpreter, the package's modules forgotten between imports (vLLM and torch stay loaded)."""
    names = [_module_name(p) for p in _modules() if p.name != "__main__.py"]
    script = textwrap.dedent('''
        import importlib, json, sys, traceback
        failed = {}
        for name in json.loads(sys.argv[1]):
            for loaded in [m for m in sys.modules if m == "ascend_overlay" or m.startswith("ascend_overlay.")]:
                del sys.modules[loaded]
            try:
                importlib.import_module(name)
            except Exception:
                failed[name] = traceback.format_exc(limit=3)
        print(json.dumps(failed))
    ''')
    done = subprocess.run([sys.executable, "-c", script, json.dumps(names)], capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {}


def test_phases_are_fired_only_through_the_one_entrance() -> None:
    """Nothing but activation plugs the runner in, and nothing calls the runner directly."""
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if path.name != "activation.py":
            assert "phases.plug(" not in text, path
            assert "run_phase(" not in text or path.name == "runtime.py", path
