"""What the overlay relies on in vLLM without editing it, and whether a vLLM still has it.

A patch's contract is more than the attribute it edits: its replacement reads ``self.head_size``,
calls ``self._match_cos_sin_cache_dtype(query)``, imports ``vllm.envs``. The NPU platform overrides
``Platform`` methods and calls vLLM functions. ``derive`` lists those uses from source (plus what a
patch declares with ``PATCH.relies_on``); a lookup says what a vLLM has under each name, live
(``live``, at apply time) or from a source tree (``main2main.reliance_static``, for ``check`` and
``drift``); ``judge`` alone decides, so the two can only disagree where the code differs.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ascend_overlay.core.reliance.derive import declared_uses, overlay_modules, uses_of_module, uses_of_patch
from ascend_overlay.core.reliance.judge import judge
from ascend_overlay.core.reliance.model import Hit, Use, UseKind, Verdict, VerdictStatus

if TYPE_CHECKING:
    from ascend_overlay.core.patch import Patch

log = logging.getLogger("ascend_overlay")

__all__ = ["Hit", "Use", "Verdict", "check_live", "declared_uses", "judge", "overlay_modules",
           "uses_of_module", "uses_of_patch"]


def check_live(patch: Patch, *, import_modules: bool = True) -> list[Verdict]:
    """Every relied-on use of ``patch`` judged against the running vLLM (all verdicts, ok ones included).

    ``import_modules=False`` (an import-phase patch, applied from an import hook) never imports a
    module: a relied-on name in a module not imported yet is ``unverifiable``, not a failure.
    """
    from ascend_overlay.core.reliance.live import LiveLookup

    with gc_paused():
        return _check_live(patch, LiveLookup(import_modules))


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Reading vLLM's source builds hundreds of thousands of AST nodes, none of them in a cycle. In a
    process holding many objects (an engine core that imported Ray: ~600k) each collection that
    allocation triggers walks them all: measured 350 ms for one patch's check, 50 ms with collection
    paused. So the collector waits for the few milliseconds of the check (it is restored after)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check_live(patch: Patch, lookup: Any) -> list[Verdict]:
    try:
        uses = uses_of_patch(patch)
    except Exception as exc:  # noqa: BLE001 - reading source must never take vLLM down
        log.warning("ascend-overlay: cannot derive what %s relies on: %s: %s", patch.name, type(exc).__name__, exc)
        return []
    verdicts = []
    for use in uses:
        try:
            verdicts.append(judge(use, lookup.find(use.module, use.path)))
        except Exception as exc:  # noqa: BLE001 - an unexpected object is "cannot tell", never a crash
            verdicts.append(Verdict(use, VerdictStatus.UNVERIFIABLE, None, f"lookup failed: {type(exc).__name__}: {exc}"))
    return verdicts


def rows(patch: Patch) -> list[dict[str, Any]]:
    """Declared and derived relied-on names, as ``ascend-overlay list --json`` and the catalog page show them."""
    return [{"target": u.target, "how": u.how, "where": u.where, "text": u.text,
             "contract": u.shape if u.how is UseKind.DECLARED else None} for u in uses_of_patch(patch)]
