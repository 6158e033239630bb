"""What an out-of-tree platform must implement: the abstract methods of vLLM's ``Platform``.

vLLM's ``Platform`` is not a formal ABC: most of its "abstract" methods are classmethods whose body
is ``raise NotImplementedError``. A new one is a breaking change for the NPU platform even though no
signature moved, so both spellings count.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ascend_overlay.main2main.tree import StaticTree

PLATFORM_MODULE = "vllm.platforms.interface"
PLATFORM_CLASS = "Platform"
_OVERLAY_ROOT = Path(__file__).resolve().parents[2]
_SUBCLASS = re.compile(r"^\s*class\s+\w+\s*\([^)]*\b\w*Platform\b", re.MULTILINE)


def _is_abstract(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for dec in node.decorator_list:
        name = dec.attr if isinstance(dec, ast.Attribute) else getattr(dec, "id", "")
        if name == "abstractmethod":
            return True
    body = list(node.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    exc = body[0].exc
    target = exc.func if isinstance(exc, ast.Call) else exc
    return isinstance(target, ast.Name) and target.id == "NotImplementedError"


def abstract_methods(tree: StaticTree) -> dict[str, int]:
    """Method name -> line, for the methods of ``Platform`` a subclass has to provide."""
    module = tree.syntax(PLATFORM_MODULE)
    for node in getattr(module, "body", []):
        if isinstance(node, ast.ClassDef) and node.name == PLATFORM_CLASS:
            return {item.name: item.lineno for item in node.body
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_abstract(item)}
    return {}


def new_abstract_methods(old: StaticTree, new: StaticTree) -> dict[str, int]:
    before = abstract_methods(old)
    return {name: line for name, line in abstract_methods(new).items() if name not in before}


def overlay_platform_files(root: Path = _OVERLAY_ROOT) -> list[str]:
    """Files of the overlay that define a Platform subclass: they must implement new abstract methods."""
    out = []
    for folder in ("ascend_overlay", "patches"):
        for path in sorted((root / folder).rglob("*.py")):
            if "main2main" in path.parts:
                continue
            try:
                if _SUBCLASS.search(path.read_text(encoding="utf-8", errors="replace")):
                    out.append(str(path.relative_to(root)))
            except OSError:
                continue
    return out
