"""The ``vllm.general_plugins`` door: reaches processes the other doors cannot (e.g. Ray workers
started without our ``PYTHONPATH`` or package start-up line), still gated by ``VLLM_ASCEND_OVERLAY``.

vLLM calls general plugins from ``EngineArgs`` (main), ``EngineCore.__init__`` and
``WorkerWrapperBase.init_worker``. When this door is the first to activate the overlay inside one of
the last two, their hook points were installed too late for the call already running, so that call's
phase is fired from here. ``PLUGIN_CALLERS`` declares those callers by target (the hook patches that
wrap the same targets pin their shapes, and declare that they rely on ``load_general_plugins``), and
``caller_phase`` recognises them by the identity of their code objects, never by names or file names.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

from ascend_overlay.core import phases
from ascend_overlay.core.vocabulary import Phase
from ascend_overlay.doors import activation

# vLLM 0.32/0.33 call ``vllm.plugins.load_general_plugins`` from these hook points (and from
# EngineArgs, where the platform phase follows anyway): target -> the phase that call belongs to.
PLUGIN_CALLERS: dict[str, Phase] = {
    "vllm.v1.worker.worker_base:WorkerWrapperBase.init_worker": Phase.WORKER,
    "vllm.v1.engine.core:EngineCore.__init__": Phase.ENGINE_CORE,
}
_MAX_DEPTH = 8


def register() -> None:
    if activation.activate(door="general_plugin") is None:
        return
    caller = caller_phase(sys._getframe(1))
    if caller is not None:
        phase, target = caller
        phases.fire(phase, f"general plugin door, inside {target.partition(':')[2]}")


def _code_of(target: str) -> Any:
    """The code object of a caller's original function, from the loaded module (never importing)."""
    module_name, _, path = target.partition(":")
    obj: Any = sys.modules.get(module_name)
    for name in path.split("."):
        obj = getattr(obj, name, None)
    while hasattr(obj, "__wrapped__"):  # the worker and engine-core hook points wrap these very functions
        obj = obj.__wrapped__
    return getattr(obj, "__code__", None)


def caller_phase(frame: FrameType | None) -> tuple[Phase, str] | None:
    """The phase and target of the declared hook point running in ``frame`` or just above it."""
    codes = {code: (phase, target) for target, phase in PLUGIN_CALLERS.items()
             if (code := _code_of(target)) is not None}
    for _ in range(_MAX_DEPTH):
        if frame is None:
            return None
        found = codes.get(frame.f_code)
        if found is not None:
            return found
        frame = frame.f_back
    return None
