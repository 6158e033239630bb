"""Run code the moment a module finishes importing, before the importer gets it back.

The overlay owns this small finder rather than using wrapt's post-import hooks for three reasons
the domain has tripped over: a failing hook must never fail vLLM's import; hooks must be removable
(deactivate, tests); and a hook must fire again if a module is imported anew (``importlib.reload``
aside, a module removed from ``sys.modules`` and imported again is a new object to patch).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

Hook = Callable[[ModuleType], None]

_hooks: dict[str, list[Hook]] = {}
_lock = threading.RLock()
_local = threading.local()


class _HookedLoader:
    """Delegates to the real loader; after ``exec_module`` runs the hooks for the module's name."""

    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        created: ModuleType | None = self._loader.create_module(spec)
        return created

    def exec_module(self, module: ModuleType) -> None:
        # Put the real loader back first: code that inspects __loader__ should see the real one.
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        module.__loader__ = self._loader
        self._loader.exec_module(module)
        _run_hooks(self._name, module)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._loader, attr)


class _Finder(MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if fullname not in _hooks:
            return None
        busy = getattr(_local, "busy", None)
        if busy is None:
            busy = _local.busy = set()
        if fullname in busy:
            return None
        busy.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            busy.discard(fullname)
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _HookedLoader(spec.loader, fullname)  # type: ignore[assignment]  # a Loader by duck typing
        return spec


_finder = _Finder()


def _run_hooks(name: str, module: ModuleType) -> None:
    with _lock:
        hooks = list(_hooks.get(name, ()))
    for hook in hooks:
        hook(module)  # hooks isolate their own errors; see Overlay._import_hook_for


def when_imported(name: str, hook: Hook) -> None:
    """Call ``hook(module)`` now if ``name`` is imported, and on every later import of it."""
    with _lock:
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
        _hooks.setdefault(name, []).append(hook)
        module = sys.modules.get(name)
    if module is not None:
        hook(module)


def remove(name: str, hook: Hook) -> None:
    with _lock:
        hooks = _hooks.get(name, [])
        if hook in hooks:
            hooks.remove(hook)
        if not hooks:
            _hooks.pop(name, None)
        if not _hooks and _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
