"""The one bootstrap every door converges on: sitecustomize, ``ascend-overlay run``, and vLLM's
``vllm.general_plugins`` entry point all call ``activate()``, which does its work once per process.

Spawned children start fresh and activate again through the same doors. Forked children inherit
the parent's patched modules; ``os.register_at_fork`` gives them a report of their own and keeps
them from applying anything twice.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TYPE_CHECKING

from ascend_overlay.errors import OverlayError
from ascend_overlay.settings import Settings

if TYPE_CHECKING:
    from ascend_overlay.runtime import Overlay

log = logging.getLogger("ascend_overlay")

_overlay: Overlay | None = None
_lock = threading.RLock()
_fork_hook_installed = False


def current() -> Overlay | None:
    """The active overlay of this process, or None when it is off."""
    return _overlay if _overlay is not None and _overlay.active else None


def _configure_logging(settings: Settings) -> None:
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(asctime)s [ascend_overlay] %(message)s",
                                           "%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.propagate = False
    log.setLevel({"off": logging.CRITICAL + 1, "info": logging.INFO, "debug": logging.DEBUG}[settings.log_level])


def activate(door: str = "api", settings: Settings | None = None) -> Overlay | None:
    """Turn the overlay on in this process if its variable says so. Idempotent; never raises unless
    ``VLLM_ASCEND_OVERLAY_STRICT`` is set (a bootstrap error is logged and vLLM runs stock)."""
    global _overlay
    with _lock:
        if _overlay is not None and _overlay.active:
            if door not in _overlay.report.doors:
                _overlay.report.doors.append(door)
            return _overlay
        strict = False
        try:
            settings = settings or Settings.from_env()
            strict = settings.strict
            if not settings.enabled:
                return None
            _configure_logging(settings)
            from ascend_overlay.hookpoints import HOOK_PATCHES
            from ascend_overlay.runtime import Overlay

            overlay = Overlay(settings, hook_patches=HOOK_PATCHES)
            overlay.report.doors.append(door)
            from ascend_overlay import toggles

            for error in toggles.validate(settings.enable, settings.disable, overlay.catalog.names()):
                overlay._fail(error)
            _overlay = overlay
            _install_fork_hook()
            overlay.arm_import_hooks()
            return overlay
        except Exception as exc:
            if strict or _strict_from_env():
                raise
            _report_bootstrap_error(exc)
            return None


def _strict_from_env() -> bool:
    return os.environ.get("VLLM_ASCEND_OVERLAY_STRICT", "").strip().lower() in ("1", "true", "yes", "on")


def _report_bootstrap_error(exc: BaseException) -> None:
    kind = "configuration error" if isinstance(exc, OverlayError) else f"bootstrap error ({type(exc).__name__})"
    sys.stderr.write(f"WARNING [ascend_overlay] overlay not active in pid {os.getpid()}: {kind}: {exc}; "
                     f"vLLM continues without it (set VLLM_ASCEND_OVERLAY_STRICT=1 to fail instead)\n")


def fire(phase: str) -> None:
    """Fire ``phase`` in this process's overlay, if it is on: the one entrance for hook points,
    doors and tools (the pytest plugin ``ascend_overlay.testing``). A phase fires once per process."""
    overlay = current()
    if overlay is not None:
        overlay.fire(phase)


def deactivate() -> None:
    """Undo every patch this process applied and switch the overlay off (tests, ``unpatch``)."""
    global _overlay
    with _lock:
        if _overlay is not None:
            _overlay.deactivate()
            _overlay = None


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
