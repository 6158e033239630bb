"""What would apply on this install, computed without starting an engine.

Used by ``ascend-overlay status`` / ``list`` and by the docs generator. Contract checks import the
target modules (never start vLLM); pass ``check_contracts=False`` to stay import-free.
"""

from __future__ import annotations

from typing import Any

from ascend_overlay import applier
from ascend_overlay.catalog import Catalog, load_catalog
from ascend_overlay.errors import ConfigError
from ascend_overlay.gate import decide
from ascend_overlay.patch import Patch
from ascend_overlay.settings import Settings


def evaluate(patch: Patch, catalog: Catalog, settings: Settings, version: Any,
             check_contracts: bool = True) -> tuple[str, str]:
    decision = decide(patch, catalog, settings, version)
    if not decision.applies:
        return "skipped", decision.reason
    if check_contracts:
        try:
            applier.precheck(patch)
        except applier.TargetMissing as exc:
            return "skipped", f"missing: {exc}"
        except applier.DriftError as exc:
            return "skipped", f"drift: {exc}"
    return "would apply", decision.reason


def collect(settings: Settings | None = None, check_contracts: bool = True) -> dict[str, Any]:
    from ascend_overlay import toggles
    from ascend_overlay.vllm_version import installed_vllm_version, vllm_distribution_name

    settings_error = None
    try:
        settings = settings or Settings.from_env()
    except ConfigError as exc:
        settings_error = str(exc)
        settings = Settings()
    version_error = None
    try:
        version = installed_vllm_version()
    except ConfigError as exc:
        version, version_error = None, str(exc)
    catalog = load_catalog(settings.hotfix_dirs)
    rows = []
    for patch in catalog.patches:
        status, reason = evaluate(patch, catalog, settings, version, check_contracts)
        rows.append({**patch.declaration(), "status": status, "reason": reason})
    return {
        "overlay_enabled": settings.enabled,
        "strict": settings.strict,
        "vllm_version": str(version) if version else None,
        "vllm_distribution": vllm_distribution_name(),
        "errors": [e for e in (settings_error, version_error) if e]
        + [str(e) for e in toggles.validate(settings.enable, settings.disable, catalog.names())],
        "refused": [{"source": p.source, "path": p.path, "message": p.message} for p in catalog.problems],
        "patches": rows,
    }
