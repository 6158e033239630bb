"""Contract pins: a short text that captures what a patch relies on in its target.

A patch written against ``forward_oot(self, x)`` silently misbehaves if upstream turns it into
``forward_oot(self, x, scale)``. The pin records the target's shape when the patch was written; at
apply time (and statically, in main2main) the live shape is compared with it. Annotations are left
out on purpose: they change with typing fashions, not with behaviour. Literal defaults are kept,
because a changed default changes behaviour.
"""

from __future__ import annotations

import inspect
from typing import Any

_LITERALS = (type(None), bool, int, float, str, bytes)


def _unwrap(obj: Any) -> Any:
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    while hasattr(obj, "__wrapped__") and not inspect.isclass(obj):
        obj = obj.__wrapped__
    return obj


def format_default(value: Any) -> str:
    return repr(value) if isinstance(value, _LITERALS) else "..."


def signature_fingerprint(sig: inspect.Signature) -> str:
    parts: list[str] = []
    saw_kwonly_marker = False
    params = list(sig.parameters.values())
    for index, p in enumerate(params):
        if p.kind is p.VAR_POSITIONAL:
            parts.append("*" + p.name)
            saw_kwonly_marker = True
            continue
        if p.kind is p.VAR_KEYWORD:
            parts.append("**" + p.name)
            continue
        if p.kind is p.KEYWORD_ONLY and not saw_kwonly_marker:
            parts.append("*")
            saw_kwonly_marker = True
        text = p.name
        if p.default is not p.empty:
            text += "=" + format_default(p.default)
        parts.append(text)
        if p.kind is p.POSITIONAL_ONLY and (index + 1 == len(params)
                                            or params[index + 1].kind is not p.POSITIONAL_ONLY):
            parts.append("/")
    return "(" + ", ".join(parts) + ")"


def fingerprint(obj: Any) -> str:
    """The contract text of a live object: a call shape for callables, ``class(...)`` for classes."""
    raw = obj
    obj = _unwrap(obj)
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        init = obj.__dict__.get("__init__")
        if init is None:
            for base in obj.__mro__[1:]:
                if "__init__" in base.__dict__:
                    init = base.__dict__["__init__"]
                    break
        try:
            return "class" + signature_fingerprint(inspect.signature(_unwrap(init)))
        except (TypeError, ValueError):
            return "class"
    if callable(obj):
        try:
            text = signature_fingerprint(inspect.signature(obj))
        except (TypeError, ValueError):
            return "callable"
        return text
    return type(raw).__name__


def split_params(fp: str) -> list[str]:
    inner = fp[fp.index("(") + 1:fp.rindex(")")] if "(" in fp else ""
    return [p.strip() for p in inner.split(",") if p.strip()]


def explain_drift(pinned: str, found: str) -> str:
    """Say in words what changed between two fingerprints, for a person fixing the patch."""
    if "(" not in pinned or "(" not in found:
        return f"pinned {pinned!r}, found {found!r}"
    old = {p.split("=")[0]: p for p in split_params(pinned)}
    new = {p.split("=")[0]: p for p in split_params(found)}
    notes = []
    removed = [n for n in old if n not in new]
    added = [n for n in new if n not in old]
    if removed:
        notes.append("removed " + ", ".join(removed))
    if added:
        required = [n for n in added if "=" not in new[n] and not n.startswith("*")]
        optional = [n for n in added if n not in required]
        if required:
            notes.append("new required " + ", ".join(required))
        if optional:
            notes.append("new optional " + ", ".join(optional))
    changed = [f"{old[n]} -> {new[n]}" for n in old if n in new and old[n] != new[n]]
    if changed:
        notes.append("changed " + ", ".join(changed))
    if not notes and list(old) != list(new):
        notes.append("parameters reordered")
    detail = "; ".join(notes) or "shape differs"
    return f"pinned {pinned} but found {found}: {detail}"


def check(pinned: str | None, compatible: tuple[str, ...], live: Any) -> str | None:
    """None if ``live`` honours the pin (or a shape declared compatible), else the drift message."""
    if pinned is None:
        return None
    found = fingerprint(live)
    if found == pinned or found in compatible:
        return None
    return explain_drift(pinned, found)
