"""API differences between two trees for a set of changed modules, found by griffe.

Breaking changes come from ``griffe.find_breaking_changes`` (removed objects, removed/renamed/
moved/new-required parameters, changed defaults and kinds, removed bases). Two things griffe does not
call breaking matter to a hardware plugin and are added on top: new public classes, functions and
methods (a new ``Platform`` method the NPU platform may have to provide), and compatible signature
changes (a new optional parameter that an *overriding* plugin method must accept).

Only changed files are visited; unchanged parents are empty placeholders, so an untouched file costs
nothing and cannot produce a difference. The result is plain data, so it can be computed in a worker
process and sent back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import griffe

from ascend_overlay.main2main.fingerprints import function_fingerprint
from ascend_overlay.main2main.tree import StaticTree

_BK = griffe.BreakageKind
_CHANGE_OF_KIND = {
    _BK.OBJECT_REMOVED: "removed",
    _BK.OBJECT_CHANGED_KIND: "kind",
    _BK.CLASS_REMOVED_BASE: "base removed",
}


def signature_impact(old_sig: str, new_sig: str) -> tuple[str | None, str | None]:
    """Why a signature change breaks its callers, and why it breaks subclasses that override it
    (each None when it does not): the two audiences of a changed ``__init__`` or method differ. A
    caller wrote a call the old shape accepted; a subclass wrote an override vLLM now calls with the
    new shape."""
    from ascend_overlay.core.reliance.shapes import call_problem, override_problem, parse

    params = parse(old_sig) or []
    bound = bool(params) and params[0].name in ("self", "cls")
    usable = params[1:] if bound else params
    positional = [p for p in usable if p.kind in ("positional_only", "positional_or_keyword") and p.required]
    callers = call_problem(new_sig, len(positional), (), bound)
    if callers is None:
        for p in usable:
            if p.kind in ("positional_or_keyword", "keyword_only") and not p.required:
                problem = call_problem(new_sig, len(positional), (p.name,), bound)
                if problem is not None:
                    callers = problem
                    break
    return callers, override_problem(new_sig, old_sig)


def _judged_change(old_sig: str, new_sig: str) -> tuple[str, list[str]]:
    callers, subclasses = signature_impact(old_sig, new_sig)
    details = [f"{old_sig} -> {new_sig}"]
    if callers:
        details.append(f"callers: a call that fitted before {callers.replace('the call', 'it')}")
    if subclasses:
        details.append(f"subclasses: an override written for the old shape no longer fits ({subclasses})")
    if callers and subclasses:
        return "signature (breaks callers and subclasses)", details
    if callers:
        return "signature (breaks callers)", details
    if subclasses:
        return "signature (breaks subclasses)", details
    return "signature (compatible)", details


def _describe_breakage(b: Any) -> str:
    kind = b.kind
    old, new = b.old_value, b.new_value
    name = getattr(old, "name", None) or getattr(new, "name", None)
    if kind is _BK.PARAMETER_MOVED:
        return f"parameter `{name}` moved ({b.details})" if b.details else f"parameter `{name}` moved"
    if kind is _BK.PARAMETER_REMOVED:
        return f"parameter `{name}` removed"
    if kind is _BK.PARAMETER_CHANGED_KIND:
        return f"parameter `{name}` changed kind: {old.kind.value} -> {new.kind.value}"
    if kind is _BK.PARAMETER_CHANGED_DEFAULT:
        return f"parameter `{name}` default changed: {old.default} -> {new.default}"
    if kind is _BK.PARAMETER_CHANGED_REQUIRED:
        return f"parameter `{name}` is now required"
    if kind is _BK.PARAMETER_ADDED_REQUIRED:
        return f"new required parameter `{name}`"
    if kind is _BK.OBJECT_REMOVED:
        return "removed"
    if kind is _BK.OBJECT_CHANGED_KIND:
        return f"changed kind: {getattr(old, 'value', old)} -> {getattr(new, 'value', new)}"
    if kind is _BK.CLASS_REMOVED_BASE:
        return "base class removed: [{}] -> [{}]".format(", ".join(map(str, old)), ", ".join(map(str, new)))
    return kind.value


def _file_of(obj: Any, root: Path) -> tuple[str, int | None]:
    """Where an object is written; an import alias is located at its import, never at its target
    (resolving the target may need modules that were not loaded)."""
    try:
        if obj.is_alias:
            return str(Path(obj.parent.filepath).relative_to(root)), obj.alias_lineno
        return str(Path(obj.filepath).relative_to(root)), obj.lineno
    except (ValueError, TypeError, AttributeError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return "?", None


def _kind(obj: Any) -> str:
    try:
        return "alias" if obj.is_alias else obj.kind.value
    except (AttributeError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return "object"


def _item(change: str, obj: Any, root: Path, details: list[str], **extra: Any) -> dict[str, Any]:
    file, line = _file_of(obj, root)
    try:
        toplevel = obj.parent is not None and obj.parent.is_module
    except (AttributeError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        toplevel = False
    return {"change": change, "object": obj.path, "kind": _kind(obj), "file": file, "line": line,
            "details": details, "public": _is_public(obj.path), "toplevel": toplevel, **extra}


def _is_public(path: str) -> bool:
    return not any(p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in path.split("."))


def _signature(func: Any) -> str | None:
    try:
        return function_fingerprint(func)
    except Exception:  # an odd parameter list must not sink the whole report
        return None


def breaking_items(old_top: Any, new_top: Any, old_root: Path, new_root: Path) -> dict[str, dict[str, Any]]:
    items: dict[str, dict[str, Any]] = {}
    try:
        for b in griffe.find_breaking_changes(old_top, new_top):
            _add_breakage(items, b, old_root, new_root)
    except Exception as exc:  # an unforeseen shape in a future vLLM must not sink the whole report
        items["<griffe>"] = {"change": "analysis incomplete", "object": f"{old_top.path} (partial)", "kind": "module",
                             "file": "?", "line": None, "public": True, "toplevel": True,
                             "details": [f"griffe stopped with {type(exc).__name__}: {exc}; later changes may be missing"]}
    for item in items.values():
        item["details"] = _compress_moves(item["details"])
    return items


def _add_breakage(items: dict[str, dict[str, Any]], b: Any, old_root: Path, new_root: Path) -> None:
    obj = b.obj
    if getattr(obj, "is_alias", False) and getattr(obj, "inherited", False):
        return  # reported once, where the member is defined
    change = _CHANGE_OF_KIND.get(b.kind, "signature")
    root = old_root if b.kind is _BK.OBJECT_REMOVED else new_root
    path = obj.path
    item = items.get(path)
    if item is None:
        item = items[path] = _item(change, obj, root, [])
        if not obj.is_alias and obj.is_function:
            item["new_signature"] = _signature(obj)
    elif change == "removed":
        item["change"] = "removed"
    text = _describe_breakage(b)
    if text not in item["details"]:
        item["details"].append(text)


def _compress_moves(details: list[str]) -> list[str]:
    """Twenty "parameter moved" lines say one thing: a parameter was inserted before them."""
    moved = [d for d in details if d.startswith("parameter `") and " moved" in d]
    if len(moved) <= 3:
        return details
    names = [d.split("`")[1] for d in moved]
    rest = [d for d in details if d not in moved]
    return rest + [f"{len(moved)} positional parameters moved ({', '.join(names[:4])}, ...): "
                   "positional callers pass the wrong values"]


def _inherited_now(new: StaticTree, items: dict[str, dict[str, Any]]) -> None:
    """A method griffe saw vanish from a class may now come from a base in a module this worker did
    not load; look it up the way ``getattr`` would before calling it removed."""
    for item in items.values():
        if item["change"] != "removed" or item["toplevel"] or item["kind"] == "module":
            continue
        split = new.split_module(item["object"])
        if split is None or len(split[1]) < 2:
            continue
        found = new.lookup(split[0], tuple(split[1]))
        if found is not None and found.inherited:
            item["change"] = "moved to a base class"
            item["details"] = [f"no longer defined here; inherited from {found.module}"]


def _members(obj: Any) -> dict[str, Any]:
    return {n: m for n, m in obj.members.items() if not m.is_alias}


def additions_and_signatures(old: StaticTree, new: StaticTree, modules: list[str],
                             known: dict[str, dict[str, Any]], relevant: frozenset[str] = frozenset()
                             ) -> list[dict[str, Any]]:
    """New public objects; removals and signature changes griffe does not report (it skips what it
    deems private, and ``__init__``); return annotations; and private members a subject overrides or
    calls (``relevant``: dotted paths), which are exactly what plugins touch."""
    out: list[dict[str, Any]] = []
    for name in modules:
        new_mod = new.module(name)
        if new_mod is None:
            continue
        old_mod = old.module(name) if old.module_file(name) else None
        if old_mod is None:
            classes = [m for m, o in _members(new_mod).items() if o.is_class and _is_public(m)]
            funcs = [m for m, o in _members(new_mod).items() if o.is_function and _is_public(m)]
            details = ["new module"]
            if classes:
                details.append("classes: " + ", ".join(classes[:12]) + (" ..." if len(classes) > 12 else ""))
            if funcs:
                details.append("functions: " + ", ".join(funcs[:12]) + (" ..." if len(funcs) > 12 else ""))
            out.append(_item("added", new_mod, new.root, details))
            continue
        try:
            _compare_scope(old_mod, new_mod, new.root, known, out, depth=0, relevant=relevant, old_root=old.root)
        except Exception as exc:  # same reason as in breaking_items: report, do not sink
            out.append({"change": "analysis incomplete", "object": name, "kind": "module",
                        "file": new.relpath(name), "line": None, "public": True, "toplevel": True,
                        "details": [f"comparison stopped with {type(exc).__name__}: {exc}"]})
    return out


def _compare_scope(old_scope: Any, new_scope: Any, root: Path, known: dict[str, dict[str, Any]],
                   out: list[dict[str, Any]], depth: int, relevant: frozenset[str] = frozenset(),
                   old_root: Path | None = None) -> None:
    old_members = _members(old_scope)
    new_members = _members(new_scope)
    for name, before in old_members.items():
        if name in new_members or before.is_module or name in new_scope.members:
            continue  # still here (an alias now counts: the name still imports)
        if not (_is_public(before.path) or before.path in relevant):
            continue
        if before.path in known or not (before.is_class or before.is_function):
            continue
        out.append(_item("removed", before, old_root or root, ["removed"],
                         old_signature=_signature(before) if before.is_function else None))
    for name, member in new_members.items():
        if member.is_module or not (_is_public(member.path) or member.path in relevant):
            continue
        before = old_members.get(name)
        if before is None:
            if member.is_class or member.is_function:
                out.append(_item("added", member, root, [f"new {_kind(member)}"],
                                 new_signature=_signature(member) if member.is_function else None))
            continue
        if member.is_function and before.is_function:
            old_sig, new_sig = _signature(before), _signature(member)
            returns = _returns_change(before, member)
            if old_sig != new_sig and old_sig is not None and new_sig is not None:
                change, details = _judged_change(old_sig, new_sig)
                item = known.get(member.path)
                if item is not None:
                    item.setdefault("old_signature", old_sig)
                    item["new_signature"] = new_sig
                    item["details"] += [d for d in details[1:] if d not in item["details"]]
                    if returns:
                        item["details"].append(returns)
                else:
                    out.append(_item(change, member, root, details + ([returns] if returns else []),
                                     old_signature=old_sig, new_signature=new_sig))
            elif returns:
                arity = _arity_changed(before, member)
                out.append(_item("return type (breaks unpacking)" if arity else "return type", member, root,
                                 [returns], old_signature=old_sig, new_signature=new_sig))
        elif member.is_class and before.is_class and depth < 3:
            _compare_scope(before, member, root, known, out, depth + 1, relevant, old_root)


def _returns_text(func: Any) -> str | None:
    returns = getattr(func, "returns", None)
    return None if returns is None else str(returns)


def _returns_change(before: Any, after: Any) -> str | None:
    old, new = _returns_text(before), _returns_text(after)
    if old == new or old is None or new is None:
        return None
    return f"returns `{old}` -> `{new}`"


def _arity_changed(before: Any, after: Any) -> bool:
    from ascend_overlay.core.reliance.judge import tuple_arity

    old, new = tuple_arity(_returns_text(before)), tuple_arity(_returns_text(after))
    return old is not None and new is not None and old != new


def analyze(old_root: str, new_root: str, modules: list[str], package: str = "vllm",
            relevant: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """All API items for ``modules`` (names of changed, added or removed modules) between two trees."""
    old = StaticTree(Path(old_root), package, placeholders=True)
    new = StaticTree(Path(new_root), package, placeholders=True)
    for tree in (old, new):
        # A module present on one side only still needs its parent package on the other side, or
        # the parent itself would look removed.
        tree.preload(m for m in modules if tree.module_file(m) is not None)
        for name in modules:
            tree.parents(name)
    old_top, new_top = old.module(package), new.module(package)
    if old_top is None or new_top is None:
        return []
    known = breaking_items(old_top, new_top, old.root, new.root)
    _inherited_now(new, known)
    extra = additions_and_signatures(old, new, modules, known, relevant)
    _inherited_now(new, {item["object"]: item for item in extra if item["change"] == "removed"})
    failed = [{"change": "unreadable", "object": name, "kind": "module", "file": tree.relpath(name),
               "line": None, "details": [f"could not be parsed in the {side} tree: {why}"], "public": True}
              for side, tree in (("old", old), ("new", new)) for name, why in tree.failed.items()]
    return list(known.values()) + extra + failed
