"""A vLLM source tree made from the installed one in a blink: every file a symlink to the installed
file, except the few a test edits (written as real files). main2main reads it like any vLLM tree."""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable
from pathlib import Path

from ascend_overlay.main2main.sources import installed_source


def installed_root() -> Path:
    return installed_source().root


def edited_tree(dest: Path, edits: dict[str, Callable[[str], str]]) -> Path:
    """``dest`` holding ``vllm/``; ``edits`` maps a path relative to the tree (``vllm/x.py``) to a text transform."""
    root = installed_root()
    unused = set(edits)
    for dirpath, dirnames, filenames in os.walk(root / "vllm"):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        rel = Path(dirpath).relative_to(root)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            if not name.endswith((".py", ".pyi")):
                continue
            key = str(rel / name)
            if key in edits:
                text = (Path(dirpath) / name).read_text(encoding="utf-8")
                changed = edits[key](text)
                assert changed != text, f"the edit of {key} changed nothing"
                (dest / key).write_text(changed, encoding="utf-8")
                unused.discard(key)
            else:
                os.symlink(Path(dirpath) / name, dest / key)
    assert not unused, f"no such files in the installed vLLM: {sorted(unused)}"
    return dest


def rename(name: str) -> Callable[[str], str]:
    """Rename every whole-word occurrence of ``name`` in a file (definition and uses alike)."""
    pattern = re.compile(rf"\b{re.escape(name)}\b")
    return lambda text: pattern.sub(f"{name}_renamed", text)


def defining_files(module: str, path: tuple[str, ...]) -> list[str]:
    """The files (relative to the tree) where the last name of ``module:path`` is defined, found
    through the live objects: the module for a module-level name, else every vLLM class along the
    MRO whose body or ``__init__`` defines it (renaming it in all of them removes it)."""
    import importlib

    from ascend_overlay.core.reliance.classbody import find_class, instance_attributes, parse_file

    owner = importlib.import_module(module)
    for part in path[:-1]:
        owner = getattr(owner, part)
    name = path[-1]
    sources = []
    if inspect.ismodule(owner):
        sources.append(owner.__file__)
    else:
        for klass in owner.__mro__:
            if not klass.__module__.startswith("vllm"):
                continue
            file = inspect.getsourcefile(klass)
            if name in vars(klass) or name in instance_attributes(find_class(parse_file(file), klass.__qualname__)):
                sources.append(file)
    assert sources, f"{module}:{'.'.join(path)} is not defined in vLLM"
    root = installed_root().resolve()
    return sorted({str(Path(source).resolve().relative_to(root)) for source in sources})
