"""What the overlay would do on this install, computed without starting an engine.

Used by ``ascend-overlay status`` / ``list`` and by the docs generator. It runs the runtime's own
pipeline (load, then ``planning.would_apply``) on this process's settings, so what it says is what
a vLLM process started with the same environment will do. Contract checks import the target modules
(never start vLLM); pass ``check_contracts=False`` to stay import-free. Their answers are remembered
between runs (``precheck_cache``: keyed by vLLM's files, the environment and each patch file), so a
second run answers in about a second; ``use_cache=False`` checks live and refreshes them.
"""

from __future__ import annotations

import socket
from typing import Any

from ascend_overlay.core import drops, reliance, requirements, toggles
from ascend_overlay.core.catalog import load_catalog
from ascend_overlay.core.errors import ConfigError
from ascend_overlay.core.planning import Context, would_apply
from ascend_overlay.core.precheck_cache import PrecheckCache
from ascend_overlay.core.settings import SIMULATE_NPU, VARIABLES, Settings, read
from ascend_overlay.core.vllm_version import installed_from_metadata, resolve, vllm_distribution_name
from ascend_overlay.core.vocabulary import Status


def collect(settings: Settings | None = None, check_contracts: bool = True, use_cache: bool = True) -> dict[str, Any]:
    settings = settings or Settings.from_env()
    installed = installed_from_metadata()
    version = resolve(settings.version_override)
    catalog = load_catalog(settings.hotfix_dirs)
    patches = catalog.patches
    npu = _npu_prediction(settings)
    cache = PrecheckCache(enabled=use_cache and check_contracts)
    decisions = would_apply(patches, Context(settings, version, catalog.blocked, simulated_npu=npu == "simulated"),
                            check_targets=check_contracts, refusal=cache.refusal)
    cache.save()
    errors = [str(e) for e in settings.problems]
    errors += [str(e) for e in toggles.validate(settings.enable, settings.disable, catalog.names())]
    rows = []
    for patch in patches:
        decision = decisions[patch.name]
        rows.append({**patch.declaration(), "relies_on": reliance.rows(patch),
                     "status": (Status.WOULD_APPLY if decision.applies else Status.SKIPPED).value,
                     "code": decision.reason.value, "reason": decision.text, "hint": decision.hint,
                     "problem": decision.is_problem})
    refused = [{"source": p.source, "path": p.path, "message": p.message} for p in catalog.problems]
    return {
        "overlay_enabled": settings.enabled,
        "strict": settings.strict,
        "host": socket.gethostname(),
        "vllm_version": str(version) if version else None,
        "vllm_installed": str(installed) if installed else None,
        "vllm_distribution": vllm_distribution_name(),
        "version_override": settings.version_override,
        "npu": npu,
        "errors": errors,
        "warnings": drops.dropped(),
        "refused": refused,
        "patches": [r for r in rows if not r["internal"]],
        "hooks": [r for r in rows if r["internal"]],
        "variables": [v.describe() for v in VARIABLES] + [v.describe() for v in catalog.variables()],
        "ok": not errors and not refused and not any(r["problem"] for r in rows),
    }


def _npu_prediction(settings: Settings) -> str | None:
    """What vLLM processes started with this environment will run on: "simulated" when the
    simulator is asked for and would install, "real" when torch_npu sees an NPU, else None (also
    when vLLM will not ask the overlay's platform plugin: ``drops``)."""
    if drops.platform_plugin_blocked():
        return None
    try:
        simulate = settings.enabled and read(SIMULATE_NPU)
    except ConfigError:
        simulate = False
    if simulate:
        from ascend_overlay.npu import sim

        if sim.refusal() is None:
            return "simulated"
    return "real" if requirements.npu_available() else None
