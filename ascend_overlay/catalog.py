"""Finds and loads every patch the overlay knows, and settles conflicts between them at load time.

Sources, in precedence order: the built-in ``patches/`` directory, then each directory of
``VLLM_ASCEND_OVERLAY_PATH``, then installed packages declaring the ``ascend_overlay.patches`` entry
point. A file that cannot be loaded is refused alone, with the reason; the rest still load.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ascend_overlay.errors import PatchDeclarationError
from ascend_overlay.patch import Patch, Phase

ENTRY_POINT_GROUP = "ascend_overlay.patches"
_MODULE_ROOT = "_ascend_overlay_patches"


def builtin_patch_dir() -> Path:
    """``patches/`` beside the package in a checkout; ``ascend_overlay/_builtin_patches`` in a wheel."""
    here = Path(__file__).resolve().parent
    wheel = here / "_builtin_patches"
    return wheel if wheel.is_dir() else here.parent / "patches"


@dataclass(frozen=True)
class LoadProblem:
    """A patch file or source that was refused, and why: shown in the report, never raised (unless strict)."""

    source: str
    path: str
    message: str


@dataclass
class Catalog:
    patches: list[Patch] = field(default_factory=list)
    problems: list[LoadProblem] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> Patch | None:
        return next((p for p in self.patches if p.name == name), None)

    def names(self) -> list[str]:
        return [p.name for p in self.patches]

    def for_phase(self, phase: Phase) -> list[Patch]:
        return [p for p in self.patches if p.phase is phase]


def patch_files(directory: Path) -> Iterator[Path]:
    """``patch_*.py`` files of a patches directory: its phase folders, then its top level."""
    for phase in Phase:
        sub = directory / phase.value
        if sub.is_dir():
            yield from sorted(sub.glob("patch_*.py"))
    yield from sorted(directory.glob("patch_*.py"))


def load_patch_file(path: Path, source: str, module_prefix: str) -> Patch:
    """Execute one patch file as a private module and return its ``PATCH``."""
    name = f"{_MODULE_ROOT}.{module_prefix}.{path.stem}"
    try:
        code_text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PatchDeclarationError(f"cannot read: {exc}") from None
    try:
        code = compile(code_text, str(path), "exec")
    except SyntaxError as exc:
        raise PatchDeclarationError(f"syntax error at line {exc.lineno}: {exc.msg}") from None
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module  # registered first so pickled references to its functions resolve
    try:
        exec(code, module.__dict__)
    except PatchDeclarationError:
        sys.modules.pop(name, None)
        raise
    except Exception as exc:
        sys.modules.pop(name, None)
        raise PatchDeclarationError(f"raised while loading: {type(exc).__name__}: {exc}") from None
    patch = module.__dict__.get("PATCH")
    if not isinstance(patch, Patch):
        sys.modules.pop(name, None)
        raise PatchDeclarationError("defines no PATCH = Patch(...) declaration")
    if not patch.edits:
        sys.modules.pop(name, None)
        raise PatchDeclarationError(f"patch {patch.name!r} declares no edit (use @PATCH.replace or @PATCH.wrap)")
    folder = path.parent.name
    if folder in {p.value for p in Phase} and folder != patch.phase.value:
        sys.modules.pop(name, None)
        raise PatchDeclarationError(
            f"patch {patch.name!r} declares phase {patch.phase.value!r} but lives in the {folder}/ folder")
    patch.source = source
    patch.file = str(path)
    return patch


def _load_directory(directory: Path, source: str, prefix: str, catalog: Catalog) -> None:
    for path in patch_files(directory):
        try:
            catalog.patches.append(load_patch_file(path, source, f"{prefix}.{path.parent.name}"))
        except PatchDeclarationError as exc:
            catalog.problems.append(LoadProblem(source, str(path), str(exc)))


def _settle_conflicts(catalog: Catalog) -> None:
    """Two patches on one attribute: a declared ``supersedes`` decides; otherwise the later is blocked."""
    seen_names: dict[str, Patch] = {}
    kept: list[Patch] = []
    for patch in catalog.patches:
        if patch.name in seen_names:
            catalog.problems.append(LoadProblem(
                patch.source, patch.file or "?",
                f"patch name {patch.name!r} already declared by {seen_names[patch.name].file}"))
            continue
        seen_names[patch.name] = patch
        kept.append(patch)
    catalog.patches = kept
    superseded = {old: p.name for p in kept for old in p.supersedes}
    for old, new in superseded.items():
        if catalog.get(old) is not None:
            catalog.blocked[old] = f"superseded by {new}"
    owner: dict[str, Patch] = {}
    for patch in kept:
        if patch.name in catalog.blocked:
            continue
        for target in patch.targets:
            first = owner.get(target)
            if first is None:
                owner[target] = patch
            elif first.name not in catalog.blocked:
                catalog.blocked[patch.name] = (
                    f"conflict: {first.name} ({first.source}) also patches {target}; "
                    f"declare supersedes=('{first.name}',) if this patch should win")
                break


def load_catalog(extra_dirs: Iterable[str] = (), *, entry_points: bool = True,
                 builtin: bool = True, trust: bool = True) -> Catalog:
    catalog = Catalog()
    if builtin:
        _load_directory(builtin_patch_dir(), "builtin", "builtin", catalog)
    from ascend_overlay import hotfix

    for index, raw in enumerate(extra_dirs):
        directory, refused = hotfix.vet_directory(raw, check_trust=trust)
        catalog.problems.extend(refused.problems)
        if directory is not None:
            for path in patch_files(directory):
                problem = hotfix.vet_file(path, refused.manifest, check_trust=trust, root=directory)
                if problem is not None:
                    catalog.problems.append(LoadProblem(f"path:{raw}", str(path), problem))
                    continue
                try:
                    catalog.patches.append(load_patch_file(path, f"path:{raw}", f"path{index}.{path.parent.name}"))
                except PatchDeclarationError as exc:
                    catalog.problems.append(LoadProblem(f"path:{raw}", str(path), str(exc)))
    if entry_points:
        hotfix.load_entry_point_patches(catalog)
    _settle_conflicts(catalog)
    return catalog
