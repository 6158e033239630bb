"""Activation: the one per-process bootstrap that every door converges on.

The doors are the ``.pth`` start-up line of an installed package, the ``sitecustomize`` hook that
``ascend-overlay run`` puts on ``PYTHONPATH``, vLLM's ``vllm.general_plugins`` entry point, and the
engine-core override's process target. Each calls ``activate()``, which does its work once per
process and only if ``VLLM_ASCEND_OVERLAY`` says so, then plugs the overlay into ``phases.fire``.

Spawned children start fresh and activate again through the same doors. Forked children inherit
the parent's patched modules; ``os.register_at_fork`` gives them a report of their own and keeps
them from applying anything twice.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from ascend_overlay.core import phases
from ascend_overlay.core.errors import ConfigError, OverlayError
from ascend_overlay.core.runtime import Overlay
from ascend_overlay.core.settings import ACTIVATE, STRICT, Settings
from ascend_overlay.core.vocabulary import LogLevel

log = logging.getLogger("ascend_overlay")

_overlay: Overlay | None = None
_lock = threading.RLock()
_fork_hook_installed = False
_failed = False             # an activation from the environment raised: reported once, not per door
_warned_unreadable = False  # VLLM_ASCEND_OVERLAY could not be read: said once per process, not per door
_LEVELS = {LogLevel.OFF: logging.CRITICAL + 1, LogLevel.INFO: logging.INFO, LogLevel.DEBUG: logging.DEBUG}


def current() -> Overlay | None:
    """The active overlay of this process, or None when it is off."""
    return _overlay if _overlay is not None and _overlay.active else None


def _configure_logging(settings: Settings) -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(asctime)s [ascend_overlay] %(message)s",
                                               "%m-%d %H:%M:%S"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(_LEVELS[settings.log_level])


def activate(door: str = "api", settings: Settings | None = None) -> Overlay | None:
    """Turn the overlay on in this process if its variable says so. Idempotent; never raises unless
    strict mode is on (a bootstrap error is reported and vLLM runs stock)."""
    global _overlay, _warned_unreadable, _failed
    with _lock:
        if _overlay is not None and _overlay.active:
            if door not in _overlay.report.doors:
                _overlay.report.doors.append(door)
            return _overlay
        from_env = settings is None
        if from_env and _failed:
            return None  # already reported by the first door; the next door would only repeat it
        settings = settings or Settings.from_env()
        if not settings.enabled:
            if settings.activation_problem is not None and not _warned_unreadable:
                _warned_unreadable = True
                _report_unreadable(settings.activation_problem)
            return None
        try:
            _configure_logging(settings)
            overlay = Overlay(settings)
            overlay.report.doors.append(door)
            _overlay = overlay
            _install_fork_hook()
            phases.plug(overlay.run_phase)
            overlay.start()
            return overlay
        except Exception as exc:
            _abandon()
            _failed = from_env
            if settings.strict:
                raise
            _report_not_active(exc)
            return None


def _abandon() -> None:
    """Take back what a failed activation did, so the process runs stock vLLM."""
    global _overlay
    failed, _overlay = _overlay, None
    phases.plug(None)
    if failed is not None:
        try:
            failed.deactivate()
        except OverlayError:
            pass  # in strict mode the activation's own error is the one to report


def _report_not_active(exc: BaseException) -> None:
    kind = "configuration error" if isinstance(exc, OverlayError) else f"bootstrap error ({type(exc).__name__})"
    sys.stderr.write(f"WARNING [ascend_overlay] overlay not active in pid {os.getpid()}: {kind}: {exc}; "
                     f"vLLM continues without it (set {STRICT}=1 to fail instead)\n")


def _report_unreadable(exc: ConfigError) -> None:
    """``VLLM_ASCEND_OVERLAY`` itself cannot be read: neither reading is safe to guess, so the overlay
    stays off whatever strict mode says, and the advice is the value to write, not strict mode."""
    sys.stderr.write(f"WARNING [ascend_overlay] overlay not active in pid {os.getpid()}: {exc}; vLLM continues "
                     f"without it: set {ACTIVATE}=1 to turn the overlay on, or {ACTIVATE}=0 (or unset it) for off\n")


def deactivate() -> None:
    """Undo every patch this process applied and switch the overlay off (tests, ``unpatch``)."""
    global _overlay
    with _lock:
        if _overlay is not None:
            phases.plug(None)
            overlay, _overlay = _overlay, None
            overlay.deactivate()


def _install_fork_hook() -> None:
    global _fork_hook_installed
    if not _fork_hook_installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _fork_hook_installed = True


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()  # a lock held by another parent thread at fork time would never free
    if _overlay is not None and _overlay.active:
        _overlay.adopt_fork()
