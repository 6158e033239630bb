"""Applies a patch's edits all together or not at all, and takes them back exactly.

Every change is recorded as (owner, attribute, what the owner's own ``__dict__`` held before). Undo
puts that exact object back, or deletes the attribute if the owner only inherited it, so originals
return by identity. A replace edit stores the replacement itself (no wrapper, no per-call cost); a
wrap edit stores what ``wrapper.install_object`` builds (a plain function bound at apply time, which
keeps static and class methods binding as before and pickles as a reference to its target).

``precheck`` is the one judge of whether a patch's targets are fit to be edited: it returns the
decision that skips the patch (missing, unresolvable, drift) or the resolved targets, and raises
nothing, so the runtime, ``status``, ``list`` and ``hotfix verify`` read one answer the same way.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from dataclasses import dataclass, field
from typing import Any

from ascend_overlay.core import contract, reliance, wrapper
from ascend_overlay.core.errors import PatchApplyError
from ascend_overlay.core.patch import Edit, Patch
from ascend_overlay.core.reliance.model import VerdictStatus
from ascend_overlay.core.vocabulary import Decision, EditKind, Phase, Reason

_ABSENT = wrapper._ABSENT
# Modules whose globals are never rebound: the overlay's own, and the patch modules, which hold the
# originals on purpose (a subclass names its base; a wrapper calls what it wraps).
_PRIVATE_PREFIXES = ("ascend_overlay", "_ascend_overlay_patches")

MISSING_HINT = ("the target was moved, renamed or removed upstream: `ascend-overlay check --vllm installed` "
                "shows where it went; then update the target and its contract=")
UNRESOLVABLE_HINT = ("importing the target's module raised: an optional dependency of vLLM may be missing "
                     "here; vLLM runs without that module, and the patch is skipped while it cannot import")
DRIFT_HINT = ("if the new shape suits the patch, add it to compatible=(...) or update contract=; "
              "otherwise adapt the patch to it")


@dataclass
class Resolved:
    owner: Any
    attr: str
    raw: Any          # what ``owner.__dict__`` holds (the descriptor itself), or _ABSENT if inherited
    live: Any         # what ``getattr(owner, attr)`` gives: the object patches reason about

    @property
    def descriptor(self) -> Any:
        """The attribute as stored in a class ``__dict__`` (own or inherited): keeps static/classmethod."""
        if self.raw is not _ABSENT:
            return self.raw
        for klass in getattr(self.owner, "__mro__", ())[1:]:
            if self.attr in vars(klass):
                return vars(klass)[self.attr]
        return self.live

    @property
    def unbound(self) -> Any:
        raw = self.descriptor
        return raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw


@dataclass(frozen=True)
class Precheck:
    """``precheck``'s answer: the decision that skips the patch, or every target resolved."""

    refusal: Decision | None
    resolved: list[Resolved] = field(default_factory=list)


def _refused(reason: Reason, text: str, hint: str) -> Precheck:
    return Precheck(Decision(False, reason, text, hint))


def resolve(target_module: str, path: tuple[str, ...], *, import_module: bool = True) -> Resolved | Precheck:
    """The target's owner and attribute, or the refusal that says why it cannot be had here."""
    if import_module:
        try:
            owner: Any = importlib.import_module(target_module)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (target_module == exc.name or target_module.startswith(exc.name + ".")):
                return _refused(Reason.MISSING, f"missing: module {target_module} does not exist in this vLLM",
                                MISSING_HINT)
            return _unresolvable(target_module, exc)
        except Exception as exc:  # noqa: BLE001 - any import failure of an optional part of vLLM (a NameError
            return _unresolvable(target_module, exc)  # where Ray is missing) skips the patch, never the host
    else:
        owner = sys.modules.get(target_module)
        if owner is None:
            return _refused(Reason.MISSING, f"missing: module {target_module} is not imported", MISSING_HINT)
    for name in path[:-1]:
        try:
            owner = getattr(owner, name)
        except AttributeError:
            return _refused(Reason.MISSING, f"missing: {target_module}:{'.'.join(path)}: no attribute {name!r}",
                            MISSING_HINT)
    attr = path[-1]
    namespace = vars(owner) if hasattr(owner, "__dict__") else {}
    raw = namespace.get(attr, _ABSENT)
    try:
        live = getattr(owner, attr)
    except AttributeError:
        return _refused(Reason.MISSING, f"missing: {target_module}:{'.'.join(path)} does not exist", MISSING_HINT)
    return Resolved(owner, attr, raw, live)


def _unresolvable(module: str, exc: BaseException) -> Precheck:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return _refused(Reason.UNRESOLVABLE, f"unresolvable: importing {module} raised {type(exc).__name__}: {first_line}",
                    UNRESOLVABLE_HINT)


def precheck(patch: Patch, *, import_module: bool = True) -> Precheck:
    """Resolve every target and verify its contract, touching nothing.

    The names a patch relies on without editing them (``core.reliance``) are checked too; an
    import-phase patch never imports another module for that (it runs inside an import).
    """
    resolved = []
    for edit in patch.edits:
        found = resolve(edit.module, edit.path, import_module=import_module)
        if isinstance(found, Precheck):
            return found
        message = contract.check(edit.contract, edit.compatible, found.unbound)
        if message is not None:
            return _refused(Reason.DRIFT, f"drift: {edit.target}: {message}", DRIFT_HINT)
        resolved.append(found)
    for verdict in reliance.check_live(patch, import_modules=import_module and patch.phase is not Phase.IMPORT):
        if verdict.breaks:
            if verdict.status is VerdictStatus.MISSING:
                return _refused(Reason.MISSING, f"missing: {verdict.message}", MISSING_HINT)
            return _refused(Reason.DRIFT, f"drift: {verdict.message}", DRIFT_HINT)
    return Precheck(None, resolved)


@dataclass
class Change:
    """One attribute the overlay set, and how to take it back."""

    owner: Any
    attr: str
    before: Any  # the owner's own attribute before, or _ABSENT
    after: Any
    label: str
    wrapped: Any = _ABSENT  # for a wrapper of ours: the descriptor it was installed over

    def undo(self) -> None:
        current = vars(self.owner).get(self.attr, _ABSENT)
        if self.wrapped is not _ABSENT:
            try:
                restore = wrapper.remove(current, self.after, self.wrapped, self.before)
            except wrapper.NotSpliceable as exc:
                raise PatchApplyError(f"{self.label}: the overlay's wrapper cannot be taken out ({exc}); what "
                                      "replaced it was left in place (restart the process for vLLM's original)") from None
            if restore is current:
                return  # spliced out from under another wrapper, which stays on top
        elif current is not self.after:
            # Someone replaced our object after us; restoring over theirs would lose their change.
            raise PatchApplyError(f"{self.label} was changed by someone else after the overlay patched it; "
                                  "their object was left in place (restart the process for vLLM's original)")
        else:
            restore = self.before
        if restore is _ABSENT:
            delattr(self.owner, self.attr)
        else:
            setattr(self.owner, self.attr, restore)


@dataclass
class AppliedPatch:
    patch: Patch
    changes: list[Change] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)   # ``from x import y`` copies in vLLM, rebound
    stale: list[str] = field(default_factory=list)     # copies elsewhere that still hold the original
    module: Any = None  # for import-phase patches: the module object they were applied to

    def undo(self) -> None:
        errors = []
        for change in reversed(self.changes):
            try:
                change.undo()
            except Exception as exc:  # keep undoing the rest; report all at the end
                errors.append(str(exc))
        self.changes.clear()
        if errors:
            raise PatchApplyError("; ".join(errors))


def _replacement(edit: Edit, r: Resolved) -> Any:
    if edit.kind is EditKind.WRAP:
        return wrapper.install_object(r.descriptor, edit.value, edit.target, in_class=inspect.isclass(r.owner))
    new = edit.factory(r.live) if edit.factory is not None else edit.value
    # Keep the descriptor type: replacing a staticmethod with a plain function would bind ``self``.
    if isinstance(r.descriptor, staticmethod) and not isinstance(new, staticmethod):
        new = staticmethod(new)
    elif isinstance(r.descriptor, classmethod) and not isinstance(new, classmethod):
        new = classmethod(new)
    return new


def apply(patch: Patch, resolved: list[Resolved] | None = None) -> AppliedPatch:
    """Apply every edit, or none: on any failure, undo what was done and raise PatchApplyError.
    Without ``resolved`` (a test, a benchmark), the targets are prechecked first."""
    if resolved is None:
        checked = precheck(patch)
        if checked.refusal is not None:
            raise PatchApplyError(f"patch {patch.name!r} cannot be applied: {checked.refusal.sentence()}")
        resolved = checked.resolved
    done = AppliedPatch(patch)
    edit = patch.edits[0]
    try:
        for edit, r in zip(patch.edits, resolved, strict=True):
            new = _replacement(edit, r)
            setattr(r.owner, r.attr, new)
            wrapped = r.descriptor if edit.kind is EditKind.WRAP else _ABSENT
            done.changes.append(Change(r.owner, r.attr, r.raw, new, edit.target, wrapped))
            if edit.rebind_aliases and inspect.ismodule(r.owner):
                _rebind_aliases(r, new, edit, done)
    except Exception as exc:
        try:
            done.undo()
        except PatchApplyError as undo_exc:
            raise PatchApplyError(f"patch {patch.name!r} failed ({exc!r}) and could not be fully "
                                  f"rolled back: {undo_exc}") from exc
        raise PatchApplyError(f"patch {patch.name!r} failed at {edit.target} and was rolled back: "
                              f"{type(exc).__name__}: {exc}") from exc
    return done


def _rebind_aliases(r: Resolved, new: Any, edit: Edit, done: AppliedPatch) -> None:
    """Rebind names that other vLLM modules took with ``from module import name`` before the patch,
    and list the copies outside vLLM that still hold the original.

    Such aliases are how patches silently fail to apply in practice: leaving one pointing at the
    original would mean half of vLLM runs the fix and half does not. Copies in other packages (a
    plugin, the user's code) are theirs: they are not rewritten, and the patch is reported ``partial``
    with each of them named, rather than ``applied``.
    """
    original = r.raw if r.raw is not _ABSENT else r.live
    if original is None or isinstance(original, (bool, int, float, str)):
        return  # small immutables are shared by identity everywhere; they are not aliases
    root = edit.module.split(".")[0]
    for name, module in list(sys.modules.items()):
        if not isinstance(module, types.ModuleType) or module is r.owner or name.startswith(_PRIVATE_PREFIXES):
            continue
        namespace = vars(module)
        ours = name == root or name.startswith(root + ".")
        for key, value in list(namespace.items()):
            if value is not original:
                continue
            if ours:
                setattr(module, key, new)
                wrapped = r.descriptor if edit.kind is EditKind.WRAP else _ABSENT
                done.changes.append(Change(module, key, original, new, f"{name}:{key}", wrapped))
                done.aliases.append(f"{name}:{key}")
            else:
                done.stale.append(f"{name}:{key}")
