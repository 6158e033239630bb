"""Names an instance of a class has that ``getattr`` on the class cannot see: attributes assigned on
``self`` in any of the class's methods, and names annotated in the class body.

Any method, not only ``__init__`` and what it calls: vLLM sets attributes in set-up methods that a
*base* class's ``__init__`` calls (``DPEngineCoreProc._init_data_parallel`` sets ``dp_group`` and
``dp_rank``, called from ``EngineCoreProc.__init__``), which a per-class call graph cannot follow.
The question answered is "does this class's code give instances this name", which is what a rename
upstream changes.

The live and the static lookup both answer "does RMSNorm have ``variance_size_override``?" with this
one reading of the class's source, so they cannot disagree about instance attributes.
"""

from __future__ import annotations

import ast
import importlib
import os
from typing import Any

from ascend_overlay.core.reliance.model import Hit, HitStatus

_PARSED: dict[tuple[str, int, int], ast.Module | None] = {}
# Patch files as they were executed: read once by the loader, through a checked descriptor. What ran
# is what is read for relied-on names, and the file is not opened again (by then it could hold other bytes).
_EXECUTED: dict[str, ast.Module] = {}
_TRIVIAL_MODULES = ("builtins", "abc", "typing", "typing_extensions")


def remember(path: str, tree: ast.Module) -> None:
    """The tree of a patch file the loader executed, read instead of the file from now on."""
    _EXECUTED[path] = tree


def parse_file(path: str) -> ast.Module | None:
    """A file's AST, parsed once per process (keyed by path, size and mtime, so edits are seen); for
    an executed patch file, the tree that was executed."""
    if path in _EXECUTED:
        return _EXECUTED[path]
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _PARSED:
        try:
            with open(path, encoding="utf-8-sig") as handle:
                _PARSED[key] = ast.parse(handle.read(), filename=path)
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            _PARSED[key] = None
    return _PARSED[key]


def find_class(module: ast.Module | None, qualname: str) -> ast.ClassDef | None:
    """The ``class`` statement of ``Outer.Inner`` in a module's AST (None for classes made in functions)."""
    body = getattr(module, "body", [])
    node = None
    for part in qualname.split("."):
        node = next((n for n in body if isinstance(n, ast.ClassDef) and n.name == part), None)
        if node is None:
            return None
        body = node.body
    return node


def _self_name(func: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    args = func.args.posonlyargs + func.args.args
    return args[0].arg if args else None


def _stored_names(target: ast.expr, self_name: str) -> list[str]:
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == self_name:
        return [target.attr]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _stored_names(element, self_name)]
    if isinstance(target, ast.Starred):
        return _stored_names(target.value, self_name)
    return []


_ATTRIBUTES: dict[int, tuple[ast.ClassDef, frozenset[str]]] = {}


def instance_attributes(node: ast.ClassDef | None) -> frozenset[str]:
    """Names given to instances by this class's own code (not its bases'): ``self.x = ...`` in its
    methods, plus class-body annotations.
    Read once per class statement (a worker asks for the same classes for every patch)."""
    if node is None:
        return frozenset()
    cached = _ATTRIBUTES.get(id(node))
    if cached is not None and cached[0] is node:
        return cached[1]
    names = _instance_attributes(node)
    _ATTRIBUTES[id(node)] = (node, names)
    return names


def _is_init_var(annotation: ast.expr) -> bool:
    """``x: InitVar[int]`` (``dataclasses.InitVar``): a parameter of ``__init__``, never stored on the instance."""
    head = annotation.value if isinstance(annotation, ast.Subscript) else annotation
    return (isinstance(head, ast.Name) and head.id == "InitVar") or \
        (isinstance(head, ast.Attribute) and head.attr == "InitVar")


def _instance_attributes(node: ast.ClassDef) -> frozenset[str]:
    names = {n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
             and not _is_init_var(n.annotation)}
    for method in node.body:
        if isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.update(method_attributes(method))
    return frozenset(names)


def method_attributes(method: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Names one method gives instances: ``self.x = ...``, ``self.x += ...``, ``self.x: T = ...`` and
    ``setattr(self, "x", ...)`` anywhere in it (nested functions included); none for a static or class
    method."""
    me = _self_name(method)
    if me is None or any(isinstance(d, ast.Name) and d.id in ("staticmethod", "classmethod")
                         for d in method.decorator_list):
        return set()
    names: set[str] = set()
    for sub in ast.walk(method):
        if isinstance(sub, ast.Assign):
            for target in sub.targets:
                names.update(_stored_names(target, me))
        elif isinstance(sub, (ast.AnnAssign, ast.AugAssign)):
            names.update(_stored_names(sub.target, me))
        elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == "setattr" \
                and len(sub.args) >= 2 and isinstance(sub.args[0], ast.Name) and sub.args[0].id == me \
                and isinstance(sub.args[1], ast.Constant) and isinstance(sub.args[1].value, str):
            names.add(sub.args[1].value)
    return names


def declared_in_module(module: ast.Module | None, name: str) -> bool:
    """Is ``name`` declared at a module's top level (also under ``if``/``try``, e.g. ``TYPE_CHECKING``)?
    For modules that compute attributes in ``__getattr__`` (``vllm.platforms.current_platform``)."""
    todo = list(getattr(module, "body", []))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) \
                and any((a.asname or a.name.split(".")[0]) == name for a in node.names):
            return True
        if isinstance(node, (ast.If, ast.Try)):
            todo.extend(node.body + node.orelse + getattr(node, "finalbody", []))
            for handler in getattr(node, "handlers", []):
                todo.extend(handler.body)
    return False


def _literal_names(module: ast.Module, node: ast.expr) -> set[str] | None:
    """Strings of a literal (``("a", "b")``, ``{"a": ...}``) or of a module-level name bound to one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Name):
        for stmt in module.body:
            value = stmt.value if isinstance(stmt, (ast.Assign, ast.AnnAssign)) else None
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
            if value is not None and any(isinstance(t, ast.Name) and t.id == node.id for t in targets):
                return _literal_names(module, value)
        return None
    elements: list[ast.expr | None] | None = list(node.keys) if isinstance(node, ast.Dict) else (
        list(node.elts) if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else None)
    if elements is None:
        return None
    names = {e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return names if len(names) == len(elements) else None


def getattr_names(module: ast.Module | None) -> frozenset[str] | None:
    """The names a module-level ``__getattr__`` serves, when it is the closed pattern vLLM uses
    (``if name == "x"`` / ``if name in TABLE`` branches, then ``raise AttributeError``); None when
    it may serve anything (then a name it lacks cannot be called missing)."""
    func = next((n for n in getattr(module, "body", []) if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"),
                None)
    if func is None or not func.args.args:
        return None
    param = func.args.args[0].arg
    body = [s for s in func.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if not body or not isinstance(body[-1], ast.Raise):
        return None
    names: set[str] = set()
    for stmt in body[:-1]:
        test = stmt.test if isinstance(stmt, ast.If) and not stmt.orelse else None
        if not (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == param
                and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Eq, ast.In))):
            return None
        served = _literal_names(module, test.comparators[0]) if module is not None else None
        if served is None:
            return None
        names |= served
    return frozenset(names)


def module_lacks(module: ast.Module | None, name: str) -> bool | None:
    """For a module with ``__getattr__`` that does not hold ``name``: True when it certainly lacks it,
    None when its ``__getattr__`` may compute it (the one rule of the live and static lookups)."""
    if declared_in_module(module, name):
        return False
    served = getattr_names(module)
    if served is None:
        return None
    return name not in served


def computed_attribute_hit(module: ast.Module | None, shown: str, name: str, depth: int) -> Hit:
    """The verdict on ``name`` in a module that has ``__getattr__`` (``shown``, at path ``depth``), the
    same for the live and the static lookup."""
    lacks = module_lacks(module, name)
    if lacks is False:
        return Hit(HitStatus.FOUND, "attribute", None, "", depth + 1)
    if lacks is None:
        return Hit(HitStatus.UNVERIFIABLE, depth=depth,
                   detail=f"{shown} computes its attributes (__getattr__); {name!r} cannot be checked")
    return Hit(HitStatus.MISSING, depth=depth, detail=f"{shown} has no attribute {name!r}")


def is_trivial_base(module: str, name: str) -> bool:
    """Bases that give instances nothing to rely on (``object``, ``ABC``, ``Generic``...)."""
    return module in _TRIVIAL_MODULES


def external_has(dotted: str, name: str) -> bool | None:
    """Does the class at ``dotted`` (outside vLLM, e.g. ``torch.nn.Module``) have ``name``? None when
    it cannot be imported here. Imported only when a name was not found in vLLM's own classes."""
    module, _, attr = dotted.rpartition(".")
    if not module:
        return None
    try:
        owner: Any = importlib.import_module(module)
        for part in attr.split("."):
            owner = getattr(owner, part)
    except Exception:  # noqa: BLE001 - any failure means "cannot tell", never a verdict
        return None
    if not isinstance(owner, type):
        return None
    return any(name in vars(klass) for klass in owner.__mro__)
