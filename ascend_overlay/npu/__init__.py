"""Ascend NPU support for stock vLLM: the out-of-tree platform, its worker, and the NPU kernels.

vLLM calls ``platform_plugin()`` (entry point ``vllm.platform_plugins:ascend_overlay_npu``) twice in
every process and again in every spawned child, on every machine where this package is installed,
NPU or not. So the answer "not here" must cost next to nothing: an environment read and one
``find_spec``, with no torch import. Only when the overlay is switched on, ``torch_npu`` imports and
an NPU is visible does it name the platform class; vLLM then imports ``ascend_overlay.npu.platform``.

With ``VLLM_ASCEND_OVERLAY_SIMULATE_NPU=1`` (``ascend-overlay run --simulate-npu``) the plugin first
installs the simulated NPU of ``ascend_overlay.npu.sim`` in the process, so that every vLLM process
(main, engine core, each worker) runs the NPU platform on a CPU machine; the simulator refuses to
install where a real torch_npu is importable, and the plugin then goes on as without the variable.
A simulator variable with a bad value (the switch itself included) stops the process with one line,
strict or not: the user asked for an NPU, and vLLM, which swallows a plugin's exceptions, would
otherwise serve on another platform.

Nothing in this package file imports torch or vLLM; ``platform``, ``worker``, ``ops`` and ``sim`` do,
and are imported only where vLLM (or a patch, at call time) needs them.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from typing import NoReturn

# The one switch of the simulated NPU (documented in docs/npu.md, declared in settings.py); never on by default.
from ascend_overlay.core.settings import SIMULATE_NPU

PLATFORM_QUALNAME = "ascend_overlay.npu.platform.NPUPlatform"
WORKER_QUALNAME = "ascend_overlay.npu.worker.NPUWorker"

# vLLM CustomOp names (``CustomOp.register(name)``) the NPU kernels serve; the platform enables them
# so their objects dispatch to ``forward_oot``, which the worker-phase patches point at ``ops``.
NPU_CUSTOM_OPS = ("silu_and_mul", "rms_norm", "rotary_embedding")


log = logging.getLogger("ascend_overlay")
_simulator_refusal_logged = False
_simulation_ignored_said = False


def npu_mode() -> str | None:
    """``"simulated"``, ``"real"`` or None: the NPU this process runs with, for its report.

    Reads only what is already loaded (no import of torch or torch_npu), so it costs nothing on
    processes without an NPU.
    """
    sim = sys.modules.get("ascend_overlay.npu.sim")
    if sim is not None and sim.installed():
        return "simulated"
    loaded = sys.modules.get("torch_npu")
    if loaded is not None and not getattr(loaded, "SIMULATED", False):
        from ascend_overlay.core.requirements import npu_available

        return "real" if npu_available() else None  # torch_npu is loaded: this check is cached and cheap
    return None


def platform_plugin() -> str | None:
    """The NPU platform's qualified name when this process should run on an NPU, else None.

    The overlay's own switch is checked first: with ``VLLM_ASCEND_OVERLAY`` off, installing this
    package must not change which platform vLLM picks (and must not collide with another NPU plugin
    such as vllm-ascend, since vLLM refuses two active out-of-tree platforms).
    """
    from ascend_overlay.core.errors import ConfigError
    from ascend_overlay.core.settings import ACTIVATE, read

    try:
        if not read(ACTIVATE):
            _say_simulation_ignored()
            return None
    except ConfigError:
        return None  # the bootstrap reports the bad value; a platform probe is not the place to fail
    if _simulate() and _start_simulator():
        return PLATFORM_QUALNAME
    if importlib.util.find_spec("torch_npu") is None:
        return None
    from ascend_overlay.core.requirements import npu_available

    return PLATFORM_QUALNAME if npu_available() else None


def _say_simulation_ignored() -> None:
    """The simulated NPU asked for with the overlay off would be dropped silently: say so, once per
    process (with the overlay off, this probe is the only part of the overlay that runs)."""
    global _simulation_ignored_said
    import os

    if _simulation_ignored_said or not os.environ.get(SIMULATE_NPU):
        return
    _simulation_ignored_said = True
    from ascend_overlay.core.drops import dropped

    for line in dropped():
        if line.startswith(SIMULATE_NPU + "="):
            log.warning("ascend-overlay: %s", line)


def _simulate() -> bool:
    from ascend_overlay.core.errors import ConfigError
    from ascend_overlay.core.settings import read

    try:
        return read(SIMULATE_NPU)
    except ConfigError as exc:
        _cannot_start(str(exc))


def _start_simulator() -> bool:
    """Install the simulated NPU in this process; False (logged once) where a real NPU is here."""
    from ascend_overlay.npu import sim

    try:
        sim.install()
    except sim.SimulatorMisconfigured as exc:
        _cannot_start(str(exc))
    except sim.SimulatorRefused as exc:
        _refused(str(exc))
        return False
    return True


def _cannot_start(message: str) -> NoReturn:
    """A simulator variable the simulator cannot run with: the process stops, with this one line."""
    raise SystemExit(f"ascend-overlay: simulated NPU cannot start: {message}")


def _refused(message: str) -> None:
    """A refused simulation is an operator's mistake: said once per process, and in strict mode
    the end of it (vLLM swallows exceptions from platform plugins, so strict exits)."""
    global _simulator_refusal_logged
    from ascend_overlay.core.errors import ConfigError
    from ascend_overlay.core.settings import STRICT, read

    try:
        strict = read(STRICT)
    except ConfigError:
        strict = False
    if strict:
        raise SystemExit(f"ascend-overlay (strict): simulated NPU refused: {message}")
    if not _simulator_refusal_logged:
        _simulator_refusal_logged = True
        log.error("ascend-overlay: simulated NPU refused: %s", message)
