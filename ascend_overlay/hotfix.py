"""Trust checks for patches that come from outside the overlay's own release.

A hotfix directory's code runs in every Python process that has the overlay on, so it is held to
ssh's ``StrictModes`` rule: it must be owned by the current user or root and be writable by nobody
else. An optional ``SHA256SUMS`` manifest (the format ``sha256sum`` writes) pins each file's
content; with a manifest present, a file that is missing from it or differs is refused. Relative
paths are refused too: they would resolve against whatever directory the process starts in.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ascend_overlay.catalog import Catalog, LoadProblem

MANIFEST_NAME = "SHA256SUMS"


def trust_problem(path: Path) -> str | None:
    """Why ``path`` may not be trusted, or None. Follows symlinks: the target is what runs."""
    try:
        st = path.stat()
    except OSError as exc:
        return f"cannot stat {path}: {exc.strerror}"
    if st.st_uid not in (os.getuid(), 0):
        return (f"{path} is owned by uid {st.st_uid}, neither you (uid {os.getuid()}) nor root; "
                f"chown it or move the hotfix somewhere you own")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = " and ".join(w for w, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if st.st_mode & bit)
        return f"{path} is writable by {who} (mode {stat.S_IMODE(st.st_mode):o}); run: chmod go-w {path}"
    return None


def read_manifest(path: Path) -> dict[str, str]:
    """Parse ``<sha256>  <relative path>`` lines; raises ValueError on a malformed line."""
    entries: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, name = line.partition(" ")
        name = name.strip().lstrip("*")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()) or not name:
            raise ValueError(f"{path}:{lineno}: expected '<sha256>  <file>' as sha256sum writes it")
        entries[os.path.normpath(name)] = digest.lower()
    return entries


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class VettedDirectory:
    manifest: dict[str, str] | None = None
    root: Path | None = None
    problems: list[LoadProblem] = field(default_factory=list)


def vet_directory(raw: str, *, check_trust: bool = True) -> tuple[Path | None, VettedDirectory]:
    """Check a hotfix directory itself; returns it (or None if refused whole) and its manifest."""
    from ascend_overlay.catalog import LoadProblem

    source = f"path:{raw}"
    result = VettedDirectory()
    if not os.path.isabs(raw):
        result.problems.append(LoadProblem(source, raw, (
            "relative hotfix directory refused: it would depend on the working directory; "
            "use an absolute path in VLLM_ASCEND_OVERLAY_PATH")))
        return None, result
    directory = Path(raw)
    if not directory.is_dir():
        result.problems.append(LoadProblem(source, raw, "hotfix directory does not exist or is not a directory"))
        return None, result
    if check_trust:
        for d in [directory] + [p for p in directory.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))]:
            problem = trust_problem(d)
            if problem:
                result.problems.append(LoadProblem(source, str(d), "untrusted directory refused: " + problem))
                return None, result
    manifest_path = directory / MANIFEST_NAME
    if manifest_path.exists():
        problem = trust_problem(manifest_path) if check_trust else None
        try:
            if problem:
                raise ValueError("untrusted manifest: " + problem)
            result.manifest = read_manifest(manifest_path)
        except (OSError, ValueError) as exc:
            result.problems.append(LoadProblem(source, str(manifest_path), f"manifest refused, so is the directory: {exc}"))
            return None, result
    result.root = directory
    return directory, result


def vet_file(path: Path, manifest: dict[str, str] | None, *, check_trust: bool = True,
             root: Path | None = None) -> str | None:
    """Why one hotfix file is refused, or None."""
    if check_trust:
        problem = trust_problem(path)
        if problem:
            return "untrusted file refused: " + problem
    if manifest is not None:
        base = root or _manifest_root(path)
        rel = os.path.normpath(os.path.relpath(path, base))
        expected = manifest.get(rel)
        if expected is None:
            return f"not listed in {MANIFEST_NAME}; add its hash (sha256sum {rel} >> {MANIFEST_NAME})"
        actual = sha256_of(path)
        if actual != expected:
            return (f"SHA-256 mismatch, file refused (tampered or edited after signing): "
                    f"{MANIFEST_NAME} says {expected[:16]}..., file is {actual[:16]}...")
    return None


def _manifest_root(path: Path) -> Path:
    for parent in (path.parent, path.parent.parent):
        if (parent / MANIFEST_NAME).exists():
            return parent
    return path.parent


def load_entry_point_patches(catalog: Catalog) -> None:
    """Load patch files from installed packages that declare ``ascend_overlay.patches``.

    The entry point names a package; its directory is read like a hotfix directory, without
    importing the package (its ``__init__`` could do anything).
    """
    import importlib.metadata
    import importlib.util

    from ascend_overlay.catalog import ENTRY_POINT_GROUP, LoadProblem, load_patch_file, patch_files
    from ascend_overlay.errors import PatchDeclarationError

    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        source = f"package:{ep.dist.name if ep.dist else ep.name}"
        try:
            spec = importlib.util.find_spec(ep.module)
        except (ImportError, ValueError) as exc:
            catalog.problems.append(LoadProblem(source, ep.value, f"cannot locate package: {exc}"))
            continue
        if spec is None or not spec.submodule_search_locations:
            catalog.problems.append(LoadProblem(source, ep.value, "entry point must name a package directory of patch files"))
            continue
        directory, vetted = vet_directory(list(spec.submodule_search_locations)[0])
        catalog.problems.extend(vetted.problems)
        if directory is None:
            continue
        for path in patch_files(directory):
            problem = vet_file(path, vetted.manifest, root=directory)
            if problem:
                catalog.problems.append(LoadProblem(source, str(path), problem))
                continue
            try:
                catalog.patches.append(load_patch_file(path, source, f"ep_{ep.name}.{path.parent.name}"))
            except PatchDeclarationError as exc:
                catalog.problems.append(LoadProblem(source, str(path), str(exc)))
