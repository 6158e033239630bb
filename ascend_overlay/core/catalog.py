"""Load: the one registry of patches. Finds every patch the overlay knows, in one loop over its
sources, and settles conflicts; every other module asks the catalog.

Sources, in precedence order: the built-in ``patches/`` directory (whose ``hooks/`` folder holds the
overlay's own hook points, the patches that fire the phases), then each directory of
``VLLM_ASCEND_OVERLAY_PATH``, then installed packages declaring the ``ascend_overlay.patches`` entry
point. Outside sources pass the trust rules of ``trust.py`` first. A file that cannot be loaded is
refused alone, with the reason; the rest still load. Loading a file can never stop the process: a
patch file is executed at interpreter start in every Python process, so whatever it raises, even
``SystemExit``, refuses that file and nothing else.
"""

from __future__ import annotations

import ast
import os
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ascend_overlay.core import locate, trust
from ascend_overlay.core.errors import PatchDeclarationError
from ascend_overlay.core.patch import Patch
from ascend_overlay.core.settings import Variable
from ascend_overlay.core.vocabulary import Decision, EditKind, Phase, Reason

ENTRY_POINT_GROUP = "ascend_overlay.patches"
_MODULE_ROOT = "_ascend_overlay_patches"
# Packages a patch file must not import when it loads: patch files load at interpreter start in every
# Python process with the overlay on, and these cost seconds and hundreds of MB each.
HEAVY_PACKAGES = ("vllm", "torch", "torch_npu", "transformers")
# The built-in source's folder of hook points: internal patches, which no other source may declare.
HOOKS_FOLDER = "hooks"
BUILTIN = "builtin"  # the label of the overlay's own release among the sources


def builtin_patch_dir() -> Path:
    """``patches/`` beside the package in a checkout; ``ascend_overlay/_builtin_patches`` in a wheel."""
    here = Path(__file__).resolve().parent.parent
    wheel = here / "_builtin_patches"
    return wheel if wheel.is_dir() else here.parent / "patches"


@dataclass(frozen=True)
class LoadProblem:
    """A patch file or source that was refused, and why: reported, never raised (unless strict)."""

    source: str
    path: str
    message: str


@dataclass(frozen=True)
class Source:
    """Where patch files come from. ``trusted`` sources (the overlay's own release) skip trust checks."""

    label: str          # "builtin", "path:<dir as given>", "package:<distribution>"
    directory: str
    trusted: bool
    module_prefix: str  # private namespace of its patch modules, so two sources never collide
    package: str | None = None  # an entry point's package name: its patch files import helpers through it


@dataclass
class Catalog:
    """Every patch loaded, hook points first (in the order they are armed), and what was refused."""

    patches: list[Patch] = field(default_factory=list)
    problems: list[LoadProblem] = field(default_factory=list)
    blocked: dict[str, Decision] = field(default_factory=dict)

    def get(self, name: str) -> Patch | None:
        return next((p for p in self.patches if p.name == name), None)

    @property
    def hooks(self) -> list[Patch]:
        """The overlay's own hook points."""
        return [p for p in self.patches if p.internal]

    @property
    def own(self) -> list[Patch]:
        """The patches the hook points fire: what an operator switches on and off."""
        return [p for p in self.patches if not p.internal]

    def names(self) -> list[str]:
        """Names ``VLLM_ASCEND_OVERLAY_ENABLE``/``_DISABLE`` accept (hook points are not switchable)."""
        return [p.name for p in self.own]

    def for_phase(self, phase: Phase) -> list[Patch]:
        return [p for p in self.patches if p.phase is phase]

    def variables(self) -> list[Variable]:
        return [v for p in self.patches for v in p.variables]


def patch_files(directory: Path, *, hooks: bool = False) -> Iterator[Path]:
    """Patch files of a patches directory: (with ``hooks``) its ``hooks/`` folder, then its phase
    folders, then its top level."""
    if hooks and (directory / HOOKS_FOLDER).is_dir():
        yield from sorted((directory / HOOKS_FOLDER).glob("hook_*.py"))
    for phase in Phase:
        sub = directory / phase.value
        if sub.is_dir():
            yield from sorted(sub.glob("patch_*.py"))
    yield from sorted(directory.glob("patch_*.py"))


def _module_level_imports(tree: ast.Module, package: str | None = None) -> list[tuple[str, int]]:
    """``(module, line)`` for every import that runs when the module is executed: not those inside
    functions, nor under ``if TYPE_CHECKING:``. ``from a import b`` names both ``a`` and ``a.b`` (``b`` may
    be a submodule); a relative import is resolved against ``package`` (skipped without one)."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for branch in node.orelse:
                visit(branch)
            return
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            found.extend((alias.name, line) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                if package is None:
                    base = ""
                else:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else [])) if anchor else ""
            if base:
                found.append((base, line))
                found.extend((f"{base}.{alias.name}", line) for alias in node.names if alias.name != "*")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _heavy(name: str) -> bool:
    return name.split(".")[0] in HEAVY_PACKAGES


# Finds the source of a module inside a patch file's own source (a helper module of the hotfix):
# returns the file's checked bytes and the module's package, or None when the name lies elsewhere.
HelperFinder = Callable[[str], "tuple[trust.Checked, str] | None"]


def heavy_reach(tree: ast.Module, find_helper: HelperFinder | None = None) -> tuple[str, str] | None:
    """How executing this patch file would import a heavy package, read from the source alone (so it
    is refused before any of its code runs): ``(how, package)``, or None. Imports of helper modules that
    lie in the patch's own source are followed, transitively; what lies elsewhere is caught after loading."""
    queue: list[tuple[ast.Module, str | None, str]] = [(tree, None, "")]
    seen: set[str] = set()
    while queue:
        module_tree, package, chain = queue.pop(0)
        for name, line in _module_level_imports(module_tree, package):
            if _heavy(name):
                if not chain:
                    return f"imports {name} at module level (line {line})", name.split(".")[0]
                return f"{chain}, which imports {name} (line {line})", name.split(".")[0]
            if find_helper is None or name in seen:
                continue
            seen.add(name)
            found = find_helper(name)
            if found is None:
                continue
            checked, helper_package = found
            try:
                helper_tree = ast.parse(checked.data, checked.path)
            except (SyntaxError, ValueError):
                continue  # importing it fails on its first line, before anything heavy
            if chain:
                link = f"{chain}, which imports {name} ({checked.path}, line {line})"
            else:
                link = f"imports {name} at module level (line {line}), a module of its own ({checked.path})"
            queue.append((helper_tree, helper_package, link))
    return None


def load_patch_file(path: Path, source: str, module_prefix: str) -> Patch:
    """Execute one patch file of a trusted source (the overlay's own release, a file being written)."""
    try:
        data = trust.read_regular(str(path))
    except trust.Refused as exc:
        raise PatchDeclarationError(str(exc)) from None
    return load_patch_source(str(path), data, source, module_prefix)


def load_patch_source(path: str, data: bytes, source: str, module_prefix: str,
                      find_helper: HelperFinder | None = None) -> Patch:
    """Compile and execute a patch file's bytes (the bytes that were checked: the file is not opened
    again) as a private module, and return its ``PATCH``."""
    name = f"{_MODULE_ROOT}.{module_prefix}.{Path(path).stem}"
    try:
        tree = ast.parse(data, path)
    except SyntaxError as exc:
        raise PatchDeclarationError(f"syntax error at line {exc.lineno}: {exc.msg}") from None
    except ValueError as exc:  # null bytes, an undecodable file
        raise PatchDeclarationError(f"cannot read: {exc}") from None
    heavy = heavy_reach(tree, find_helper)
    if heavy:
        how, package = heavy
        raise PatchDeclarationError(
            f"{how}: patch files load at start-up in every Python process with the overlay on, so this would "
            f"import {package} into all of them; move the import inside the function that needs it")
    patch_module = types.ModuleType(name)
    patch_module.__file__ = path
    preloaded = {pkg for pkg in HEAVY_PACKAGES if pkg in sys.modules}
    sys.modules[name] = patch_module  # registered first so pickled references to its functions resolve
    try:
        try:
            exec(compile(tree, path, "exec"), patch_module.__dict__)
        except PatchDeclarationError:
            raise
        except BaseException as exc:  # noqa: B036 - SystemExit or KeyboardInterrupt must not end the host
            raise PatchDeclarationError(f"raised while loading: {type(exc).__name__}: {exc}") from None
        pulled = sorted(pkg for pkg in HEAVY_PACKAGES if pkg in sys.modules and pkg not in preloaded)
        if pulled:
            raise PatchDeclarationError(
                f"loading it imported {', '.join(pulled)} (through another module it imports at module level); "
                "patch files must stay light: import inside the function that needs it")
        patch = patch_module.__dict__.get("PATCH")
        if not isinstance(patch, Patch):
            raise PatchDeclarationError("defines no PATCH = Patch(...) declaration")
        if not patch.edits:
            raise PatchDeclarationError(f"patch {patch.name!r} declares no edit (use @PATCH.replace or @PATCH.wrap)")
        folder = Path(path).parent.name
        if folder in {p.value for p in Phase} and Phase(folder) is not patch.phase:
            raise PatchDeclarationError(
                f"patch {patch.name!r} declares phase {patch.phase.value!r} but lives in the {folder}/ folder")
        if patch.internal != (folder == HOOKS_FOLDER and source == BUILTIN):
            raise PatchDeclarationError(
                f"patch {patch.name!r}: only the overlay's own hook points (patches/{HOOKS_FOLDER}/) are internal")
    except PatchDeclarationError:
        sys.modules.pop(name, None)
        raise
    patch.source = source
    patch.file = path
    remember_source(path, tree)
    return patch


def remember_source(path: str, tree: ast.Module) -> None:
    """Give the static reader of relied-on names the tree that was executed, so it never reads the file
    a second time (by then it could hold other bytes)."""
    from ascend_overlay.core.reliance import classbody

    classbody.remember(path, tree)


def _entry_point_sources(problems: list[LoadProblem]) -> list[Source]:
    """Installed packages declaring ``ascend_overlay.patches``: located without importing anything
    (``locate``), then the package's directory and every package ``__init__`` on the way checked by the
    trust rule, since a patch file that imports its own package runs them. The package itself is never
    imported by the overlay; its patch files are read like a hotfix directory's."""
    import importlib.metadata

    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        label = f"package:{ep.dist.name if ep.dist else ep.name}"
        if _heavy(ep.module):
            problems.append(LoadProblem(label, ep.value, f"entry point names {ep.module}, inside "
                                        f"{ep.module.split('.')[0]}: patch packages must be packages of their own"))
            continue
        chain = locate.specs_on_the_way(ep.module)
        if chain is None:
            problems.append(LoadProblem(label, ep.value, f"cannot locate package {ep.module}"))
            continue
        spec = chain[-1]
        if not spec.submodule_search_locations:
            problems.append(LoadProblem(label, ep.value, "entry point must name a package directory of patch files"))
            continue
        try:
            for package in chain:
                if package.origin and package.has_location and os.path.basename(package.origin) == "__init__.py":
                    trust.check_package_file(package.origin)
        except trust.Refused as exc:
            problems.append(LoadProblem(label, ep.value, f"untrusted package refused: {exc}"))
            continue
        found.append(Source(label, list(spec.submodule_search_locations)[0], False, f"ep_{ep.name}", ep.module))
    return found


def sources(hotfix_dirs: Iterable[str] = (), *, builtin: bool = True, entry_points: bool = True,
            problems: list[LoadProblem] | None = None) -> list[Source]:
    found = [Source(BUILTIN, str(builtin_patch_dir()), True, BUILTIN)] if builtin else []
    found += [Source(f"path:{raw}", raw, False, f"path{index}") for index, raw in enumerate(hotfix_dirs)]
    if entry_points:
        found += _entry_point_sources(problems if problems is not None else [])
    return found


PHASE_FOLDERS = tuple(phase.value for phase in Phase)


def load_catalog(hotfix_dirs: Iterable[str] = (), *, entry_points: bool = True, builtin: bool = True,
                 hooks: bool = True, only: Iterable[Source] | None = None) -> Catalog:
    """Every patch of every source (or of ``only`` these), refused files listed, conflicts settled.
    ``hooks=False`` leaves the hook points out (a test that fires phases by hand)."""
    catalog = Catalog()
    chosen = list(only) if only is not None else sources(hotfix_dirs, builtin=builtin, entry_points=entry_points,
                                                         problems=catalog.problems)
    for source in chosen:
        if source.trusted:
            for path in patch_files(Path(source.directory), hooks=hooks and source.label == BUILTIN):
                try:
                    catalog.patches.append(
                        load_patch_file(path, source.label, f"{source.module_prefix}.{path.parent.name}"))
                except PatchDeclarationError as exc:
                    catalog.problems.append(LoadProblem(source.label, str(path), str(exc)))
        else:
            _load_outside(catalog, source)
    if hooks and any(s.label == BUILTIN for s in chosen) and not catalog.hooks:
        catalog.problems.append(LoadProblem(BUILTIN, str(builtin_patch_dir() / HOOKS_FOLDER),
                                            "the overlay's hook points are missing (a broken install): no phase "
                                            "can fire; reinstall ascend-overlay"))
    _settle_conflicts(catalog)
    return catalog


def _load_outside(catalog: Catalog, source: Source) -> None:
    """A hotfix directory or an entry-point package: opened and checked whole, then each patch file
    read once through its checked directory, held against the manifest, and compiled from those bytes."""
    try:
        directory = trust.open_hotfix_directory(source.directory, PHASE_FOLDERS)
    except trust.Refused as exc:
        catalog.problems.append(LoadProblem(source.label, source.directory, str(exc)))
        return
    with directory:
        def find_helper(name: str) -> tuple[trust.Checked, str] | None:
            relative = name
            if source.package is not None:  # an entry point's package: its modules are imported through its name
                if name == source.package:
                    relative = "__init__"
                elif name.startswith(source.package + "."):
                    relative = name[len(source.package) + 1:]
                else:
                    return None
            checked = directory.find_module(relative)
            if checked is None:
                return None
            is_package = os.path.basename(checked.path) == "__init__.py"
            return checked, name if is_package else name.rpartition(".")[0]

        for folder, name in directory.patch_files(PHASE_FOLDERS):
            path = os.path.join(source.directory, folder, name)
            try:
                checked = directory.read(folder, name)
            except trust.Refused as exc:
                catalog.problems.append(LoadProblem(source.label, path, str(exc)))
                continue
            try:
                catalog.patches.append(load_patch_source(checked.path, checked.data, source.label,
                                                         f"{source.module_prefix}.{folder or '_'}", find_helper))
            except PatchDeclarationError as exc:
                catalog.problems.append(LoadProblem(source.label, path, str(exc)))


def _settle_conflicts(catalog: Catalog) -> None:
    """Two patches on one attribute: a declared ``supersedes`` decides; otherwise the later is blocked."""
    seen_names: dict[str, Patch] = {}
    kept: list[Patch] = []
    for patch in catalog.patches:
        if patch.name in seen_names:
            catalog.problems.append(LoadProblem(
                patch.source, patch.file or "?",
                f"patch name {patch.name!r} already declared by {seen_names[patch.name].file}; rename one"))
            continue
        seen_names[patch.name] = patch
        kept.append(patch)
    catalog.patches = kept
    for patch in kept:
        for old in patch.supersedes:
            if catalog.get(old) is not None:
                catalog.blocked[old] = Decision(False, Reason.SUPERSEDED, f"superseded by {patch.name}")
    # Wrappers compose (each sees the call and passes it on, in load order), so any number of wrap
    # edits may share a target; a replacement owns its target alone.
    owners: dict[str, list[tuple[Patch, EditKind]]] = {}
    for patch in kept:
        if patch.name in catalog.blocked:
            continue
        for edit in patch.edits:
            held = [(p, kind) for p, kind in owners.get(edit.target, []) if p.name not in catalog.blocked]
            clash = next((p for p, kind in held if kind is EditKind.REPLACE or edit.kind is EditKind.REPLACE), None)
            if clash is not None:
                catalog.blocked[patch.name] = Decision(
                    False, Reason.CONFLICT,
                    f"conflict: {clash.name} ({clash.source}) also patches {edit.target}, and a replacement "
                    f"cannot share its target",
                    f"declare supersedes=('{clash.name}',) if this patch should win, make both edits wraps if "
                    f"they compose, or disable one with VLLM_ASCEND_OVERLAY_DISABLE")
                break
        else:
            for edit in patch.edits:
                owners.setdefault(edit.target, []).append((patch, edit.kind))
