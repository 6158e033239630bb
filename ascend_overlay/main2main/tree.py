"""Lazy static loading of a vLLM tree with griffe: only the modules a question needs.

griffe can load the whole ``vllm`` package, but that takes ~25 s; ``check`` has to answer in about a
second, and the drift report only cares about files that changed. So modules are visited one at a
time, on demand: the module a target lives in, the modules its import aliases and base classes lead
to, and the parent packages that hold them. Nothing is ever imported.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import griffe

# External bases whose instances get object.__init__ (nothing in their own __dict__ to shadow it).
NO_INIT_BASES = frozenset({"object", "builtins.object", "abc.ABC", "typing.Generic", "typing.NamedTuple",
                           "typing_extensions.Generic", "typing_extensions.NamedTuple"})
_MAX_HOPS = 12


@dataclass
class Found:
    """What a target path leads to, statically, with the facts the fingerprint rules depend on."""

    kind: str                  # function | class | attribute | module | external-module | external
    obj: Any = None            # the griffe object (None for external things)
    module: str = ""           # the module that defines it
    inherited: bool = False    # found on a base class, not on the owner named in the target
    via_alias: str | None = None  # the import the path went through, when it did
    external: str | None = None   # dotted path of an object outside the tree


class StaticTree:
    """One vLLM source tree, visited module by module as questions need them."""

    def __init__(self, root: Path, package: str = "vllm", *, placeholders: bool = False) -> None:
        self.root = Path(root)
        self.package = package
        self.placeholders = placeholders  # parents not asked for become empty modules (drift)
        self.collection = griffe.ModulesCollection()
        self.lines = griffe.LinesCollection()
        self._modules: dict[str, griffe.Module | None] = {}
        self._asts: dict[str, ast.Module | None] = {}
        self.failed: dict[str, str] = {}

    # -- files ----------------------------------------------------------------------------------

    def module_file(self, name: str) -> Path | None:
        parts = name.split(".")
        if parts[0] != self.package:
            return None
        base = self.root.joinpath(*parts)
        for candidate in (base / "__init__.py", base.with_suffix(".py"), base / "__init__.pyi", base.with_suffix(".pyi")):
            if candidate.is_file():
                return candidate
        return None

    def is_package(self, name: str) -> bool:
        path = self.module_file(name)
        return path is not None and path.stem == "__init__"

    def module_names(self) -> Iterator[str]:
        """Every module of the package, from the file layout (cheap: no file is read)."""
        top = self.root / self.package
        for path in sorted(top.rglob("*.py")):
            rel = path.relative_to(self.root).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            if all(p.isidentifier() for p in parts):
                yield ".".join(parts)

    def relpath(self, name: str) -> str:
        path = self.module_file(name)
        return str(path.relative_to(self.root)) if path else name.replace(".", "/") + ".py"

    # -- modules --------------------------------------------------------------------------------

    def module(self, name: str) -> griffe.Module | None:
        """The visited module ``name``, or None if the tree has no such module (or it does not parse)."""
        if name in self._modules:
            return self._modules[name]
        return self._load(name, placeholder=False)

    def preload(self, names: Iterable[str]) -> None:
        """Visit these modules, parents first (for drift: the changed files of a tree)."""
        for name in sorted(set(names), key=lambda n: (n.count("."), n)):
            self.module(name)

    def parents(self, name: str) -> None:
        """Make sure the existing parent packages of ``name`` are present (placeholders when allowed)."""
        parts = name.split(".")
        for cut in range(1, len(parts)):
            parent = ".".join(parts[:cut])
            if parent not in self._modules and self.module_file(parent) is not None:
                self._load(parent, placeholder=self.placeholders)

    def _load(self, name: str, *, placeholder: bool) -> griffe.Module | None:
        path = self.module_file(name)
        if path is None:
            self._modules[name] = None
            return None
        parent_name, _, short = name.rpartition(".")
        parent = None
        if parent_name:
            parent = self._modules.get(parent_name)
            if parent is None:
                parent = self._load(parent_name, placeholder=self.placeholders)
            if parent is None:
                self._modules[name] = None
                return None
        if placeholder:
            module = griffe.Module(short, filepath=path, parent=parent, lines_collection=self.lines,
                                   modules_collection=self.collection)
        else:
            try:
                code = path.read_text(encoding="utf-8-sig")
                module = griffe.visit(short, filepath=path, code=code, parent=parent,
                                      lines_collection=self.lines, modules_collection=self.collection)
            except (SyntaxError, UnicodeDecodeError, OSError, ValueError) as exc:
                self.failed[name] = f"{type(exc).__name__}: {exc}"
                self._modules[name] = None
                return None
        if parent is None:
            self.collection.set_member(module.path, module)
        else:
            parent.set_member(short, module)
        if not placeholder:
            # After attaching: dataclass fields of bases in this module resolve only through the collection.
            griffe.DataclassesExtension().on_package(pkg=module)
        self._modules[name] = module
        return module

    def syntax(self, name: str) -> ast.Module | None:
        """The module's AST, for the few facts griffe does not keep (how a name was imported)."""
        if name not in self._asts:
            path = self.module_file(name)
            try:
                self._asts[name] = ast.parse(path.read_text(encoding="utf-8-sig")) if path else None
            except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
                self._asts[name] = None
        return self._asts[name]

    # -- resolving ------------------------------------------------------------------------------

    def split_module(self, dotted: str) -> tuple[str, list[str]] | None:
        """The longest prefix of ``dotted`` that is a module of this tree, and the attribute rest."""
        parts = dotted.split(".")
        if parts[0] != self.package:
            return None
        for cut in range(len(parts), 0, -1):
            if self.module_file(".".join(parts[:cut])) is not None:
                return ".".join(parts[:cut]), parts[cut:]
        return None

    def get(self, dotted: str, hops: int = 0) -> Found | None:
        """Resolve a dotted path (as import aliases and base classes name things) to what it is."""
        split = self.split_module(dotted)
        if split is None:
            return _external(dotted)
        module_name, rest = split
        if not rest:
            module = self.module(module_name)
            return None if module is None else Found("module", module, module_name)
        return self.lookup(module_name, tuple(rest), hops=hops)

    def lookup(self, module_name: str, path: tuple[str, ...], hops: int = 0) -> Found | None:
        """``module:Attr.path`` the way ``getattr`` would find it at run time, or None when absent."""
        module = self.module(module_name)
        if module is None:
            return None
        current: Found | None = Found("module", module, module_name)
        for index, name in enumerate(path):
            assert current is not None
            current = self._member(current, name, hops)
            if current is None:
                return None
            if index + 1 < len(path) and current.kind not in ("class", "module"):
                return None
        return current

    def _member(self, owner: Found, name: str, hops: int) -> Found | None:
        obj = owner.obj
        if owner.kind == "module":
            member = obj.members.get(name)
            if member is None:
                sub = f"{obj.path}.{name}"
                if self.module_file(sub) is not None:
                    module = self.module(sub)
                    return None if module is None else Found("module", module, sub)
                return self._from_wildcard(obj, name, hops)
            return self._describe(member, owner.module, hops, alias_owner=owner.module)
        if owner.kind == "class":
            # A member only an external base (torch.nn.Module, ...) could supply counts as absent: a
            # patch targets what vLLM defines, and guessing "present" would hide a real removal.
            for index, (cls, module_name) in enumerate(self.mro(obj, owner.module)):
                member = _class_member(cls, name)
                if member is not None:
                    found = self._describe(member, module_name, hops, alias_owner=module_name)
                    if found is not None:
                        found.inherited = index > 0 or owner.inherited
                    return found
        return None

    def _from_wildcard(self, module: Any, name: str, hops: int) -> Found | None:
        """``from .parallel_state import *`` (griffe keeps it unexpanded, as a member named ``.../*``):
        a public name, or one in the source module's ``__all__``, is found there, as Python would."""
        if hops >= _MAX_HOPS:
            return None
        for key, member in list(module.members.items()):
            if not key.endswith("/*") or not getattr(member, "is_alias", False):
                continue
            source = self.module(member.target_path) if member.target_path.split(".")[0] == self.package else None
            if source is None:
                continue
            exported = _all_names(self.syntax(member.target_path))
            if (exported is not None and name not in exported) or (exported is None and name.startswith("_")):
                continue
            found = self._member(Found("module", source, member.target_path), name, hops + 1)
            if found is not None:
                if found.via_alias is None:
                    found.via_alias = f"{module.path}.* -> {member.target_path}"
                return found
        return None

    def _describe(self, member: Any, module_name: str, hops: int, alias_owner: str) -> Found | None:
        if member.is_alias:
            if hops >= _MAX_HOPS:
                return None
            found = self._resolve_alias(member, alias_owner, hops + 1)
            if found is not None and found.via_alias is None:
                found.via_alias = f"{member.path} -> {member.target_path}"
            return found
        if member.is_module:
            return Found("module", member, member.path)
        if member.is_class:
            return Found("class", member, module_name)
        if member.is_function:
            return Found("function", member, module_name)
        return Found("attribute", member, module_name)

    def _resolve_alias(self, alias: Any, owner_module: str, hops: int) -> Found | None:
        target = alias.target_path
        if target.split(".")[0] == self.package:
            return self.get(target, hops)
        if self._binds_module(owner_module, alias.name, target):
            return Found("external-module", None, target, external=target)
        return _external(target)

    def _binds_module(self, module_name: str, bound: str, target: str) -> bool:
        """Does ``bound`` come from ``import x`` (always a module), or ``from m import x`` of a stdlib module?"""
        tree = self.syntax(module_name)
        for node in getattr(tree, "body", []):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if (alias.asname or alias.name.split(".")[0]) == bound:
                        return True
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    if (alias.asname or alias.name) == bound:
                        return _is_stdlib_module(f"{node.module}.{alias.name}")
        return False

    def refresh_dataclass_init(self, cls: Any, module_name: str) -> None:
        """Re-make a dataclass ``__init__`` once its bases are loaded (inherited fields come first)."""
        init = cls.members.get("__init__")
        if init is None or init.is_alias or init.lineno != 0:
            return  # written by hand, or not a dataclass
        self.mro(cls, module_name)  # loads the base modules
        cls.del_member("__init__")
        griffe.DataclassesExtension().on_package(pkg=cls)

    def mro(self, cls: Any, module_name: str) -> list[tuple[Any, str]]:
        """The class and its in-tree bases, depth first in declaration order (C3 order for the cases
        that matter here); an unresolvable or external base ends the walk with a marker entry."""
        order: list[tuple[Any, str]] = []
        seen: set[str] = set()

        def walk(current: Any, where: str, depth: int) -> None:
            if current.path in seen or depth > _MAX_HOPS:
                return
            seen.add(current.path)
            order.append((current, where))
            for base in current.bases:
                path = _expr_path(base)
                if path is None:
                    order.append((_Opaque(str(base)), ""))
                    continue
                found = self.get(path)
                if found is not None and found.kind == "class":
                    walk(found.obj, found.module, depth + 1)
                elif path not in NO_INIT_BASES:
                    order.append((_Opaque(path), ""))

        walk(cls, module_name, 0)
        return order


@dataclass
class _Opaque:
    """A base class the tree cannot see into (outside vLLM, or not resolvable statically)."""

    path: str
    members: Any = None


def _class_member(cls: Any, name: str) -> Any:
    if isinstance(cls, _Opaque):
        return None
    member = cls.members.get(name)
    if member is None:
        return None
    # ``self.x = ...`` in a method makes an instance attribute: getattr on the class does not see it.
    if not member.is_alias and member.is_attribute and member.labels == {"instance-attribute"}:
        return None
    return member


def _all_names(module: ast.Module | None) -> set[str] | None:
    """A module's literal ``__all__`` (None when it has none, or computes it)."""
    for node in getattr(module, "body", []):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, SyntaxError):
                return None
            return {v for v in value if isinstance(v, str)} if isinstance(value, (list, tuple)) else None
    return None


def is_opaque(cls: Any) -> bool:
    return isinstance(cls, _Opaque)


def _expr_path(expr: Any) -> str | None:
    if isinstance(expr, str):
        return expr
    try:
        return expr.canonical_path
    except AttributeError:
        return None


def _external(dotted: str) -> Found:
    if _is_stdlib_module(dotted):
        return Found("external-module", None, dotted, external=dotted)
    return Found("external", None, dotted.rpartition(".")[0], external=dotted)


def _is_stdlib_module(dotted: str) -> bool:
    if dotted.split(".")[0] not in sys.stdlib_module_names:
        return False
    try:
        return importlib.util.find_spec(dotted) is not None
    except (ImportError, ValueError):
        return False
