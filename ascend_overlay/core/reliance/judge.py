"""One rule for every lookup: does a use still hold against what a vLLM has under its name?"""

from __future__ import annotations

from ascend_overlay.core.contract import explain_drift
from ascend_overlay.core.reliance.model import Hit, Use, Verdict
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
    if hit.status == "missing":
        return Verdict(use, "missing", None, hit.detail)
    if hit.status == "unverifiable":
        return Verdict(use, "unverifiable", None, hit.detail)
    partial = hit.depth < len(use.path)
    if partial:
        shown = ".".join(use.path[:hit.depth])
        return Verdict(use, "ok", hit.fingerprint, f"present up to {shown} ({hit.kind}); beyond it the type is "
                                                   "not known from source")
    found = hit.fingerprint
    if use.how == "declared":
        if use.shape is None:
            return Verdict(use, "ok", found, "present (declared, unpinned)")
        if found is None:
            return Verdict(use, "unverifiable", None, "present, but its shape cannot be read")
        if found == use.shape or found in use.compatible:
            return Verdict(use, "ok", found, "matches the declared pin")
        return Verdict(use, "drift", found, explain_drift(use.shape, found))
    if use.how == "call" and use.positional is not None and found:
        bound = _bound(use, hit)
        if bound is not None:
            problem = call_problem(found, use.positional, use.keywords, bound)
            if problem is not None:
                return Verdict(use, "drift", found, f"the call no longer fits {found}: {problem}")
        return Verdict(use, "ok", found, "present; the call fits")
    if use.how == "override" and use.shape:
        if hit.kind != "function" or found is None:
            return Verdict(use, "ok", found, f"present ({hit.kind})")
        problem = override_problem(found, use.shape)
        if problem is not None:
            return Verdict(use, "drift", found, f"the override {use.shape} no longer fits vLLM's {found}: {problem}")
        return Verdict(use, "ok", found, "overrides a method of the same shape")
    return Verdict(use, "ok", found, f"present ({hit.kind})")
