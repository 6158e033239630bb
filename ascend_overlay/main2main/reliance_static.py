"""The static lookup of relied-on names: the same rules as ``reliance.live``, read from a source tree.

A module's own names (griffe members, following import aliases) and submodules; a class's members
along its in-tree bases (griffe), its instance attributes (``reliance.classbody``, the same reading
the live lookup uses), and a base outside vLLM asked only when vLLM has no such name.
"""

from __future__ import annotations

from typing import Any

from ascend_overlay.core.reliance.classbody import computed_attribute_hit, external_has, find_class, instance_attributes
from ascend_overlay.core.reliance.live import missing_member
from ascend_overlay.core.reliance.model import Hit
from ascend_overlay.main2main.fingerprints import fingerprint
from ascend_overlay.main2main.tree import Found, StaticTree, is_opaque


def _method(found: Found) -> str:
    labels = getattr(found.obj, "labels", set()) or set()
    if "staticmethod" in labels:
        return "static"
    if "classmethod" in labels:
        return "class"
    return "plain"


class StaticLookup:
    def __init__(self, tree: StaticTree) -> None:
        self.tree = tree

    def find(self, module_name: str, path: tuple[str, ...]) -> Hit:
        tree = self.tree
        module = tree.module(module_name)
        if module is None:
            if tree.module_file(module_name) is None:
                return Hit("missing", detail=f"module {module_name} does not exist in this vLLM")
            return Hit("missing", detail=f"module {module_name} cannot be parsed "
                                         f"({tree.failed.get(module_name, 'unreadable')})")
        current = Found("module", module, module_name)
        on_class = False
        for depth, name in enumerate(path):
            shown = f"{module_name}:{'.'.join(path[:depth])}" if depth else module_name
            if current.kind == "module":
                nxt = tree._member(current, name, 0)
                if nxt is None:
                    if "__getattr__" in current.obj.members:
                        return computed_attribute_hit(tree.syntax(current.module), shown, name, depth)
                    return Hit("missing", depth=depth, detail=f"{shown} has no attribute {name!r}")
                if nxt.kind == "external":
                    return Hit("found", "external", None, "", depth + 1)
                on_class = False
            elif current.kind == "class":
                nxt = self._class_member(current, name)
                if isinstance(nxt, str):
                    if nxt == "missing":
                        return Hit("missing", depth=depth, detail=missing_member(shown, name))
                    return Hit("found", nxt, None, "", depth + 1)
                on_class = True
            else:
                return self._hit(current, depth, on_class)
            if nxt.kind == "external-module":
                return Hit("found", "module", "module", "", depth + 1)
            current = nxt
        return self._hit(current, len(path), on_class)

    def _hit(self, found: Found, depth: int, on_class: bool) -> Hit:
        kind = found.kind
        method = _method(found) if kind == "function" and on_class else ""
        shape = fingerprint(self.tree, found)
        if kind == "attribute" and shape not in ("property", "cached_property"):
            shape = None  # a value's type is not a contract source can state (the live lookup agrees)
        return Hit("found", kind, shape, method, depth)

    def _class_member(self, owner: Found, name: str) -> Found | str:
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
            if external_has(path, name):
                return "external"
        return "missing"


def _qualname(cls: Any, module_name: str) -> str:
    path: str = cls.path
    return path[len(module_name) + 1:] if path.startswith(module_name + ".") else cls.name
