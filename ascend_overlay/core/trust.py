"""Trust rules for patch files that come from outside the overlay's own release.

A hotfix directory's code runs in every Python process that has the overlay on, so it is held to
ssh's ``StrictModes`` rule: owned by the current user or root, writable by nobody else. An optional
``SHA256SUMS`` manifest (the format ``sha256sum`` writes) pins each file's content; with a manifest
present, a file missing from it or differing from it is refused. Relative paths are refused too: they
would resolve against whatever directory each process starts in.

This module only judges; ``catalog.py`` does the loading. Every refusal says what to do next.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

MANIFEST_NAME = "SHA256SUMS"


def _shown(path: Path) -> tuple[str, Path]:
    """How to name ``path`` to a person, and what it really is (a symlink is named with its target)."""
    real = path.resolve()
    if real != Path(os.path.abspath(path)):
        return f"{path} (a symlink to {real})", real
    return str(path), real


def trust_problem(path: Path) -> str | None:
    """Why ``path`` may not be trusted, or None. Symlinks are followed: the target is what runs, and
    the advice names the target, never the link (``chmod`` through a link changes what it points to)."""
    try:
        st = path.stat()
    except OSError as exc:
        return f"cannot stat {path}: {exc.strerror}"
    shown, real = _shown(path)
    if st.st_uid not in (os.getuid(), 0):
        return (f"{shown} is owned by uid {st.st_uid}, neither you (uid {os.getuid()}) nor root; "
                f"move the hotfix into a directory you own")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = " and ".join(w for w, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if st.st_mode & bit)
        mode = f"mode {stat.S_IMODE(st.st_mode):o}"
        if stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX:
            return (f"{shown} is a shared directory writable by {who} ({mode}, sticky): do not chmod it; "
                    f"move the hotfixes into a directory only you can write (mkdir -m 755 DIR)")
        return f"{shown} is writable by {who} ({mode}); run: chmod go-w {shlex.quote(str(real))}"
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
            raise ValueError(f"{path}:{lineno}: expected '<sha256>  <file>' as sha256sum writes it; "
                             f"rewrite it with: ascend-overlay hotfix manifest {shlex.quote(str(path.parent))}")
        entries[os.path.normpath(name)] = digest.lower()
    return entries


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class VettedDirectory:
    """A hotfix directory that passed the checks, and the manifest its files must match (if any)."""

    root: Path
    manifest: dict[str, str] | None


def vet_directory(raw: str, *, check_trust: bool = True) -> tuple[VettedDirectory | None, list[tuple[str, str]]]:
    """Check a hotfix directory itself. Returns it (None if refused whole) and the (path, why) refusals."""
    if not os.path.isabs(raw):
        return None, [(raw, "relative hotfix directory refused: it would depend on the working directory; "
                            "use an absolute path in VLLM_ASCEND_OVERLAY_PATH")]
    directory = Path(raw)
    if not directory.is_dir():
        return None, [(raw, "hotfix directory does not exist or is not a directory")]
    if check_trust:
        for d in [directory] + [p for p in directory.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))]:
            problem = trust_problem(d)
            if problem:
                return None, [(str(d), "untrusted directory refused: " + problem)]
    manifest_path = directory / MANIFEST_NAME
    manifest = None
    if manifest_path.exists():
        try:
            problem = trust_problem(manifest_path) if check_trust else None
            if problem:
                raise ValueError("untrusted manifest: " + problem)
            manifest = read_manifest(manifest_path)
        except (OSError, ValueError) as exc:
            return None, [(str(manifest_path), f"manifest refused, so is the directory: {exc}")]
    return VettedDirectory(directory, manifest), []


def vet_file(path: Path, directory: VettedDirectory, *, check_trust: bool = True) -> str | None:
    """Why one hotfix file is refused, or None."""
    if check_trust:
        problem = trust_problem(path)
        if problem:
            return "untrusted file refused: " + problem
    if directory.manifest is not None:
        rel = os.path.normpath(os.path.relpath(path, directory.root))
        resign = f"ascend-overlay hotfix manifest {shlex.quote(str(directory.root))}"
        expected = directory.manifest.get(rel)
        if expected is None:
            return f"not listed in {MANIFEST_NAME}; if you trust it, sign it with: {resign}"
        actual = sha256_of(path)
        if actual != expected:
            return (f"SHA-256 mismatch, file refused (tampered or edited after signing): {MANIFEST_NAME} says "
                    f"{expected[:16]}..., file is {actual[:16]}...; if the edit is yours, re-sign with: {resign}")
    return None
