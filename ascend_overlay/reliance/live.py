"""The live lookup: what the running vLLM has under a relied-on name, for the check at apply time.

It follows the same rules as the static lookup of main2main (``main2main/reliance_static.py``): a
module's own names and submodules, a class's members along its vLLM bases, instance attributes read
from the class's source (``classbody``), and a base outside vLLM asked only when vLLM has no such name.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys
from typing import Any

from ascend_overlay import contract
from ascend_overlay.reliance.classbody import (
    computed_attribute_hit,
    external_has,
    find_class,
    instance_attributes,
    is_trivial_base,
    parse_file,
)
from ascend_overlay.reliance.model import Hit


def _in_package(klass: type, package: str) -> bool:
    """Is the class part of the package under study (vLLM; for a target elsewhere, that package)?"""
    module = getattr(klass, "__module__", "") or ""
    return module == package or module.startswith(package + ".")


def _instance_attributes(klass: type) -> frozenset[str]:
    module = sys.modules.get(klass.__module__)
    path = getattr(module, "__file__", None)
    if not path or "<locals>" in klass.__qualname__:
        return frozenset()
    return instance_attributes(find_class(parse_file(path), klass.__qualname__))


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
            return Hit("unverifiable" if why.endswith("not imported yet") else "missing", detail=why)
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
                        return Hit("unverifiable" if why.endswith("not imported yet") else "missing",
                                   detail=why, depth=depth)
                    kind = "module"
                elif "__getattr__" in namespace:
                    return computed_attribute_hit(parse_file(getattr(obj, "__file__", "") or ""), shown, name, depth)
                else:
                    return Hit("missing", depth=depth, detail=f"{shown} has no attribute {name!r}")
            elif kind == "class":
                found = _class_member(obj, name, module_name.split(".")[0])
                if found is None:
                    return Hit("missing", depth=depth, detail=missing_member(shown, name))
                if found[0] != "member":
                    return Hit("found", found[0], None, "", depth + 1)
                obj = found[1]
                kind = _kind(obj)
                method = _method(obj) if kind == "function" else ""
            else:
                return Hit("found", kind, _fingerprint(obj, kind), method, depth)
        return Hit("found", kind, _fingerprint(obj, kind), method, len(path))


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
    external = []
    for klass in cls.__mro__:
        if klass is object or is_trivial_base(klass.__module__, klass.__name__):
            continue
        if not _in_package(klass, package):
            external.append(klass)
            continue
        if name in vars(klass):
            return "member", vars(klass)[name]
        if name in _instance_attributes(klass):
            return "instance-attribute", None
    for klass in external:
        if external_has(f"{klass.__module__}.{klass.__qualname__}", name):
            return "external", None
    return None
