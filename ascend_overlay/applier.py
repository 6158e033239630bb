"""Applies a patch's edits all together or not at all, and takes them back exactly.

Every change is recorded as (owner, attribute, what the owner's own ``__dict__`` held before). Undo
puts that exact object back, or deletes the attribute if the owner only inherited it, so originals
return by identity. A replace edit stores the replacement itself (no wrapper, no per-call cost); a
wrap edit stores a ``wrapt.FunctionWrapper`` around the raw attribute, which keeps static and class
methods binding as before (``wrapper.PatchedCallable``, which pickles as a reference to its target).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass, field
from typing import Any

from ascend_overlay import contract
from ascend_overlay.errors import PatchApplyError
from ascend_overlay.patch import Edit, EditKind, Patch, Phase

_ABSENT = object()
# Modules whose globals are never rebound: the overlay's own, and the patch modules, which hold the
# originals on purpose (a subclass names its base; a wrapper calls what it wraps).
_PRIVATE_PREFIXES = ("ascend_overlay", "_ascend_overlay_patches")


class TargetMissing(LookupError):
    """The target's module or attribute does not exist in this vLLM (renamed, moved or removed)."""


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


def resolve(target_module: str, path: tuple[str, ...], *, import_module: bool = True) -> Resolved:
    if import_module:
        try:
            owner: Any = importlib.import_module(target_module)
        except ImportError as exc:
            raise TargetMissing(f"module {target_module} cannot be imported: {exc}") from None
    else:
        owner = sys.modules.get(target_module)
        if owner is None:
            raise TargetMissing(f"module {target_module} is not imported")
    for name in path[:-1]:
        try:
            owner = getattr(owner, name)
        except AttributeError:
            raise TargetMissing(f"{target_module}:{'.'.join(path)}: no attribute {name!r}") from None
    attr = path[-1]
    namespace = vars(owner) if hasattr(owner, "__dict__") else {}
    raw = namespace.get(attr, _ABSENT)
    try:
        live = getattr(owner, attr)
    except AttributeError:
        raise TargetMissing(f"{target_module}:{'.'.join(path)} does not exist") from None
    return Resolved(owner, attr, raw, live)


@dataclass
class Change:
    """One attribute the overlay set, and how to take it back."""

    owner: Any
    attr: str
    before: Any  # the owner's own attribute before, or _ABSENT
    after: Any
    label: str
    wrapper: bool = False  # ``after`` is a wrapt wrapper of ours: it comes off the way wrapt puts it on

    def undo(self) -> None:
        if self.wrapper:
            self._unwrap()
            return
        if vars(self.owner).get(self.attr, _ABSENT) is not self.after:
            # Someone replaced our object after us; restoring over theirs would lose their change.
            raise PatchApplyError(f"{self.label} was changed by someone else after the overlay patched it; "
                                  "their object was left in place (restart the process for vLLM's original)")
        if self.before is _ABSENT:
            delattr(self.owner, self.attr)
        else:
            setattr(self.owner, self.attr, self.before)

    def _unwrap(self) -> None:
        """Take our wrapper out with wrapt's own ``unwrap_object``: outermost, what it wraps goes back
        (the original, by identity, unless another wrapper composed under it since); buried under a
        third party's or another patch's wrapper, it is spliced out and theirs stays on top."""
        import wrapt

        try:
            wrapt.unwrap_object(self.owner, self.attr, self.after)
        except (wrapt.WrapperNotFoundError, wrapt.WrapperNotOutermostError, wrapt.PathResolutionError) as exc:
            raise PatchApplyError(f"{self.label}: the overlay's wrapper cannot be taken out ({exc}); what "
                                  "replaced it was left in place (restart the process for vLLM's original)") from None


@dataclass
class AppliedPatch:
    patch: Patch
    changes: list[Change] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
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


def precheck(patch: Patch, *, import_module: bool = True) -> list[Resolved]:
    """Resolve every target and verify its contract, touching nothing.

    Raises ``TargetMissing`` or ``DriftError`` so a patch whose assumptions fail is skipped whole.
    The names a patch relies on without editing them (``ascend_overlay.reliance``) are checked too;
    an import-phase patch never imports another module for that (it runs inside an import).
    """
    resolved = []
    for edit in patch.edits:
        r = resolve(edit.module, edit.path, import_module=import_module)
        message = contract.check(edit.contract, edit.compatible, r.unbound)
        if message is not None:
            raise DriftError(f"{edit.target}: {message}")
        resolved.append(r)
    from ascend_overlay import reliance

    for verdict in reliance.check_live(patch, import_modules=import_module and patch.phase is not Phase.IMPORT):
        if verdict.breaks:
            raise (TargetMissing if verdict.status == "missing" else DriftError)(verdict.message)
    return resolved


class DriftError(Exception):
    """The live target no longer matches the patch's contract pin."""


def _replacement(edit: Edit, r: Resolved) -> Any:
    if edit.kind is EditKind.WRAP:
        from ascend_overlay.wrapper import PatchedCallable

        return PatchedCallable(r.descriptor, edit.value, edit.target)
    new = edit.factory(r.live) if edit.factory is not None else edit.value
    # Keep the descriptor type: replacing a staticmethod with a plain function would bind ``self``.
    if isinstance(r.descriptor, staticmethod) and not isinstance(new, staticmethod):
        new = staticmethod(new)
    elif isinstance(r.descriptor, classmethod) and not isinstance(new, classmethod):
        new = classmethod(new)
    return new


def apply(patch: Patch, resolved: list[Resolved] | None = None) -> AppliedPatch:
    """Apply every edit, or none: on any failure, undo what was done and raise PatchApplyError."""
    if resolved is None:
        resolved = precheck(patch)
    done = AppliedPatch(patch)
    try:
        for edit, r in zip(patch.edits, resolved, strict=True):
            new = _replacement(edit, r)
            setattr(r.owner, r.attr, new)
            done.changes.append(Change(r.owner, r.attr, r.raw, new, edit.target, edit.kind is EditKind.WRAP))
            if edit.rebind_aliases and _is_module_level(r):
                done.aliases.extend(_rebind_aliases(r, new, edit, done))
    except Exception as exc:
        try:
            done.undo()
        except PatchApplyError as undo_exc:
            raise PatchApplyError(f"patch {patch.name!r} failed ({exc!r}) and could not be fully "
                                  f"rolled back: {undo_exc}") from exc
        raise PatchApplyError(f"patch {patch.name!r} failed at {edit.target} and was rolled back: "
                              f"{type(exc).__name__}: {exc}") from exc
    return done


def _is_module_level(r: Resolved) -> bool:
    return inspect.ismodule(r.owner)


def _rebind_aliases(r: Resolved, new: Any, edit: Edit, done: AppliedPatch) -> list[str]:
    """Rebind names that other modules took with ``from module import name`` before the patch.

    Such aliases are how patches silently fail to apply in practice; leaving one pointing at the
    original would mean half of vLLM runs the fix and half does not.
    """
    original = r.raw if r.raw is not _ABSENT else r.live
    if original is None or isinstance(original, (bool, int, float, str)):
        return []  # small immutables are shared by identity everywhere; they are not aliases
    root = edit.module.split(".")[0]
    rebound = []
    for name, module in list(sys.modules.items()):
        if module is None or module is r.owner or name.startswith(_PRIVATE_PREFIXES):
            continue
        if name != root and not name.startswith(root + "."):
            continue
        namespace = getattr(module, "__dict__", None)
        if not namespace:
            continue
        for key, value in list(namespace.items()):
            if value is original:
                setattr(module, key, new)
                done.changes.append(Change(module, key, original, new, f"{name}:{key}", edit.kind is EditKind.WRAP))
                rebound.append(f"{name}:{key}")
    return rebound
