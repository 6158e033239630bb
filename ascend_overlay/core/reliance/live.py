"""The live lookup: what the running vLLM has under a relied-on name, for the check at apply time.

It follows the same rules as the static lookup of main2main (``main2main/reliance_static.py``): a
module's own names and submodules, a class's members along its vLLM bases, instance attributes read
from the class's source (``classbody``), and a base outside vLLM asked only when vLLM has no such name.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import linecache
import sys
import types
from collections.abc import Iterator
from typing import Any

from ascend_overlay.core import contract
from ascend_overlay.core.reliance.classbody import (
    computed_attribute_hit,
    external_has,
    find_class,
    instance_attributes,
    is_trivial_base,
    method_attributes,
    parse_file,
)
from ascend_overlay.core.reliance.model import Hit, HitStatus


def _in_package(klass: type, package: str) -> bool:
    """Is the class part of the package under study (vLLM; for a target elsewhere, that package)?"""
    module = getattr(klass, "__module__", "") or ""
    return module == package or module.startswith(package + ".")


def _source_path(klass: type) -> str | None:
    """The file whose class statement the reading takes (none for a class made inside a function)."""
    path = getattr(sys.modules.get(klass.__module__), "__file__", None)
    return path if path and "<locals>" not in klass.__qualname__ else None


def _gives_instances(klass: type, name: str) -> bool:
    """Does the class's own code give instances ``name``? The reading of the whole class statement
    (``classbody.instance_attributes``), the one rule of the live and static lookups."""
    path = _source_path(klass)
    if path is None or name not in _source_text(path):
        return False  # a name the file never spells cannot be read from its class statement
    return name in instance_attributes(find_class(parse_file(path), klass.__qualname__))


def _surely_gives_instances(klass: type, name: str) -> bool:
    """A yes of ``_gives_instances`` reached without parsing the file: the class's annotations, then
    the methods whose code objects mention ``name``, each method's own lines parsed alone (a method is
    part of the class statement, so its yes is the whole reading's yes). Why: a worker checks names of
    classes two to three thousand lines long, and whole-file parses cost tens of milliseconds in
    every process. A no here proves nothing; the caller then asks the whole reading."""
    path = _source_path(klass)
    if path is None:
        return False
    annotations = _own_annotations(klass)
    return (name in annotations and not _init_var(annotations[name])) or any(name in _method_names(func) for func in _own_functions(klass)
                                                  if func.__code__.co_filename == path
                                                  and _mentions(func.__code__, name))


def _init_var(annotation: Any) -> bool:
    """``dataclasses.InitVar[...]`` (object or text): an ``__init__`` parameter, not an instance attribute."""
    import dataclasses

    if isinstance(annotation, str):
        return annotation.startswith(("InitVar", "dataclasses.InitVar"))
    return isinstance(annotation, dataclasses.InitVar) or annotation is dataclasses.InitVar


def _source_text(path: str) -> str:
    return "".join(linecache.getlines(path))


def _own_annotations(klass: type) -> Any:
    try:
        return inspect.get_annotations(klass)
    except Exception:  # noqa: BLE001 - an annotation that fails to evaluate: let the whole reading decide
        return ()


def _own_functions(klass: type) -> Iterator[types.FunctionType]:
    """The plain functions defined in the class statement: methods, property accessors, the methods
    under ``functools.wraps`` decorators (static and class methods give instances nothing)."""
    for raw in vars(klass).values():
        if isinstance(raw, (staticmethod, classmethod)):
            continue
        if isinstance(raw, property):
            candidates: tuple[Any, ...] = (raw.fget, raw.fset, raw.fdel)
        elif isinstance(raw, functools.cached_property):
            candidates = (raw.func,)
        else:
            candidates = (raw,)
        for candidate in candidates:
            try:
                func = inspect.unwrap(candidate) if candidate is not None else None
            except ValueError:  # a __wrapped__ cycle
                continue
            if isinstance(func, types.FunctionType) and func.__qualname__ == f"{klass.__qualname__}.{func.__name__}":
                yield func


_METHOD_NAMES: dict[types.CodeType, frozenset[str]] = {}


def _method_names(func: types.FunctionType) -> frozenset[str]:
    """``classbody.method_attributes`` of one method, its lines parsed once per process."""
    code = func.__code__
    if code not in _METHOD_NAMES:
        node = _parse_lines(code.co_filename, code.co_firstlineno, _last_line(code))
        found = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == code.co_name
        _METHOD_NAMES[code] = frozenset(method_attributes(node)) if found else frozenset()  # type: ignore[arg-type]
    return _METHOD_NAMES[code]


def _mentions(code: types.CodeType, name: str) -> bool:
    """Could this code store ``name`` on anything? (``STORE_ATTR`` names it in ``co_names``;
    ``setattr(self, "name", ...)`` holds it as a constant.) Nested functions included."""
    return name in code.co_names or any(
        const == name or isinstance(const, types.CodeType) and _mentions(const, name) for const in code.co_consts)


def _last_line(code: types.CodeType) -> int:
    """The last source line of a function, nested code included (positions span multi-line calls)."""
    positions = code.co_positions() if hasattr(code, "co_positions") else ((line, line) for _, _, line in code.co_lines())
    last = max((position[1] or 0 for position in positions), default=code.co_firstlineno)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            last = max(last, _last_line(const))
    return last


def _parse_lines(path: str, first: int, last: int) -> ast.stmt | None:
    """The one statement on lines first..last of a file (an indented one parsed as an ``if`` body)."""
    lines = linecache.getlines(path)[first - 1:last]
    if not lines:
        return None
    source = "".join(lines)
    indented = lines[0][:1] in (" ", "\t")
    try:
        tree = ast.parse("if 1:\n" + source if indented else source)
    except (SyntaxError, ValueError):
        return None
    body = tree.body[0].body if indented and tree.body else tree.body  # type: ignore[attr-defined]
    return body[0] if len(body) == 1 and len(tree.body) == 1 else None


def _kind(obj: Any) -> str:
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        return "class"
    if isinstance(obj, (staticmethod, classmethod)) or inspect.isroutine(obj) or callable(obj) and hasattr(obj, "__wrapped__"):
        return "function"
    return "attribute"


def _method(raw: Any) -> str:
    if isinstance(raw, staticmethod):
        return "static"
    if isinstance(raw, classmethod):
        return "class"
    return "plain"


def _fingerprint(raw: Any, kind: str) -> str | None:
    """Shapes as the static lookup reads them: none for plain attributes (a value's type is not a
    contract source can state), none for a class whose ``__init__`` comes from outside vLLM."""
    if kind == "attribute":
        if isinstance(raw, functools.cached_property):
            return "cached_property"
        return "property" if isinstance(raw, property) else None
    if kind == "class":
        package = (raw.__module__ or "").split(".")[0]
        for klass in raw.__mro__:
            if klass is object:
                break
            if is_trivial_base(klass.__module__, klass.__name__):
                continue  # object, ABC, Protocol, Generic: what the static lookup skips too
            if not _in_package(klass, package):
                return None  # the __init__ comes from outside vLLM (an Enum, a pydantic model...)
            init = vars(klass).get("__init__")
            if init is not None:
                # typing.Protocol puts its own __init__ in every protocol class: not vLLM's shape
                if (getattr(init, "__module__", None) or "").split(".")[0] != package:
                    return None
                break
    if kind == "module":
        return "module"
    return contract.fingerprint(raw)


class LiveLookup:
    """Looks names up in the running process; imports modules only when allowed (not in import hooks)."""

    def __init__(self, import_modules: bool = True) -> None:
        self.import_modules = import_modules

    def _module(self, name: str) -> tuple[Any, str]:
        if name in sys.modules:
            return sys.modules[name], ""
        if not self.import_modules:
            return None, f"module {name} is not imported yet"
        try:
            return importlib.import_module(name), ""
        except Exception as exc:  # noqa: BLE001 - any import failure means the name is not there
            return None, f"module {name} cannot be imported: {type(exc).__name__}: {exc}"

    def find(self, module_name: str, path: tuple[str, ...]) -> Hit:
        obj, why = self._module(module_name)
        if obj is None:
            return Hit(HitStatus.UNVERIFIABLE if why.endswith("not imported yet") else HitStatus.MISSING, detail=why)
        kind, method = "module", ""
        for depth, name in enumerate(path):
            shown = _label(module_name, path[:depth])
            if kind == "module":
                namespace = vars(obj)
                if name in namespace:
                    obj = namespace[name]
                    kind, method = _kind(obj), ""
                elif f"{obj.__name__}.{name}" in sys.modules or _has_spec(f"{obj.__name__}.{name}"):
                    obj, why = self._module(f"{obj.__name__}.{name}")
                    if obj is None:
                        return Hit(HitStatus.UNVERIFIABLE if why.endswith("not imported yet") else HitStatus.MISSING,
                                   detail=why, depth=depth)
                    kind = "module"
                elif "__getattr__" in namespace:
                    return computed_attribute_hit(parse_file(getattr(obj, "__file__", "") or ""), shown, name, depth)
                else:
                    return Hit(HitStatus.MISSING, depth=depth, detail=f"{shown} has no attribute {name!r}")
            elif kind == "class":
                found = _class_member(obj, name, module_name.split(".")[0])
                if found is None:
                    return Hit(HitStatus.MISSING, depth=depth, detail=missing_member(shown, name))
                if found[0] != "member":
                    return Hit(HitStatus.FOUND, found[0], None, "", depth + 1)
                obj = found[1]
                kind = _kind(obj)
                method = _method(obj) if kind == "function" else ""
            else:
                return Hit(HitStatus.FOUND, kind, _fingerprint(obj, kind), method, depth)
        return Hit(HitStatus.FOUND, kind, _fingerprint(obj, kind), method, len(path))


def _label(module_name: str, path: tuple[str, ...]) -> str:
    return f"{module_name}:{'.'.join(path)}" if path else module_name


def missing_member(owner: str, name: str) -> str:
    """The one wording of "the class has no such name" (live and static)."""
    return (f"{owner} has no attribute {name!r} (no class attribute or method, and no instance attribute "
            f"set on self in its methods, along its vLLM bases)")


def _has_spec(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _class_member(cls: type, name: str, package: str) -> tuple[str, Any] | None:
    """The first vLLM class along the MRO that has ``name`` as a member or gives it to instances, then
    the bases outside vLLM. A member found further up is taken only once no class before it gives
    instances the name (the whole reading, run only then)."""
    own: list[type] = []
    external: list[type] = []
    for klass in cls.__mro__:
        if klass is object or is_trivial_base(klass.__module__, klass.__name__):
            continue
        (own if _in_package(klass, package) else external).append(klass)
    owner = next((klass for klass in own if name in vars(klass)), None)
    before = own[:own.index(owner)] if owner is not None else own
    if any(_surely_gives_instances(klass, name) for klass in before) \
            or any(_gives_instances(klass, name) for klass in before):
        return "instance-attribute", None
    if owner is not None:
        return "member", vars(owner)[name]
    for klass in external:
        if external_has(f"{klass.__module__}.{klass.__qualname__}", name):
            return "external", None
    return None
