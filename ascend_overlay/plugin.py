"""The ``vllm.general_plugins`` door: reaches processes the other doors cannot (e.g. Ray workers
started without our ``PYTHONPATH``), still gated by ``VLLM_ASCEND_OVERLAY``.

vLLM calls general plugins from ``EngineArgs`` (main), ``EngineCore.__init__`` and
``WorkerWrapperBase.init_worker``. When this door is the first to activate the overlay in a worker
or engine core, the hook-point wrappers were installed too late for the call already running, so
the phase of that caller is fired from here.
"""

from __future__ import annotations

import sys

from ascend_overlay.patch import Phase

_CALLERS = {
    ("init_worker", "worker_base.py"): Phase.WORKER,
    ("__init__", "core.py"): Phase.ENGINE_CORE,
}


def register() -> None:
    from ascend_overlay import activation

    overlay = activation.activate(door="general_plugin")
    if overlay is None:
        return
    frame = sys._getframe(1)
    for _ in range(6):
        if frame is None:
            break
        key = (frame.f_code.co_name, frame.f_code.co_filename.rsplit("/", 1)[-1])
        phase = _CALLERS.get(key)
        if phase is not None and "vllm" in frame.f_code.co_filename:
            overlay.fire(phase)
            return
        frame = frame.f_back
