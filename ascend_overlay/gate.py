"""Decides whether a patch applies on this install, and says why not when it does not.

The order of the checks is the order an operator would ask: is it blocked by another patch, is it
switched off, is this vLLM in its range, has upstream fixed it already, is the hardware here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from packaging.version import Version

from ascend_overlay import requirements, toggles
from ascend_overlay.catalog import Catalog
from ascend_overlay.patch import Patch
from ascend_overlay.settings import Settings
from ascend_overlay.vllm_version import parse_version, version_matches


@dataclass(frozen=True)
class Decision:
    applies: bool
    reason: str


def decide(patch: Patch, catalog: Catalog, settings: Settings, version: Version | None,
           applied: Callable[[str], bool] = lambda name: False) -> Decision:
    if patch.name in catalog.blocked:
        return Decision(False, catalog.blocked[patch.name])
    on, why = toggles.is_enabled(patch.name, patch.default, settings.enable, settings.disable)
    if not on:
        return Decision(False, why)
    if version is None:
        return Decision(False, "vLLM is not installed (set VLLM_VERSION if this is a source build)")
    if not version_matches(patch.vllm, version):
        return Decision(False, f"vLLM {version} is outside {patch.vllm}")
    if patch.fixed_in is not None and version >= parse_version(patch.fixed_in, "fixed_in"):
        return Decision(False, f"obsolete: vLLM {version} includes the fix (fixed in {patch.fixed_in}); "
                               f"remove this hotfix ({patch.file})")
    missing = requirements.unmet(patch.requires, applied)
    if missing:
        return Decision(False, missing)
    return Decision(True, why)
