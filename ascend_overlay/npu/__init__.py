"""Ascend NPU support for stock vLLM: the out-of-tree platform, its worker, and the NPU kernels.

vLLM calls ``platform_plugin()`` (entry point ``vllm.platform_plugins:ascend_overlay_npu``) twice in
every process and again in every spawned child, on every machine where this package is installed,
NPU or not. So the answer "not here" must cost next to nothing: an environment read and one
``find_spec``, with no torch import. Only when the overlay is switched on, ``torch_npu`` imports and
an NPU is visible does it name the platform class; vLLM then imports ``ascend_overlay.npu.platform``.

Nothing in this package file imports torch or vLLM; ``platform``, ``worker`` and ``ops`` do, and are
imported only where vLLM (or a patch, at call time) needs them.
"""

from __future__ import annotations

import importlib.util

PLATFORM_QUALNAME = "ascend_overlay.npu.platform.NPUPlatform"
WORKER_QUALNAME = "ascend_overlay.npu.worker.NPUWorker"

# vLLM CustomOp names (``CustomOp.register(name)``) the NPU kernels serve; the platform enables them
# so their objects dispatch to ``forward_oot``, which the worker-phase patches point at ``ops``.
NPU_CUSTOM_OPS = ("silu_and_mul", "rms_norm", "rotary_embedding")


def platform_plugin() -> str | None:
    """The NPU platform's qualified name when this process should run on an NPU, else None.

    The overlay's own switch is checked first: with ``VLLM_ASCEND_OVERLAY`` off, installing this
    package must not change which platform vLLM picks (and must not collide with another NPU plugin
    such as vllm-ascend, since vLLM refuses two active out-of-tree platforms).
    """
    from ascend_overlay.errors import ConfigError
    from ascend_overlay.settings import ACTIVATE, read

    try:
        if not read(ACTIVATE):
            return None
    except ConfigError:
        return None  # the bootstrap reports the bad value; a platform probe is not the place to fail
    if importlib.util.find_spec("torch_npu") is None:
        return None
    from ascend_overlay.requirements import npu_available

    return PLATFORM_QUALNAME if npu_available() else None
