"""Reads the overlay's own source to list what it relies on in vLLM without editing it.

Derived, never guessed: only what the code names can be listed.

- vLLM names imported (``from vllm.x import Y``) and attribute chains read from them
  (``AttentionBackendEnum.FLEX_ATTENTION``, ``envs.environment_variables``), with the shape of each call;
- for a patch on ``module:Class.attr``: the attributes its replacement reads on the target's class and
  instances (``self.x``, ``type(self).x``; ``instance.x`` in a wrapper), and the calls it makes of
  the original (``original(self, ...)``);
- for a class of the overlay that subclasses a vLLM class: every public method and class attribute it
  defines (an override of the base's, whose shape must still accept vLLM's calls) and what its methods
  read on ``self`` that the class does not define itself;
- parameters annotated with a vLLM class (``vllm_config: VllmConfig``): the attributes read on them;
- functions of the same file called with one of the above as an argument (``helper(self)``) are read
  with that parameter typed, a few calls deep.

What analysis cannot see is declared with ``PATCH.relies_on(target, contract=...)``.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ascend_overlay.core.reliance.classbody import parse_file
from ascend_overlay.core.reliance.model import Use, UseKind
from ascend_overlay.core.reliance.reader import (
    FUNCTIONS,
    Binding,
    SourceFile,
    display_path,
    nested_definitions,
    returned_names,
)

if TYPE_CHECKING:
    from ascend_overlay.core.patch import Patch

# -- entry points ------------------------------------------------------------------------------

_CACHE: dict[tuple[Any, ...], tuple[Use, ...]] = {}


def _file_key(path: str) -> tuple[Any, ...]:
    try:
        st = os.stat(path)
    except OSError:
        return (path,)
    return (path, st.st_size, st.st_mtime_ns)


def declared_uses(patch: Patch) -> list[Use]:
    where = display_path(patch.file) if patch.file else patch.name
    return [Use(d.target, UseKind.DECLARED, where, f"PATCH.relies_on({d.target!r})", d.target, shape=d.contract,
                compatible=tuple(d.compatible)) for d in getattr(patch, "relied_on", ())]


def uses_of_patch(patch: Patch) -> list[Use]:
    """Every vLLM name a patch relies on but does not edit: declared ones first, then derived ones."""
    declared = declared_uses(patch)
    if not patch.file:
        return declared
    edits = tuple((e.target, e.kind.value, e.factory is not None) for e in patch.edits)
    key = (*_file_key(patch.file), edits)
    if key not in _CACHE:
        edited = {e.target for e in patch.edits}
        # A call of the edited target with unknown arguments (``wrapped(*args, **kwargs)``) adds
        # nothing to the edit's own pin; a call with known arguments (``original(self, x)``) does.
        _CACHE[key] = tuple(u for u in _derive_patch(patch) if u.target not in edited or u.positional is not None)
    skip = {d.target for d in declared}
    return declared + [u for u in _CACHE[key] if u.target not in skip]


def _derive_patch(patch: Patch) -> list[Use]:
    tree = parse_file(patch.file) if patch.file else None
    if tree is None or patch.file is None:
        return []
    file = SourceFile(tree, display_path(patch.file))
    file.import_uses()
    file.imported_chains()
    for edit in patch.edits:
        node = file.decorated(edit.target)
        if node is None:
            continue
        module, path = edit.module, edit.path
        instance = Binding(module, path[:-1], "instance") if len(path) > 1 else None
        if isinstance(node, ast.ClassDef):
            edited = Binding(module, path, "instance")
            file.subclass(node, edited, edit.target)
            continue
        params = [a.arg for a in node.args.posonlyargs + node.args.args]
        if edit.kind.value == "wrap":
            scope = {}
            if params:
                scope[params[0]] = Binding(module, path, "callable", receiver="instance" if instance else "")
            if instance is not None and len(params) > 1:
                scope[params[1]] = instance
            file.read(node, scope, edit.target)
        elif edit.factory is not None:
            if params:
                file.read(node, {params[0]: Binding(module, path, "callable")}, edit.target)
            for name in returned_names(node):
                for inner in nested_definitions(node, name):
                    if isinstance(inner, ast.ClassDef):
                        base = next(
                            (b for b in (file.base_binding(x, {params[0]: Binding(module, path, "callable")})
                                         for x in inner.bases) if b is not None), None) if params else None
                        if base is not None:
                            file.subclass(inner, base, edit.target)
                    else:
                        file.read(inner, _self_scope(inner, instance), edit.target)
        else:
            file.read(node, _self_scope(node, instance), edit.target)
    file.annotated()
    return list(file.uses.values())


def _self_scope(func: ast.AST, instance: Binding | None) -> dict[str, Binding]:
    if instance is None or not isinstance(func, FUNCTIONS):
        return {}
    params = func.args.posonlyargs + func.args.args
    if not params:
        return {}
    if params[0].arg == "self":
        return {"self": instance}
    if params[0].arg == "cls":
        return {"cls": Binding(instance.module, instance.path, "class")}
    return {}


def uses_of_module(path: str | os.PathLike[str]) -> list[Use]:
    """What one of the overlay's own modules relies on in vLLM: imports, calls, subclasses' overrides."""
    path = str(path)
    key = (*_file_key(path), "module")
    if key not in _CACHE:
        tree = parse_file(path)
        if tree is None:
            _CACHE[key] = ()
        else:
            file = SourceFile(tree, display_path(path))
            file.import_uses()
            file.imported_chains()
            file.classes()
            file.annotated()
            _CACHE[key] = tuple(file.uses.values())
    return list(_CACHE[key])


_SKIP_DIRS = ("main2main", "cli", "serving", "bootstrap", "reliance", "__pycache__")


def overlay_modules(root: Path | None = None) -> list[Path]:
    """The overlay's own modules that use vLLM at run time (an import outside ``TYPE_CHECKING``),
    found by reading the package, so a new module (a model runner, an attention backend) is covered
    the day it lands."""
    root = root or Path(__file__).resolve().parents[2]
    out = []
    for path in sorted(root.rglob("*.py")):
        if any(part in _SKIP_DIRS for part in path.relative_to(root).parts[:-1]):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        if "vllm" not in text:
            continue
        tree = parse_file(str(path))
        if tree is not None and SourceFile(tree, str(path)).runtime_imports:
            out.append(path)
    return out
