"""Everything the overlay relies on in vLLM: each patch's edits and the hook points it uses unedited.

The list is read from the same declarations the runtime applies (the catalog: patches, hook
points and what each relies on), so a new patch is checked the moment it exists, with no second list to keep in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ascend_overlay.core.patch import Patch, Targeted
from ascend_overlay.core.reliance import Use
from ascend_overlay.core.reliance.model import UseKind
from ascend_overlay.core.vocabulary import Word


class TargetRole(Word):
    """What a target is to the subject that relies on it."""

    PATCH = "patch"          # a patch edits it
    HOOK = "hook"            # one of the overlay's hook points edits it
    RELIED_ON = "relied-on"  # used without being edited


@dataclass(frozen=True)
class Target(Targeted):
    """One ``module:Attr.path`` with its pin, and the patch (and file) that would suffer if it broke."""

    target: str
    contract: str | None
    compatible: tuple[str, ...]
    patch: str
    patch_file: str
    vllm_spec: str
    role: TargetRole
    use: Use | None = None  # for a relied-on name found by ``ascend_overlay.core.reliance``: how it is used
    subject: str = "overlay"  # "overlay", or "plugin": a plugin's files are named with their lines

    @property
    def where(self) -> str:
        """The file to adapt, with the line for a plugin's use (``vllm_ascend/ops/gdn.py:40``)."""
        return self.use.where if self.subject == "plugin" and self.use is not None else self.patch_file



_REPO = Path(__file__).resolve().parents[2]


def _display_path(path: str | None) -> str:
    """Relative to the overlay checkout when inside it, so reports read the same from any directory."""
    if not path:
        return "?"
    if not Path(path).is_absolute():
        return path
    resolved = Path(path).resolve()
    return str(resolved.relative_to(_REPO)) if resolved.is_relative_to(_REPO) else str(resolved)


def from_patches(patches: list[Patch], role: TargetRole = TargetRole.PATCH, default_file: str | None = None) -> list[Target]:
    out = []
    for patch in patches:
        for edit in patch.edits:
            out.append(Target(edit.target, edit.contract, tuple(edit.compatible), patch.name,
                              _display_path(patch.file) if patch.file else (default_file or "?"),
                              patch.vllm, role))
    return out


def overlay_targets(hotfix_dirs: tuple[str, ...] = ()) -> tuple[list[Target], list[str]]:
    """Every patch target (built-in, hotfix directories, entry points) and every hook point; plus the
    load problems, so a patch file that failed to load is reported rather than silently unchecked."""
    from ascend_overlay.core.catalog import load_catalog

    catalog = load_catalog(hotfix_dirs)
    targets = from_patches(catalog.own)
    targets += from_patches(catalog.hooks, role=TargetRole.HOOK)
    targets += relied_on(catalog.patches)
    problems = [f"{p.path}: {p.message}" for p in catalog.problems]
    return targets, problems


def relied_on(patches: list[Patch]) -> list[Target]:
    """What the patches and the overlay's own vLLM-facing modules use without editing it."""
    from ascend_overlay.core import reliance

    out = []
    for patch in patches:
        file = _display_path(patch.file) if patch.file else "?"
        for use in reliance.uses_of_patch(patch):
            out.append(Target(use.target, use.shape if use.how is UseKind.DECLARED else None, use.compatible,
                              patch.name, file, patch.vllm, TargetRole.RELIED_ON, use))
    for path in reliance.overlay_modules():
        file = _display_path(str(path))
        module = file.removesuffix(".py").replace("/", ".")
        for use in reliance.uses_of_module(path):
            out.append(Target(use.target, None, (), module, file, "", TargetRole.RELIED_ON, use))
    return out


def patches_by_module(targets: list[Target]) -> dict[str, set[str]]:
    """Target module -> patch files, to name the patches near a change that is not their target."""
    index: dict[str, set[str]] = {}
    for t in targets:
        index.setdefault(t.module, set()).add(t.patch_file)
    return index
