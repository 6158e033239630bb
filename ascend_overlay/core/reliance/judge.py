"""One rule for every lookup: does a use still hold against what a vLLM has under its name?"""

from __future__ import annotations

from ascend_overlay.core.contract import explain_drift
from ascend_overlay.core.reliance.model import BREAKING, Hit, HitStatus, Use, UseKind, Verdict, VerdictStatus
from ascend_overlay.core.reliance.shapes import call_problem, override_problem


def _bound(use: Use, hit: Hit) -> bool | None:
    """Does calling it supply the first parameter? None when the thing called is not a known function."""
    if hit.kind == "class":
        return True
    if hit.kind != "function":
        return None
    if hit.method == "static":
        return False
    if hit.method == "class":
        return True
    if hit.method == "plain":
        return use.receiver == "instance"
    return False  # a module-level function


def judge(use: Use, hit: Hit) -> Verdict:
    """The verdict, softened where the code itself allows for the name's absence: a use under
    ``hasattr``/``getattr``/``try-except ImportError`` is ``guarded``, not broken."""
    verdict = _judge(use, hit)
    if use.guard and verdict.status in BREAKING:
        return Verdict(use, VerdictStatus.GUARDED, verdict.found, f"{verdict.detail} (guarded by {use.guard}: listed, not a break)")
    return verdict


def tuple_arity(annotation: str | None) -> int | None:
    """How many values a return annotation promises (``tuple[A, B]`` -> 2); None when not a fixed tuple."""
    if not annotation:
        return None
    text = annotation.strip().strip("'\"")
    for prefix in ("tuple[", "Tuple[", "typing.Tuple[", "typing.tuple["):
        if text.startswith(prefix) and text.endswith("]"):
            inner = text[len(prefix):-1]
            break
    else:
        return None
    parts, depth, current = [], 0, ""
    for char in inner:
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    if "..." in parts or parts == [""] or parts == ["()"]:
        return None
    return len(parts)


def _unbound(found: str, replacement: str) -> str:
    """A replacement assigned onto an instance or in place of a class method takes no receiver:
    compare it with vLLM's shape less its ``self``/``cls`` when only vLLM's shape has one."""
    mine = replacement.strip("()").split(",")[0].strip()
    theirs = found.strip("()").split(",")[0].strip()
    if theirs in ("self", "cls") and mine not in ("self", "cls"):
        rest = found.strip("()").split(",", 1)
        return "(" + (rest[1].strip() if len(rest) > 1 else "") + ")"
    return found


def _judge(use: Use, hit: Hit) -> Verdict:
    if hit.status is HitStatus.MISSING:
        if use.own_at and hit.depth == use.own_at:
            owner = ".".join(use.path[:hit.depth])
            return Verdict(use, VerdictStatus.OWN, None, f"vLLM's {owner} has no `{use.path[hit.depth]}`: the subclass's own "
                                             "(or a mixin's)")
        return Verdict(use, VerdictStatus.MISSING, None, hit.detail)
    if hit.status is HitStatus.UNVERIFIABLE:
        return Verdict(use, VerdictStatus.UNVERIFIABLE, None, hit.detail)
    partial = hit.depth < len(use.path)
    if partial:
        shown = ".".join(use.path[:hit.depth])
        return Verdict(use, VerdictStatus.OK, hit.fingerprint, f"present up to {shown} ({hit.kind}); beyond it the type is "
                                                   "not known from source")
    found = hit.fingerprint
    if use.how is UseKind.DECLARED:
        if use.shape is None:
            return Verdict(use, VerdictStatus.OK, found, "present (declared, unpinned)")
        if found is None:
            return Verdict(use, VerdictStatus.UNVERIFIABLE, None, "present, but its shape cannot be read")
        if found == use.shape or found in use.compatible:
            return Verdict(use, VerdictStatus.OK, found, "matches the declared pin")
        return Verdict(use, VerdictStatus.DRIFT, found, explain_drift(use.shape, found))
    if use.unpack is not None and hit.kind == "function" and not partial:
        arity = tuple_arity(hit.returns)
        if arity is not None and arity != use.unpack:
            return Verdict(use, VerdictStatus.DRIFT, found, f"returns {hit.returns} now ({arity} values); the code unpacks "
                                                f"{use.unpack}")
    if use.how is UseKind.CALL and use.positional is not None and found:
        bound = _bound(use, hit)
        if bound is not None:
            problem = call_problem(found, use.positional, use.keywords, bound)
            if problem is not None:
                return Verdict(use, VerdictStatus.DRIFT, found, f"the call no longer fits {found}: {problem}")
        return Verdict(use, VerdictStatus.OK, found, "present; the call fits")
    if use.how in (UseKind.OVERRIDE, UseKind.PATCH) and use.shape:
        if hit.kind != "function" or found is None:
            return Verdict(use, VerdictStatus.OK, found, f"present ({hit.kind})")
        base = _unbound(found, use.shape) if use.how is UseKind.PATCH else found
        problem = override_problem(base, use.shape)
        if problem is not None:
            return Verdict(use, VerdictStatus.DRIFT, found, f"the override {use.shape} no longer fits vLLM's {found}: {problem}")
        return Verdict(use, VerdictStatus.OK, found, "overrides a method of the same shape")
    return Verdict(use, VerdictStatus.OK, found, f"present ({hit.kind})")
