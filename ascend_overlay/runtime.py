"""The overlay's state in one process: which patches exist, which phases fired, what was applied.

One ``Overlay`` exists per activated process. Phases are fired into it from vLLM's hook points
(``hookpoints.py``); it decides each patch of the phase (``gate.py``), applies it atomically
(``applier.py``) and records the outcome (``report.py``). Nothing here raises into vLLM unless
strict mode was asked for.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from ascend_overlay import applier, import_hooks, report
from ascend_overlay.catalog import Catalog, load_catalog
from ascend_overlay.errors import OverlayError, PatchApplyError
from ascend_overlay.gate import decide
from ascend_overlay.patch import Patch, Phase
from ascend_overlay.settings import Settings
from ascend_overlay.vllm_version import installed_vllm_version, vllm_distribution_name

log = logging.getLogger("ascend_overlay")

# Phases after which a process logs its one summary line: each process has exactly one of them.
ROLE_PHASES = (Phase.PLATFORM, Phase.ENGINE_CORE, Phase.WORKER)


class Overlay:
    def __init__(self, settings: Settings, catalog: Catalog | None = None,
                 hook_patches: list[Patch] | None = None) -> None:
        self.settings = settings
        self.version = installed_vllm_version()
        self.catalog = catalog if catalog is not None else load_catalog(settings.hotfix_dirs)
        self.hook_patches = hook_patches or []
        self.fired: set[str] = set()
        self.applied: dict[str, applier.AppliedPatch] = {}
        self.active = True
        self._lock = threading.RLock()
        self._import_hooks: list[tuple[str, Any]] = []
        self.report = report.ProcessReport(vllm=str(self.version) if self.version else None,
                                           vllm_dist=vllm_distribution_name())
        for problem in self.catalog.problems:
            self.report.problems.append({"source": problem.source, "path": problem.path, "message": problem.message})
            self._fail(OverlayError(f"patch refused: {problem.path}: {problem.message}"))

    # -- import phase --------------------------------------------------------------------------

    def arm_import_hooks(self) -> None:
        """Apply each import-phase patch the moment its module is imported (now, if it already is)."""
        for patch in self.hook_patches + self.catalog.for_phase(Phase.IMPORT):
            if patch.source != "overlay":
                decision = decide(patch, self.catalog, self.settings, self.version, self.is_applied)
                if not decision.applies:
                    self._record(patch, "skipped", decision.reason)
                    continue
            self._record(patch, "pending", f"waiting for import of {patch.import_module}")
            hook = self._import_hook_for(patch)
            self._import_hooks.append((patch.import_module, hook))
            import_hooks.when_imported(patch.import_module, hook)

    def _import_hook_for(self, patch: Patch) -> Any:
        def on_import(module: Any) -> None:
            # A hook must never fail the import of a vLLM module, so errors stop here (unless strict).
            if not self.active:
                return
            try:
                previous = self.applied.get(patch.name)
                if previous is not None and previous.module is not module:
                    # The module was imported anew: patch the new object, keep the old undo records.
                    del self.applied[patch.name]
                self.apply(patch, decided=True)
                if previous is not None and patch.name in self.applied and self.applied[patch.name] is not previous:
                    self.applied[patch.name].changes[:0] = previous.changes
                    self.applied[patch.name].module = module
                if self.fired and patch.source != "overlay":
                    self.emit("import")
            except Exception as exc:
                if self.settings.strict:
                    raise
                log.error("ascend-overlay: import hook for %s failed: %s", patch.name, exc)
        return on_import

    # -- phases --------------------------------------------------------------------------------

    def fire(self, phase: Phase | str) -> None:
        """Apply every patch of ``phase``; at most once per process, whoever calls."""
        phase = Phase(phase)
        with self._lock:  # vLLM may reach two hook points from two threads; the phase runs once
            if phase.value in self.fired or not self.active:
                return
            self.fired.add(phase.value)
            self.report.phases.append(phase.value)
            for patch in self.catalog.for_phase(phase):
                self.apply(patch)
        self.emit(f"phase:{phase.value}")
        if phase in ROLE_PHASES and self.settings.log_level != "off":
            log.info("ascend-overlay: %s", self.report.summary_line())

    def is_applied(self, name: str) -> bool:
        return name in self.applied

    def apply(self, patch: Patch, *, decided: bool = False) -> bool:
        """Decide, check and apply one patch; record the outcome. Applying twice is a no-op."""
        if patch.name in self.applied:
            return True
        if not decided and patch.source != "overlay":
            decision = decide(patch, self.catalog, self.settings, self.version, self.is_applied)
            if not decision.applies:
                self._record(patch, "skipped", decision.reason)
                return False
        try:
            resolved = applier.precheck(patch)
        except applier.TargetMissing as exc:
            return self._skip_for(patch, f"missing: {exc}")
        except applier.DriftError as exc:
            return self._skip_for(patch, f"drift: {exc}")
        try:
            done = applier.apply(patch, resolved)
        except PatchApplyError as exc:
            self._record(patch, "failed", str(exc))
            self._fail(exc)
            return False
        if patch.import_module:
            done.module = sys.modules.get(patch.import_module)
        self.applied[patch.name] = done
        reason = f"rebound stale aliases: {', '.join(done.aliases)}" if done.aliases else ""
        self._record(patch, "applied", reason, aliases=done.aliases)
        return True

    def _skip_for(self, patch: Patch, reason: str) -> bool:
        self._record(patch, "skipped", reason)
        self._fail(PatchApplyError(f"patch {patch.name!r} skipped: {reason}"))
        return False

    def unpatch(self, name: str) -> None:
        done = self.applied.pop(name, None)
        if done is not None:
            done.undo()
            self._record(done.patch, "skipped", "unpatched")

    def deactivate(self) -> None:
        """Undo every applied patch, newest first; import hooks stay registered but go quiet."""
        self.active = False
        for module_name, hook in self._import_hooks:
            import_hooks.remove(module_name, hook)
        self._import_hooks.clear()
        errors = []
        for name in reversed(list(self.applied)):
            try:
                self.unpatch(name)
            except PatchApplyError as exc:  # keep undoing the others; say what could not be restored
                errors.append(f"{name}: {exc}")
        if errors:
            self._fail(PatchApplyError("could not fully undo: " + "; ".join(errors)))

    # -- fork ----------------------------------------------------------------------------------

    def adopt_fork(self) -> None:
        """In a forked child: keep the parent's patches (they are already in memory), start a new report."""
        parent = self.report
        self._lock = threading.RLock()  # a lock held by another parent thread at fork time never frees
        self.report = report.ProcessReport(vllm=parent.vllm, vllm_dist=parent.vllm_dist,
                                           doors=["fork"], forked_from=parent.pid,
                                           problems=list(parent.problems))
        for name, outcome in parent.outcomes.items():
            status = "inherited" if outcome.status == "applied" else outcome.status
            self.report.outcomes[name] = report.Outcome(name, outcome.phase, status, outcome.reason,
                                                        outcome.source, list(outcome.aliases))

    # -- reporting -----------------------------------------------------------------------------

    def _record(self, patch: Patch, status: str, reason: str, aliases: list[str] | None = None) -> None:
        if reason.startswith("obsolete") and patch.name not in self.report.outcomes:
            log.warning("ascend-overlay: hotfix %s is obsolete: %s", patch.name, reason)
        self.report.record(report.Outcome(patch.name, patch.phase.value, status, reason, patch.source,
                                          list(aliases or [])))

    def _fail(self, exc: Exception) -> None:
        if self.settings.strict:
            raise exc
        log.warning("ascend-overlay: %s", exc)

    def emit(self, event: str) -> None:
        if self.settings.report_path:
            try:
                report.append_jsonl(self.settings.report_path, self.report.snapshot(event))
            except OSError as exc:
                log.warning("ascend-overlay: cannot write report to %s: %s", self.settings.report_path, exc)
