"""The ``vllm.general_plugins`` door: reaches processes the other doors cannot (e.g. Ray workers
started without our ``PYTHONPATH`` or package start-up line), still gated by ``VLLM_ASCEND_OVERLAY``.

vLLM calls general plugins from ``EngineArgs`` (main), ``EngineCore.__init__`` and
``WorkerWrapperBase.init_worker``. When this door is the first to activate the overlay inside one of
the last two, their hook-point wrappers were installed too late for the call already running, so
that call's phase is fired from here. Which callers those are is declared and pinned in
``hookpoints.PLUGIN_CALLERS``; this door knows nothing of vLLM itself.
"""

from __future__ import annotations

import sys

from ascend_overlay import activation, hookpoints, phases


def register() -> None:
    if activation.activate(door="general_plugin") is None:
        return
    caller = hookpoints.caller_phase(sys._getframe(1))
    if caller is not None:
        phase, target = caller
        phases.fire(phase, f"general plugin door, inside {target.partition(':')[2]}")
