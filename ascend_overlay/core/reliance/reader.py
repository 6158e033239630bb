"""The source reader behind ``derive``: one file's vLLM imports, and what typed names it reads.

A ``SourceFile`` knows which local names stand for vLLM (imports) and reads a function with some of
its names typed (``self`` as an instance of the patched class, a parameter annotated with a vLLM
class), recording each ``Use`` with the line that makes it.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ascend_overlay.core.reliance.model import Use, UseKind
from ascend_overlay.core.reliance.shapes import function_shape

PACKAGE = "vllm"
_MAX_DEPTH = 3
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Binding:
    """What a local name stands for: an imported vLLM name, or an instance/class/callable of one."""

    module: str
    path: tuple[str, ...]
    kind: str                         # vllm | instance | class | callable
    receiver: str = ""                # for callable: how the original binds ("" unbound, "instance")
    own: frozenset[str] = frozenset()  # names the overlay's own subclass defines (not relied on)

    def target(self, extra: tuple[str, ...] = ()) -> str | None:
        path = self.path + extra
        return f"{self.module}:{'.'.join(path)}" if path else None


def display_path(path: str | os.PathLike[str]) -> str:
    resolved = Path(path).resolve()
    return str(resolved.relative_to(_REPO)) if resolved.is_relative_to(_REPO) else str(path)


def _chain(node: ast.expr) -> tuple[ast.expr, tuple[str, ...]]:
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    return node, tuple(reversed(attrs))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _typing_only_nodes(nodes: list[ast.AST]) -> set[int]:
    """ids of nodes under ``if TYPE_CHECKING:``: names imported there are not used at run time."""
    out: set[int] = set()
    for node in nodes:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                out.update(id(sub) for sub in ast.walk(stmt))
    return out


class SourceFile:
    """One source file being read: its vLLM imports, its functions, and the uses found so far."""

    def __init__(self, tree: ast.Module, display: str, *, plugin: bool = False) -> None:
        self.tree = tree
        self.display = display
        # A plugin's classes hold many methods of their own: there, a method or a ``self`` name that
        # vLLM's base lacks is the plugin's own (``may_be_own``), and chains are read whole.
        self.plugin = plugin
        # one walk of the file, read by every pass below (a walk costs more than the passes)
        self.nodes = list(ast.walk(tree))
        self.typing_only = _typing_only_nodes(self.nodes)
        self.lanes, self.guards = _contexts(self.nodes)
        self.unpacked = _unpacked_calls(self.nodes)
        self.bindings: dict[str, Binding] = {}
        self.runtime_imports: list[tuple[Binding, ast.stmt, str]] = []
        self._read_imports()
        if plugin:
            self._saved_originals()
        self.functions: dict[str, list[ast.FunctionDef | ast.AsyncFunctionDef]] = {}
        for node in self.nodes:
            if isinstance(node, FUNCTIONS):
                self.functions.setdefault(node.name, []).append(node)
        self.uses: dict[tuple[Any, ...], Use] = {}
        self._read: set[tuple[Any, ...]] = set()

    # -- imports --------------------------------------------------------------------------------

    def _read_imports(self) -> None:
        for node in self.nodes:
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
                for alias in node.names:
                    if alias.name == "*":  # relies on the module itself: ``vllm.x:y`` names it as a submodule
                        parent, _, last = node.module.rpartition(".")
                        if parent and id(node) not in self.typing_only:
                            self.runtime_imports.append((Binding(parent, (last,), "vllm"), node,
                                                         f"from {node.module} import *"))
                        continue
                    binding = Binding(node.module, (alias.name,), "vllm")
                    self._bind(alias.asname or alias.name, binding, node, f"from {node.module} import {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] != PACKAGE:
                        continue
                    if alias.asname:
                        binding = Binding(".".join(parts[:-1]) or PACKAGE, tuple(parts[-1:]) if len(parts) > 1 else (),
                                          "vllm")
                        self._bind(alias.asname, binding, node, f"import {alias.name} as {alias.asname}")
                    else:
                        self._bind(PACKAGE, Binding(PACKAGE, (), "vllm"), node, f"import {alias.name}")
                        if len(parts) > 1 and id(node) not in self.typing_only:
                            self.runtime_imports.append((Binding(PACKAGE, tuple(parts[1:]), "vllm"), node,
                                                         f"import {alias.name}"))

    def _saved_originals(self) -> None:
        """``_original = Y.z`` (a saved original, the usual start of a monkey patch): a later
        ``_original(self, x)`` calls ``Y.z`` with those arguments."""
        for node in self.nodes:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                    and isinstance(node.value, ast.Attribute):
                root, attrs = _chain(node.value)
                if isinstance(root, ast.Name) and root.id in self.bindings and node.targets[0].id not in self.bindings:
                    b = self.bindings[root.id]
                    if b.kind == "vllm":
                        self.bindings[node.targets[0].id] = Binding(b.module, b.path + attrs, "vllm")

    def _bind(self, name: str, binding: Binding, node: ast.stmt, text: str) -> None:
        self.bindings.setdefault(name, binding)
        if id(node) not in self.typing_only and binding.path:
            self.runtime_imports.append((binding, node, text))

    # -- recording ------------------------------------------------------------------------------

    def add(self, use: Use | None) -> None:
        """Record a use once; None (a binding with no vLLM path, e.g. a bare module) records nothing."""
        if use is None:
            return
        last = use.target.rpartition(":")[2].rpartition(".")[2]
        if use.how is UseKind.ATTRIBUTE and last.startswith("__") and last.endswith("__"):
            return  # reading Python's machinery (``Enum.__members__``, ``__name__``) is not vLLM's API
        key = (use.target, use.how, use.receiver, use.positional, use.keywords, use.shape, use.lane, use.guard,
               use.unpack, use.op_name)
        self.uses.setdefault(key, use)

    def where(self, node: ast.AST) -> str:
        return f"{self.display}:{getattr(node, 'lineno', 0)}"

    def lane_of(self, node: ast.AST) -> str:
        return _innermost(self.lanes, node)

    def guard_of(self, node: ast.AST) -> str:
        return _innermost(self.guards, node)

    @staticmethod
    def text(node: ast.AST) -> str:
        text = ast.unparse(node)
        return text if len(text) <= 80 else text[:77] + "..."

    def import_uses(self) -> None:
        for binding, node, text in self.runtime_imports:
            target = binding.target()
            if target is not None:
                self.add(Use(target, UseKind.IMPORT, self.where(node), text, lane=self.lane_of(node),
                             guard=self.guard_of(node)))

    # -- chains rooted at imported names (anywhere in the file) ---------------------------------

    def imported_chains(self) -> None:
        calls = {id(n.func): n for n in self.nodes if isinstance(n, ast.Call)}
        inner: set[int] = set()
        for node in self.nodes:
            if id(node) in inner or id(node) in self.typing_only or not isinstance(node, (ast.Attribute, ast.Name)):
                continue
            root, attrs = _chain(node)
            inner.update(_chain_ids(node))
            if not isinstance(root, ast.Name) or root.id not in self.bindings or isinstance(node.ctx, ast.Store):
                continue
            if isinstance(node, ast.Name) and id(node) not in calls:
                continue  # a bare imported name is covered by its import
            binding = self.bindings[root.id]
            target = binding.target(attrs)
            if target is None:
                continue
            call = calls.get(id(node))
            self.add(_use(target, call, node, self, owner=""))

    # -- reading a function with typed names ----------------------------------------------------

    def read(self, func: ast.AST, scope: dict[str, Binding], owner: str, depth: int = 0) -> None:
        key = (id(func), tuple(sorted(scope.items())))
        if key in self._read or depth > _MAX_DEPTH or not scope:
            return
        self._read.add(key)
        body = func.body if isinstance(func, (*FUNCTIONS, ast.ClassDef, ast.Module)) else [func]
        calls = {}
        nodes = [n for stmt in body for n in _walk_local(stmt)]
        for node in nodes:
            if isinstance(node, ast.Call):
                calls[id(node.func)] = node
        inner: set[int] = set()
        for node in nodes:
            if isinstance(node, ast.Call):
                self._follow_call(node, scope, owner, depth)
            if id(node) in inner or not isinstance(node, ast.Attribute):
                continue
            root, attrs = _chain(node)
            inner.update(_chain_ids(node))
            binding = _typed(root, scope)
            if binding is None or not attrs:
                continue
            if isinstance(node.ctx, ast.Store):
                continue  # assigning an attribute relies on nothing
            if binding.kind in ("instance", "class"):
                if attrs[0] in binding.own:
                    continue
                if self.plugin:  # the whole chain: a typed attribute's own members are checked too
                    self.add(_use(binding.target(attrs), calls.get(id(node)), node, self, owner,
                                  receiver=binding.kind, own_at=len(binding.path)))
                    continue
                call = calls.get(id(node)) if len(attrs) == 1 else None
                first = node if len(attrs) == 1 else _prefix(node, len(attrs) - 1)
                self.add(_use(binding.target(attrs[:1]), call, first, self, owner, receiver=binding.kind))
        for node in nodes:  # calls of the original itself: original(self, ...)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                binding = scope.get(node.func.id)
                if binding is not None and binding.kind == "callable":
                    self.add(_use(binding.target(), node, node.func, self, owner, receiver=binding.receiver))

    def _follow_call(self, call: ast.Call, scope: dict[str, Binding], owner: str, depth: int) -> None:
        """``helper(self, ...)``: read the helper of this file with that parameter typed."""
        if not isinstance(call.func, ast.Name) or call.func.id not in self.functions:
            return
        typed = {i: b for i, arg in enumerate(call.args)
                 if (b := _typed(arg, scope)) is not None and b.kind in ("instance", "class")}
        if not typed:
            return
        for func in self.functions[call.func.id]:
            params = func.args.posonlyargs + func.args.args
            inner = {params[i].arg: b for i, b in typed.items() if i < len(params)}
            self.read(func, inner, owner, depth + 1)

    # -- contexts -------------------------------------------------------------------------------

    def annotated(self) -> None:
        """Functions whose parameters are annotated with a vLLM class: read with those typed."""
        for funcs in self.functions.values():
            for func in funcs:
                scope = {}
                for arg in func.args.posonlyargs + func.args.args + func.args.kwonlyargs:
                    binding = self._annotation(arg.annotation)
                    if binding is not None:
                        scope[arg.arg] = binding
                if scope:
                    self.read(func, scope, func.name)

    def _annotation(self, node: ast.expr | None) -> Binding | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                node = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                return None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):  # X | None
            return self._annotation(node.left) or self._annotation(node.right)
        if isinstance(node, (ast.Name, ast.Attribute)):
            root, attrs = _chain(node)
            if isinstance(root, ast.Name) and root.id in self.bindings:
                b = self.bindings[root.id]
                path = b.path + attrs
                if path and path[-1][:1].isupper():  # a class by vLLM's naming; modules and functions are lower case
                    return Binding(b.module, path, "instance")
        return None

    def base_binding(self, node: ast.expr, scope: dict[str, Binding]) -> Binding | None:
        """A base class expression that names a vLLM class (imported, or the patch's original)."""
        binding = _typed(node, scope)
        if binding is not None and binding.kind == "callable":
            return Binding(binding.module, binding.path, "instance")
        root, attrs = _chain(node)
        if isinstance(root, ast.Name) and root.id in self.bindings:
            b = self.bindings[root.id]
            return Binding(b.module, b.path + attrs, "instance") if b.path + attrs else None
        return None

    def subclass(self, node: ast.ClassDef, base: Binding, owner: str) -> None:
        """A subclass of a vLLM class: its overrides, its ``super()`` calls, and what its methods read
        on ``self`` (in a plugin, a name vLLM's base lacks may be the plugin's own or a mixin's)."""
        own = {n.name for n in node.body if isinstance(n, (*FUNCTIONS, ast.ClassDef))}
        for stmt in node.body:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else \
                [stmt.target] if isinstance(stmt, (ast.AnnAssign, ast.AugAssign)) else []
            own.update(t.id for t in targets if isinstance(t, ast.Name))
        walked = {id(f): list(ast.walk(f)) for f in node.body if isinstance(f, FUNCTIONS)}
        for func in (n for n in node.body if isinstance(n, FUNCTIONS)):
            me = (func.args.posonlyargs + func.args.args)[:1]
            for sub in walked[id(func)]:
                if isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store) and me \
                        and isinstance(sub.value, ast.Name) and sub.value.id == me[0].arg:
                    own.add(sub.attr)
        owner = owner or node.name
        instance = Binding(base.module, base.path, "instance", own=frozenset(own))
        klass = Binding(base.module, base.path, "class", own=frozenset(own))
        depth = len(base.path)
        for stmt in node.body:
            if isinstance(stmt, FUNCTIONS):
                override = self._override(stmt)
                if override is not None:
                    shape = function_shape(stmt)
                    certain = not override or any(_super_attribute(n) == stmt.name for n in walked[id(stmt)])
                    self.add(Use(_named(instance, stmt.name), UseKind.OVERRIDE, self.where(stmt),
                                 f"{node.name}.{stmt.name}{shape}", owner, shape=shape,
                                 lane=self.lane_of(stmt), own_at=0 if certain else depth))
                params = stmt.args.posonlyargs + stmt.args.args
                if params and params[0].arg in ("self", "cls") and not _is_static(stmt):
                    binding = klass if params[0].arg == "cls" or _is_classmethod(stmt) else instance
                    self.read(stmt, {params[0].arg: binding}, owner)
                self._super_calls(walked[id(stmt)], instance, owner)
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for t in targets:
                    if isinstance(t, ast.Name) and not t.id.startswith("_"):
                        self.add(Use(_named(instance, t.id), UseKind.OVERRIDE, self.where(stmt),
                                     f"{node.name}.{t.id}", owner, shape="", lane=self.lane_of(stmt),
                                     own_at=depth if self.plugin else 0))

    def _override(self, func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool | None:
        """Is this method recorded as an override (None: no), and may vLLM's base simply lack it
        (True: a private name, ``__init__`` or any name in a plugin)? The overlay's public methods are overrides
        by its own rule; dunders other than ``__init__`` are Python's."""
        name = func.name
        if name.startswith("__") and name.endswith("__"):
            return True if name == "__init__" else None  # a base with no __init__ of its own takes any
        return name.startswith("_") or self.plugin

    def _super_calls(self, nodes: list[ast.AST], instance: Binding, owner: str) -> None:
        """``super().m(...)`` and ``super(C, self).m(...)``: calls of the vLLM base, with their arguments."""
        for sub in nodes:
            if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and _super_attribute(sub.func):
                self.add(_use(instance.target((sub.func.attr,)), sub, sub.func, self, owner, receiver="instance"))

    def classes(self) -> None:
        """Every class of the file that subclasses a vLLM class (the overlay's own modules)."""
        for node in self.nodes:
            if isinstance(node, ast.ClassDef):
                for base in node.bases:
                    binding = self.base_binding(base, {})
                    if binding is not None:
                        self.subclass(node, binding, node.name)
                        break

    # -- what a plugin does to vLLM: assignments, CustomOp.register_oot, probes ----------------------

    def _vllm_target(self, node: ast.expr) -> str | None:
        root, attrs = _chain(node)
        if isinstance(root, ast.Name) and root.id in self.bindings and id(node) not in self.typing_only:
            return self.bindings[root.id].target(attrs)
        return None

    def _shape_of(self, value: ast.expr) -> str | None:
        """The parameters of a replacement written in this file (a function or a lambda), else None."""
        if isinstance(value, ast.Lambda):
            return function_shape(value)  # type: ignore[arg-type]  # a lambda has the same ``args``
        if isinstance(value, ast.Name) and value.id in self.functions:
            return function_shape(self.functions[value.id][0])
        return None

    def patches(self) -> None:
        """Assignment-style monkey patches (``vllm.x.Y.z = f``, ``Y.z = f`` on an imported class,
        ``module.attr = f``, ``setattr(Y, "z", f)`` with a constant name): the target must still exist,
        and a replacement written here must still accept vLLM's calls. ``CustomOp.register_oot``
        replaces the vLLM class of that name. ``hasattr(Y, "z")`` / ``getattr(Y, "z", d)`` rely on
        ``Y.z`` only as far as the code allows for its absence: listed as guarded."""
        for node in self.nodes:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    target = self._vllm_target(t) if isinstance(t, ast.Attribute) else None
                    if target is not None and node.value is not None:
                        self.add(Use(target, UseKind.PATCH, self.where(node), self.text(node), lane=self.lane_of(node),
                                     guard=self.guard_of(node), shape=self._shape_of(node.value)))
            elif isinstance(node, ast.Call):
                name = getattr(node.func, "id", None)
                if name in ("setattr", "hasattr", "getattr") and len(node.args) >= 2 \
                        and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str) \
                        and node.args[1].value.isidentifier():
                    owner = self._vllm_target(node.args[0]) if isinstance(node.args[0], (ast.Name, ast.Attribute)) \
                        else None
                    if owner is None:
                        continue
                    target = f"{owner}.{node.args[1].value}" if ":" in owner else f"{owner}:{node.args[1].value}"
                    if name == "setattr" and len(node.args) >= 3:
                        self.add(Use(target, UseKind.PATCH, self.where(node), self.text(node), lane=self.lane_of(node),
                                     guard=self.guard_of(node), shape=self._shape_of(node.args[2])))
                    elif name == "hasattr" or len(node.args) >= 3:
                        self.add(Use(target, UseKind.ATTRIBUTE, self.where(node), self.text(node), lane=self.lane_of(node),
                                     guard=self.text(node)))
                elif isinstance(node.func, ast.Attribute) and node.func.attr == "register_oot":
                    self._register_oot(node)

    def _register_oot(self, call: ast.Call) -> None:
        target = self._vllm_target(call.func)
        if target is None:
            return
        name = next((k.value.value for k in call.keywords if k.arg == "name" and isinstance(k.value, ast.Constant)
                     and isinstance(k.value.value, str)), None)
        if name is None:  # no name: the class passed (or decorated) is matched by its own name
            cls = next((k.value for k in call.keywords if k.arg == "_decorated_op_cls"), call.args[0] if call.args
                       else None)
            name = cls.id if isinstance(cls, ast.Name) else None
            if name is None:
                name = next((n.name for n in self.nodes if isinstance(n, ast.ClassDef)
                             and any(d is call for d in n.decorator_list)), None)
        if name:
            self.add(Use(target, UseKind.REGISTER_OOT, self.where(call), self.text(call), lane=self.lane_of(call),
                         guard=self.guard_of(call), op_name=name))

    def decorated(self, target: str) -> ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | None:
        """The function or class a ``@PATCH.replace/wrap(target)`` decorator sits on."""
        for node in self.tree.body:
            if not isinstance(node, (*FUNCTIONS, ast.ClassDef)):
                continue
            for dec in node.decorator_list:
                if isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute) \
                        and dec.func.attr in ("replace", "wrap") and dec.args \
                        and isinstance(dec.args[0], ast.Constant) and dec.args[0].value == target:
                    return node
        return None


def _super_attribute(node: ast.AST) -> str | None:
    """``m`` for ``super().m`` / ``super(C, self).m``; None for anything else."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Call) \
            and isinstance(node.value.func, ast.Name) and node.value.func.id == "super":
        return node.attr
    return None


def _walk_local(stmt: ast.AST) -> Iterator[ast.AST]:
    """Nodes of a statement, not descending into nested functions or classes (read on their own)."""
    yield stmt
    for child in ast.iter_child_nodes(stmt):
        if isinstance(child, (*FUNCTIONS, ast.ClassDef)):
            for dec in child.decorator_list:
                yield from _walk_local(dec)
            continue
        yield from _walk_local(child)


def _chain_ids(node: ast.expr) -> set[int]:
    """The attribute nodes inside a chain (``a.b.c`` holds ``a.b``): read as part of it, not again."""
    out: set[int] = set()
    current = getattr(node, "value", None)
    while isinstance(current, ast.Attribute):
        out.add(id(current))
        current = current.value
    return out


def _prefix(node: ast.Attribute, drop: int) -> ast.expr:
    for _ in range(drop):
        node = node.value  # type: ignore[assignment]
    return node


def _typed(node: ast.expr, scope: dict[str, Binding]) -> Binding | None:
    if isinstance(node, ast.Name):
        return scope.get(node.id)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "type" \
            and len(node.args) == 1 and isinstance(node.args[0], ast.Name):
        binding = scope.get(node.args[0].id)
        if binding is not None and binding.kind == "instance":
            return Binding(binding.module, binding.path, "class", own=binding.own)
    return None


def _is_static(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in func.decorator_list)


def _is_classmethod(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "classmethod" for d in func.decorator_list)


def _named(binding: Binding, name: str) -> str:
    """``binding``'s target with one more name: never empty, so never None."""
    target = binding.target((name,))
    assert target is not None
    return target


def _use(target: str | None, call: ast.Call | None, node: ast.AST, file: SourceFile, owner: str,
         receiver: str = "", own_at: int = 0) -> Use | None:
    if target is None:
        return None
    at = call if call is not None else node
    context: dict[str, Any] = {"lane": file.lane_of(at), "guard": file.guard_of(at), "own_at": own_at}
    if call is None:
        return Use(target, UseKind.ATTRIBUTE, file.where(node), file.text(node), owner, receiver, **context)
    starred = any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords)
    return Use(target, UseKind.CALL, file.where(call), file.text(call), owner, receiver,
               None if starred else len(call.args), () if starred else tuple(k.arg for k in call.keywords if k.arg),
               unpack=file.unpacked.get(id(call)), **context)


def returned_names(func: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    return [n.value.id for stmt in func.body for n in _walk_local(stmt)
            if isinstance(n, ast.Return) and isinstance(n.value, ast.Name)]


def nested_definitions(func: ast.AST, name: str) -> list[ast.AST]:
    return [n for n in ast.walk(func) if isinstance(n, (*FUNCTIONS, ast.ClassDef)) and n.name == name and n is not func]




# -- version lanes, guards and unpacking: the context a use sits in --------------------------------

Span = tuple[tuple[int, int], tuple[int, int], str]
_GUARD_EXCEPTIONS = frozenset({"ImportError", "ModuleNotFoundError", "AttributeError", "Exception", "BaseException"})


def _calls_named(node: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(node) if isinstance(n, ast.Call)
            and (getattr(n.func, "id", None) == name or getattr(n.func, "attr", None) == name)]


def _span(nodes: list[ast.stmt] | list[ast.expr], text: str) -> Span | None:
    if not nodes:
        return None
    first, last = nodes[0], nodes[-1]
    return ((first.lineno, first.col_offset), (last.end_lineno or last.lineno, last.end_col_offset or 0), text)


def _is_version_call(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and (getattr(node.func, "id", None) == "vllm_version_is"
                                           or getattr(node.func, "attr", None) == "vllm_version_is")


def _version_names(nodes: list[ast.AST]) -> set[str]:
    """Names bound to a version test (``is_legacy = vllm_version_is("0.19.0")``, ``not``/``and``/``or``
    of such calls): ``if is_legacy:`` is a lane."""
    def test(value: ast.AST) -> bool:
        if isinstance(value, ast.UnaryOp):
            return test(value.operand)
        if isinstance(value, ast.BoolOp):
            return any(test(v) for v in value.values)
        return _is_version_call(value)

    return {t.id for n in nodes if isinstance(n, ast.Assign) and test(n.value)
            for t in n.targets if isinstance(t, ast.Name)}


def _is_version_test(test: ast.expr, names: set[str]) -> bool:
    return bool(_calls_named(test, "vllm_version_is")) or any(
        isinstance(n, ast.Name) and n.id in names for n in ast.walk(test))


def _negated(test: ast.expr) -> str:
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return ast.unparse(test.operand)
    return f"not ({ast.unparse(test)})" if isinstance(test, (ast.BoolOp, ast.Compare)) else f"not {ast.unparse(test)}"


def _contexts(nodes: list[ast.AST]) -> tuple[list[Span], list[Span]]:
    """Where the file branches on the vLLM version (lanes: ``vllm_version_is(...)`` in an ``if``, a
    conditional expression, or a name bound to one) and where it allows for a name's absence (guards:
    ``hasattr``, ``try/except ImportError``): spans of source, each with the text a row shows."""
    lanes: list[Span] = []
    guards: list[Span] = []
    branches = [n for n in nodes if isinstance(n, (ast.If, ast.IfExp, ast.Try))]
    if not branches:
        return lanes, guards
    names = _version_names(nodes) if any(_is_version_call(n) for n in nodes) else set()
    for node in branches:
        if isinstance(node, (ast.If, ast.IfExp)):
            body = node.body if isinstance(node.body, list) else [node.body]
            orelse = node.orelse if isinstance(node.orelse, list) else [node.orelse]
            if _is_version_test(node.test, names):
                lanes += [s for s in (_span(body, ast.unparse(node.test)), _span(orelse, _negated(node.test))) if s]
            probes = _calls_named(node.test, "hasattr")
            if probes:
                negated = isinstance(node.test, ast.UnaryOp) and isinstance(node.test.op, ast.Not)
                span = _span(orelse if negated else body, ast.unparse(probes[0]))
                if span:
                    guards.append(span)
        elif isinstance(node, ast.Try):
            caught = set()
            for handler in node.handlers:
                kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
                caught |= {"Exception" if k is None else getattr(k, "id", getattr(k, "attr", "")) for k in kinds}
            hit = sorted(caught & _GUARD_EXCEPTIONS)
            span = _span(node.body, f"try/except {hit[0]}") if hit else None
            if span:
                guards.append(span)
    return lanes, guards


def _innermost(spans: list[Span], node: ast.AST) -> str:
    line = getattr(node, "lineno", None)
    if line is None:
        return ""
    at = (line, getattr(node, "col_offset", 0))
    best: Span | None = None
    for span in spans:
        if span[0] <= at <= span[1] and (best is None or span[0] >= best[0]):
            best = span
    return best[2] if best else ""


def _unpacked_calls(nodes: list[ast.AST]) -> dict[int, int]:
    """Calls whose result is unpacked to a fixed number of names (``a, b = f()``): id -> count."""
    out = {}
    for node in nodes:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.value, ast.Call) \
                and isinstance(node.targets[0], (ast.Tuple, ast.List)) \
                and not any(isinstance(e, ast.Starred) for e in node.targets[0].elts):
            out[id(node.value)] = len(node.targets[0].elts)
    return out
