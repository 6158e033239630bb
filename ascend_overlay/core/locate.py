"""Where a module would be imported from, found without importing anything.

``importlib.util.find_spec("a.b")`` imports ``a`` first (it needs ``a.__path__``), which runs
``a/__init__.py``: for ``vllm.x`` that is torch in every process, and for a package that is about to
be trust-checked it is that package's code running before its check. Here only the top-level name is
given to ``find_spec`` (the installed finders answer it, editable installs included, without executing
the package), and each further component is looked up by ``PathFinder`` in its parent's search
locations, which reads directories and nothing else.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from importlib.machinery import ModuleSpec


def specs_on_the_way(name: str) -> list[ModuleSpec] | None:
    """The spec of every package on the way to ``name`` and of ``name`` itself (outermost first), or
    None when some component cannot be found. Already imported modules answer with their own spec."""
    parts = name.split(".")
    if not all(parts):
        return None
    chain: list[ModuleSpec] = []
    for index in range(len(parts)):
        fullname = ".".join(parts[:index + 1])
        spec = _spec(fullname, chain[-1] if chain else None)
        if spec is None:
            return None
        chain.append(spec)
    return chain


def _spec(fullname: str, parent: ModuleSpec | None) -> ModuleSpec | None:
    loaded = sys.modules.get(fullname, False)
    if loaded is None:
        return None  # ``sys.modules[name] = None`` is Python's own way to say "not importable here"
    if loaded is not False:
        return getattr(loaded, "__spec__", None)
    try:
        if parent is None:
            return importlib.util.find_spec(fullname)
        locations = parent.submodule_search_locations
        if locations is None:
            return None  # a plain module has no submodules
        return importlib.machinery.PathFinder.find_spec(fullname, list(locations))
    except (ImportError, ValueError):
        return None


def importable(name: str) -> bool:
    """Whether ``import name`` would find the module here (it may still raise while importing)."""
    return specs_on_the_way(name) is not None
