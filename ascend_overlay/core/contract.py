"""Contract pins: a short text that captures what a patch relies on in its target.

A patch written against ``forward_oot(self, x)`` silently misbehaves if upstream turns it into
``forward_oot(self, x, scale)``. The pin records the target's shape when the patch was written; at
apply time (and statically, in main2main) the live shape is compared with it. Annotations are left
out on purpose: they change with typing fashions, not with behaviour. Literal defaults are kept,
because a changed default changes behaviour.
"""

from __future__ import annotations

import enum
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
    if isinstance(value, enum.Enum) and isinstance(value.value, _LITERALS):
        value = value.value  # a str/int enum member default reads as its value, as source-side pins write it
    return repr(value) if isinstance(value, _LITERALS) else "..."


def format_parameters(params: list[tuple[str, str, str | None]]) -> str:
    """``(a, b=1, /, c, *, d)`` from (name, kind, default text or None) triples.

    The one formatter of contract texts: live objects (``signature_fingerprint``) and static source
    (``main2main.fingerprints``) both go through it, so a pin compares equal whichever produced it.
    ``kind`` is an ``inspect.Parameter`` kind name in lower case (``positional_only`` ...).
    """
    parts: list[str] = []
    saw_kwonly_marker = False
    for index, (name, kind, default) in enumerate(params):
        if kind == "var_positional":
            parts.append("*" + name)
            saw_kwonly_marker = True
            continue
        if kind == "var_keyword":
            parts.append("**" + name)
            continue
        if kind == "keyword_only" and not saw_kwonly_marker:
            parts.append("*")
            saw_kwonly_marker = True
        parts.append(name if default is None else f"{name}={default}")
        if kind == "positional_only" and (index + 1 == len(params) or params[index + 1][1] != "positional_only"):
            parts.append("/")
    return "(" + ", ".join(parts) + ")"


def signature_fingerprint(sig: inspect.Signature) -> str:
    return format_parameters([
        (p.name, p.kind.name.lower(), None if p.default is p.empty else format_default(p.default))
        for p in sig.parameters.values()])


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
    """Split a contract text into parameters, respecting quotes and brackets in defaults (``sep=","``)."""
    inner = fp[fp.index("(") + 1:fp.rindex(")")] if "(" in fp else ""
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for ch in inner:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


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
