"""The static lookup of relied-on names: the same rules as ``reliance.live``, read from a source tree.

A module's own names (griffe members, following import aliases) and submodules; a class's members
along its in-tree bases (griffe), its instance attributes (``reliance.classbody``, the same reading
the live lookup uses), and a base outside vLLM asked only when vLLM has no such name.
"""

from __future__ import annotations

from typing import Any

from ascend_overlay.core.reliance.classbody import computed_attribute_hit, external_has, find_class, instance_attributes
from ascend_overlay.core.reliance.live import missing_member
from ascend_overlay.core.reliance.model import Hit, HitStatus
from ascend_overlay.main2main.fingerprints import fingerprint
from ascend_overlay.main2main.tree import Found, StaticTree, is_opaque


def _method(found: Found) -> str:
    labels: set[str] = getattr(found.obj, "labels", set()) or set()
    if "staticmethod" in labels:
        return "static"
    if "classmethod" in labels:
        return "class"
    return "plain"


class StaticLookup:
    def __init__(self, tree: StaticTree) -> None:
        self.tree = tree

    def find(self, module_name: str, path: tuple[str, ...], *, external: bool = True,
             assume_external: bool = False) -> Hit:
        """What the tree has under ``module:path``. ``external=False``: a name vLLM's classes lack is
        not asked of a base outside vLLM by importing it (that import costs seconds): it is missing,
        or, with ``assume_external``, taken as the outside base's (a plugin's check never imports torch)."""
        self._external = external
        self._assume_external = assume_external
        tree = self.tree
        module = tree.module(module_name)
        if module is None:
            if tree.module_file(module_name) is None:
                return Hit(HitStatus.MISSING, detail=f"module {module_name} does not exist in this vLLM")
            return Hit(HitStatus.MISSING, detail=f"module {module_name} cannot be parsed "
                                         f"({tree.failed.get(module_name, 'unreadable')})")
        current = Found("module", module, module_name)
        on_class = False
        for depth, name in enumerate(path):
            shown = f"{module_name}:{'.'.join(path[:depth])}" if depth else module_name
            nxt: Found | str | None
            if current.kind == "module":
                nxt = tree._member(current, name, 0)
                if nxt is None:
                    if "__getattr__" in current.obj.members:
                        return computed_attribute_hit(tree.syntax(current.module), shown, name, depth)
                    return Hit(HitStatus.MISSING, depth=depth, detail=f"{shown} has no attribute {name!r}")
                if nxt.kind == "external":
                    return Hit(HitStatus.FOUND, "external", None, "", depth + 1)
                on_class = False
            elif current.kind == "class":
                nxt = self._class_member(current, name)
                if nxt == "instance-attribute" and depth + 1 < len(path):
                    nxt = self._instance_attribute(current, name) or nxt  # typed: the chain goes on
                if nxt is None:
                    return Hit(HitStatus.MISSING, depth=depth, detail=missing_member(shown, name))
                if isinstance(nxt, str):
                    return Hit(HitStatus.FOUND, nxt, None, "", depth + 1)
                on_class = True
            else:
                typed = self._typed_attribute(current) if current.kind == "attribute" and on_class else None
                if typed is None:
                    return self._hit(current, depth, on_class)
                nxt = self._class_member(typed, name)
                if nxt is None:
                    return Hit(HitStatus.MISSING, depth=depth, detail=missing_member(shown, name))
                if isinstance(nxt, str):
                    return Hit(HitStatus.FOUND, nxt, None, "", depth + 1)
                on_class = True
            assert isinstance(nxt, Found)
            if nxt.kind == "external-module":
                return Hit(HitStatus.FOUND, "module", "module", "", depth + 1)
            current = nxt
        return self._hit(current, len(path), on_class)

    def _hit(self, found: Found, depth: int, on_class: bool) -> Hit:
        kind = found.kind
        method = _method(found) if kind == "function" and on_class else ""
        shape = fingerprint(self.tree, found)
        if kind == "attribute" and shape not in ("property", "cached_property"):
            shape = None  # a value's type is not a contract source can state (the live lookup agrees)
        returns = None
        if kind == "function":
            annotation = getattr(found.obj, "returns", None)
            returns = None if annotation is None else str(annotation)
        return Hit(HitStatus.FOUND, kind, shape, method, depth, returns=returns)

    def _typed_attribute(self, found: Found) -> Found | None:
        """The vLLM class an attribute is annotated with (``cache_config: CacheConfig``, ``X | None``),
        so a chain through it (``vllm_config.cache_config.block_size``) is checked one step further."""
        annotation = getattr(found.obj, "annotation", None)
        if annotation is None:
            return None
        expr = _plain_class(annotation)
        path = getattr(expr, "canonical_path", None)
        if not isinstance(path, str) or not path.startswith(self.tree.package + "."):
            return None
        try:
            hit = self.tree.get(path)
        except Exception:  # noqa: BLE001 - an annotation griffe cannot follow types nothing
            return None
        if hit is not None and hit.kind == "class":
            return hit
        return None
        names = [annotation] if not hasattr(annotation, "iterate") else \
            [e for e in annotation.iterate(flat=True) if hasattr(e, "canonical_path")]
        for expr in names:
            path = getattr(expr, "canonical_path", None)
            if not isinstance(path, str) or not path.startswith(self.tree.package + "."):
                continue
            try:
                hit = self.tree.get(path)
            except Exception:  # noqa: BLE001 - an annotation griffe cannot follow types nothing
                hit = None
            if hit is not None and hit.kind == "class":
                return hit
        return None

    def _instance_attribute(self, owner: Found, name: str) -> Found | None:
        """An instance attribute griffe saw with an annotation (``self.x: T = ...``), as an attribute."""
        for cls, where in self.tree.mro(owner.obj, owner.module):
            if is_opaque(cls):
                continue
            member = cls.members.get(name)
            if member is not None and not member.is_alias and member.is_attribute \
                    and getattr(member, "annotation", None) is not None:
                return Found("attribute", member, where)
        return None

    def _class_member(self, owner: Found, name: str) -> Found | str | None:
        external: list[str] = []
        for cls, where in self.tree.mro(owner.obj, owner.module):
            if is_opaque(cls):
                external.append(cls.path)
                continue
            member = cls.members.get(name)
            if member is not None and not (not member.is_alias and member.is_attribute
                                           and member.labels == {"instance-attribute"}):
                found = self.tree._describe(member, where, 0, alias_owner=where)
                if found is not None:
                    return found
            if name in instance_attributes(find_class(self.tree.syntax(where), _qualname(cls, where))):
                return "instance-attribute"
        for path in external:
            if getattr(self, "_external", True) or _cheap_to_ask(path):
                if external_has(path, name):
                    return "external"
            elif getattr(self, "_assume_external", False):
                has = static_external_has(path, name)
                if has or has is None:
                    return "external"
        return None  # vLLM has no such member


_EXTERNAL_TREES: dict[str, StaticTree | None] = {}


def static_external_has(dotted: str, name: str) -> bool | None:
    """Does the class at ``dotted`` outside vLLM (``torch.nn.Module``) have ``name``, read from its
    installed source the way vLLM's is (griffe, never imported)? None when its source is not at hand."""
    import importlib.util
    from pathlib import Path

    top = dotted.split(".")[0]
    if top not in _EXTERNAL_TREES:
        try:
            spec = importlib.util.find_spec(top)  # a top-level name: found without importing it
        except (ImportError, ValueError):
            spec = None
        origin = getattr(spec, "origin", None)
        _EXTERNAL_TREES[top] = StaticTree(Path(origin).parent.parent, top) \
            if origin and origin.endswith("__init__.py") else None
    tree = _EXTERNAL_TREES[top]
    if tree is None:
        return None
    try:
        found = tree.get(dotted)
        if found is None or found.kind != "class":
            return None
        for cls, _where in tree.mro(found.obj, found.module):
            if is_opaque(cls):
                continue
            if name in cls.members:
                return True
    except Exception:  # noqa: BLE001 - a library griffe cannot follow: cannot tell
        return None
    return False


def _cheap_to_ask(dotted: str) -> bool:
    """A base outside vLLM whose module costs nothing to ask: the standard library (``enum.Enum``) or
    one already imported. ``torch.nn.Module`` is neither in a fresh ``check`` (seconds to import)."""
    import sys

    top = dotted.split(".")[0]
    return top in sys.stdlib_module_names or top in sys.modules


def _plain_class(annotation: Any) -> Any:
    """The class an annotation names when it is one class (``X``, ``X | None``, ``Optional[X]``);
    None for containers and unions of several types (``dict[str, Request]`` is not a ``Request``)."""
    if isinstance(annotation, str):
        return None
    kind = type(annotation).__name__
    if kind in ("ExprName", "ExprAttribute"):
        return annotation
    if kind == "ExprBinOp" and getattr(annotation, "operator", "") == "|":
        sides = [annotation.left, annotation.right]
        rest = [s for s in sides if str(s) != "None"]
        return _plain_class(rest[0]) if len(rest) == 1 else None
    if kind == "ExprSubscript" and str(getattr(annotation, "left", "")).split(".")[-1] == "Optional":
        return _plain_class(annotation.slice)
    return None


def _qualname(cls: Any, module_name: str) -> str:
    path: str = cls.path
    return path[len(module_name) + 1:] if path.startswith(module_name + ".") else cls.name
