"""Apply: the overlay's state in one process, and the one path every patch takes into vLLM.

For every patch, whatever its phase or source: plan (``planning.plan``), precheck its targets, apply
all its edits atomically (``applier``), record the outcome (``report``). Phases reach this module
only through ``phases.fire``, which activation plugs into ``Overlay.run_phase``. Nothing here raises
into vLLM unless strict mode was asked for; every problem is reported with the process's pid and
role and the next step.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

from ascend_overlay.core import applier, drops, import_hooks, report, toggles
from ascend_overlay.core.catalog import Catalog, load_catalog
from ascend_overlay.core.errors import OverlayError, PatchApplyError
from ascend_overlay.core.patch import Patch
from ascend_overlay.core.planning import Context, plan
from ascend_overlay.core.settings import REPORT, VERSION, Settings
from ascend_overlay.core.vllm_version import installed_from_metadata, resolve, vllm_distribution_name
from ascend_overlay.core.vocabulary import Decision, LogLevel, Phase, Reason, Status

log = logging.getLogger("ascend_overlay")

# Phases after which a process logs its one summary line: each process has exactly one of them.
ROLE_PHASES = (Phase.PLATFORM, Phase.ENGINE_CORE, Phase.WORKER)


class Overlay:
    def __init__(self, settings: Settings, catalog: Catalog | None = None) -> None:
        self.settings = settings
        self.version = resolve(settings.version_override)
        self.catalog = catalog if catalog is not None else load_catalog(settings.hotfix_dirs)
        self.fired: set[Phase] = set()
        self.applied: dict[str, applier.AppliedPatch] = {}
        self.active = True
        self._lock = threading.RLock()
        self._import_hooks: list[tuple[str, Any]] = []
        self._report_refused = False                 # the report path is not the user's own file
        self._report_warned: set[type[OSError]] = set()  # one warning per kind of report failure
        self._report_wait_left = report.LOCK_WAIT_S  # the lock wait this process may still spend
        self.report = report.ProcessReport(vllm=str(self.version) if self.version else None,
                                           vllm_dist=vllm_distribution_name(), strict=settings.strict)

    @property
    def context(self) -> Context:
        return Context(self.settings, self.version, self.catalog.blocked, self.is_applied)

    def start(self) -> None:
        """Report what is wrong before anything is applied, then arm the import phase."""
        for error in self.settings.problems:
            self.problem("setting", "environment", str(error), error)
        for problem in self.catalog.problems:
            self.problem(problem.source, problem.path, problem.message,
                         OverlayError(f"{problem.path}: patch refused: {problem.message}"))
        known = self.catalog.names()
        for error in toggles.validate(self.settings.enable, self.settings.disable, known):
            self.problem("setting", "environment", str(error), error)
        for line in drops.dropped():
            log.warning("ascend-overlay [%s]: %s", self._who(), line)
        installed = installed_from_metadata()
        if self.settings.version_override and self.version != installed:
            log.warning("ascend-overlay [%s]: %s=%s overrides the installed vLLM %s (%s): patches are gated on %s",
                        self._who(), VERSION, self.settings.version_override, installed or "(none)",
                        vllm_distribution_name() or "-", self.version)
        self.arm_import_hooks()

    # -- import phase --------------------------------------------------------------------------

    def arm_import_hooks(self) -> None:
        """Apply each import-phase patch the moment its module is imported (now, if it already is)."""
        for patch in self.catalog.for_phase(Phase.IMPORT):  # hook points first: the catalog loads them first
            decision = plan(patch, self.context)
            if not decision.applies:
                self._skip(patch, decision)
                continue
            module = patch.import_module
            assert module is not None  # an import-phase patch has edits, all in one module
            self.record(patch, Status.PENDING, Decision(True, Reason.WAITING, f"waiting for import of {module}"))
            hook = self._import_hook_for(patch)
            self._import_hooks.append((module, hook))
            import_hooks.when_imported(module, hook)

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
                self.apply(patch)
                if previous is not None and patch.name in self.applied and self.applied[patch.name] is not previous:
                    self.applied[patch.name].changes[:0] = previous.changes
                    self.applied[patch.name].module = module
                if self.fired and not patch.internal:
                    self.emit("import")
            except Exception as exc:
                if self.settings.strict:
                    raise
                log.error("ascend-overlay [%s]: import hook for %s failed: %s", self._who(), patch.name, exc)
        return on_import

    # -- phases --------------------------------------------------------------------------------

    def run_phase(self, phase: Phase, origin: str = "") -> None:
        """Apply every patch of ``phase``; at most once per process (``phases.fire`` calls this)."""
        with self._lock:  # vLLM may reach two hook points from two threads; the phase runs once
            if phase in self.fired or not self.active:
                return
            self.fired.add(phase)
            self.report.phases.append(phase)
            self.report.fired_from[phase] = origin or "-"
            for patch in self.catalog.for_phase(phase):
                self.apply(patch)
        self.emit(f"phase:{phase.value}")
        if phase in ROLE_PHASES and self.settings.log_level is not LogLevel.OFF:
            log.info("ascend-overlay: %s", self.report.summary_line())

    def is_applied(self, name: str) -> bool:
        return name in self.applied

    def apply(self, patch: Patch) -> bool:
        """Plan, precheck and apply one patch, then record the outcome. Applying twice is a no-op."""
        if patch.name in self.applied:
            return True
        decision = plan(patch, self.context)
        if not decision.applies:
            return self._skip(patch, decision)
        checked = applier.precheck(patch)
        if checked.refusal is not None:
            return self._skip(patch, checked.refusal)
        try:
            done = applier.apply(patch, checked.resolved)
        except PatchApplyError as exc:
            failure = Decision(False, Reason.ERROR, str(exc),
                               "the patch raised while applying; every edit it made was rolled back")
            self.record(patch, Status.FAILED, failure)
            self.problem(patch.source, patch.file or patch.name, f"patch {patch.name} failed: {exc}", exc)
            return False
        if patch.import_module:
            done.module = sys.modules.get(patch.import_module)
        self.applied[patch.name] = done
        status = Status.APPLIED
        if done.aliases:
            decision = Decision(True, decision.reason, f"{decision.text}; rebound stale aliases: {', '.join(done.aliases)}")
        if done.stale:
            status = Status.PARTIAL
            decision = Decision(True, decision.reason,
                                f"{decision.text}; copies taken before the patch still hold the original: "
                                f"{', '.join(done.stale)}",
                                "those modules imported the name with `from ... import` before the overlay "
                                "patched it; patch them too, or import the module instead of the name")
        self.record(patch, status, decision, aliases=done.aliases, stale=done.stale)
        if done.stale:
            log.warning("ascend-overlay [%s]: %s is partial: %s", self._who(), patch.name, decision.sentence())
        return True

    def _skip(self, patch: Patch, decision: Decision) -> bool:
        self.record(patch, Status.SKIPPED, decision)
        if decision.reason is Reason.OBSOLETE:
            log.warning("ascend-overlay [%s]: hotfix %s is obsolete: %s", self._who(), patch.name, decision.sentence())
        if decision.is_problem:
            self.problem(patch.source, patch.file or patch.name, f"patch {patch.name} skipped: {decision.sentence()}",
                         PatchApplyError(f"patch {patch.name!r} skipped: {decision.sentence()}"))
        return False

    def unpatch(self, name: str) -> None:
        done = self.applied.pop(name, None)
        if done is not None:
            done.undo()
            self.record(done.patch, Status.UNPATCHED, Decision(False, Reason.UNDONE, "undone"))

    def deactivate(self) -> None:
        """Undo every applied patch, newest first; import hooks are removed."""
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
            self.problem("overlay", "deactivate", "could not fully undo: " + "; ".join(errors),
                         PatchApplyError("could not fully undo: " + "; ".join(errors)))

    # -- fork ----------------------------------------------------------------------------------

    def adopt_fork(self) -> None:
        """In a forked child: keep the parent's patches (they are already in memory), start a new report."""
        parent = self.report
        self._lock = threading.RLock()  # a lock held by another parent thread at fork time never frees
        self._report_wait_left = report.LOCK_WAIT_S  # a new process: its own bounded wait
        self.report = report.ProcessReport(vllm=parent.vllm, vllm_dist=parent.vllm_dist, strict=parent.strict,
                                           doors=["fork"], forked_from=parent.pid,
                                           problems=list(parent.problems))
        for name, outcome in parent.outcomes.items():
            status = Status.INHERITED if outcome.status.in_effect else outcome.status
            self.report.outcomes[name] = report.Outcome(name, outcome.phase, status, outcome.code, outcome.reason,
                                                        outcome.hint, outcome.source, outcome.internal,
                                                        list(outcome.aliases), list(outcome.stale))

    # -- reporting -----------------------------------------------------------------------------

    def record(self, patch: Patch, status: Status, decision: Decision, aliases: list[str] | None = None,
               stale: list[str] | None = None) -> None:
        self.report.record(report.Outcome.of(patch, status, decision, aliases, stale))
        if self.settings.log_level is LogLevel.DEBUG:
            log.debug("ascend-overlay [%s]: %s %s: %s", self._who(), status.value, patch.name, decision.sentence())

    def problem(self, source: str, path: str, message: str, exc: Exception) -> None:
        """Something an operator must fix: raised in strict mode (``exc``, whose text is also what the
        log says), else recorded (``message``, for tools) and logged with pid and role."""
        entry = {"source": source, "path": path, "message": message}
        if entry not in self.report.problems:
            self.report.problems.append(entry)
        if self.settings.strict:
            raise exc
        log.warning("ascend-overlay [%s]: %s", self._who(), exc)

    def _who(self) -> str:
        return f"pid={self.report.pid} role={self.report.role}"

    def emit(self, event: str) -> None:
        """Append this process's snapshot to the report file, if one was asked for. A path that is not
        the user's own file is refused once and the run goes on without a report; the report's lock
        is waited for at most ``report.LOCK_WAIT_S`` over the whole process, so no one holding it can
        hold up a start-up for longer."""
        path = self.settings.report_path
        if not path or self._report_refused:
            return
        started = time.monotonic()
        try:
            report.append_jsonl(path, self.report.snapshot(event), wait=self._report_wait_left)
        except report.ReportRefused as exc:
            self._report_refused = True
            self._report_warning(f"report refused: {path} ({REPORT}): {exc}; the run goes on without a report", exc)
        except report.ReportBusy as exc:
            self._report_warning(f"report line skipped: {path} ({REPORT}): {exc}", exc, strict_raises=False)
        except OSError as exc:
            self._report_warning(f"cannot write the report to {path} ({REPORT}): {exc}", exc)
        finally:
            self._report_wait_left = max(0.0, self._report_wait_left - (time.monotonic() - started))

    def _report_warning(self, message: str, exc: OSError, *, strict_raises: bool = True) -> None:
        if self.settings.strict and strict_raises:
            raise OverlayError(message) from exc
        if type(exc) not in self._report_warned:
            self._report_warned.add(type(exc))
            # Printed whatever the log level: the report is output the user asked for.
            sys.stderr.write(f"WARNING [ascend_overlay] [{self._who()}] {message}\n")
