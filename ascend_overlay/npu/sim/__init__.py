"""A simulated Ascend NPU: the whole NPU path of the overlay, served on any CPU machine.

Switched on only explicitly, with ``VLLM_ASCEND_OVERLAY_SIMULATE_NPU=1`` (``ascend-overlay run
--simulate-npu`` sets it) next to ``VLLM_ASCEND_OVERLAY=1``. ``install()`` then gives the process:

* a torch device ``npu`` (``device``): torch's PrivateUse1 backend served from Python on CPU memory;
* ``torch.npu`` (``runtime``), and what torch asks of a device's C++ extension (``torch_api``:
  ``torch.accelerator``, ``torch.Event``, ``torch.Generator``);
* a ``torch_npu`` stand-in (``module``) with the kernels the overlay calls (``kernels``), counted
  per call (``counters``);
* ``hccl`` as a torch.distributed backend for NPU tensors, carried over gloo (``hccl``).

The NPU platform plugin installs it in every vLLM process (main, engine core, each worker), before
vLLM resolves its platform. It never shadows a real NPU: where a real torch_npu is installed,
installing refuses (``SimulatorRefused``). A simulator variable with a value it cannot run with
(``ASCEND_RT_VISIBLE_DEVICES``, the stats and capture directories) refuses too
(``SimulatorMisconfigured``), before anything is installed, so a process is never half-simulated.

The simulator proves the NPU path's plumbing and numerics as vLLM runs it: the platform, worker,
model runner, attention backend and kernel patches on a device that is not CUDA and not CPU. It
cannot say anything about kernel speed, real device memory, or ACL graphs.
"""

from __future__ import annotations

import importlib.util
import logging
import os

from ascend_overlay.core.errors import OverlayError

log = logging.getLogger("ascend_overlay")

VISIBLE_DEVICES_ENV = "ASCEND_RT_VISIBLE_DEVICES"
# The simulated machine: an 8-card Ascend server (as an Atlas 800 A2). ASCEND_RT_VISIBLE_DEVICES
# selects among them exactly as it does on hardware.
PHYSICAL_DEVICES = 8


class SimulatorRefused(OverlayError):
    """The simulator will not install here; the message says why and what to do."""


class SimulatorMisconfigured(SimulatorRefused):
    """A simulator variable has a value the simulator cannot run with. The user asked for an NPU, so
    this fails start-up (strict or not) rather than letting vLLM fall back to another platform."""


_installed = False


def installed() -> bool:
    return _installed


def real_torch_npu_origin() -> str | None:
    """Where a real torch_npu lives, if this interpreter can import one (without importing it)."""
    import sys

    loaded = sys.modules.get("torch_npu")
    if loaded is not None:
        return None if getattr(loaded, "SIMULATED", False) else (getattr(loaded, "__file__", None) or "loaded")
    try:
        spec = importlib.util.find_spec("torch_npu")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    return spec.origin or next(iter(spec.submodule_search_locations or []), None) or "installed"


def _real_npu_refusal() -> str | None:
    origin = real_torch_npu_origin()
    if origin is None:
        return None
    return (f"a real torch_npu is importable here ({origin}); the NPU simulator never shadows a real NPU. "
            f"Unset VLLM_ASCEND_OVERLAY_SIMULATE_NPU (or drop --simulate-npu) to use the real one, or simulate "
            f"in an environment without torch_npu.")


def misconfiguration(environ: dict[str, str] | os._Environ | None = None) -> str | None:
    """The first simulator variable of ``environ`` (default: this process's) whose value the simulator
    cannot run with, as one line; None when all are usable."""
    from ascend_overlay.core.errors import ConfigError
    from ascend_overlay.core.settings import SIMULATE_NPU_CAPTURE, SIMULATE_NPU_STATS, read

    env = os.environ if environ is None else environ
    try:
        visible_device_count(env)
    except SimulatorRefused as exc:
        return str(exc)
    for name in (SIMULATE_NPU_STATS, SIMULATE_NPU_CAPTURE):
        try:
            read(name, env)
        except ConfigError as exc:
            return str(exc)
    return None


def refusal(environ: dict[str, str] | os._Environ | None = None) -> str | None:
    """Why the simulator must not install with this environment, or None when it may."""
    return misconfiguration(environ) or _real_npu_refusal()


def visible_device_count(environ: dict[str, str] | os._Environ | None = None) -> int:
    """How many simulated NPUs this process sees: all of them, or those ASCEND_RT_VISIBLE_DEVICES lists."""
    env = os.environ if environ is None else environ
    raw = env.get(VISIBLE_DEVICES_ENV)
    if raw is None or not raw.strip():
        return PHYSICAL_DEVICES
    ids = [part.strip() for part in raw.split(",")]
    try:
        numbers = [int(part) for part in ids]
    except ValueError:
        numbers = []
    if not numbers or any(n < 0 or n >= PHYSICAL_DEVICES for n in numbers) or len(set(numbers)) != len(numbers):
        raise SimulatorRefused(f"{VISIBLE_DEVICES_ENV}={raw!r} is not valid for the simulated NPU: a comma list of "
                               f"distinct device ids in 0..{PHYSICAL_DEVICES - 1}")
    return len(numbers)


def _run_compiled_functions_eagerly() -> None:
    """vLLM wraps small helpers in ``torch.compile`` even when the model runs eager (with the
    platform's ``simple_compile_backend``, "eager" on the NPU). TorchDynamo cannot trace the
    simulated device's Python tensors, so on the simulator compiled functions run as plain Python,
    which is what the eager backend computes. (Graph capture is out of the simulator's reach.)"""
    import torch._dynamo

    torch._dynamo.config.disable = True


def install() -> None:
    """Make this process run on the simulated NPU. Idempotent; raises ``SimulatorMisconfigured``
    (a bad simulator variable) or ``SimulatorRefused`` (a real NPU is here), with nothing installed."""
    global _installed
    if _installed:
        return
    problem = misconfiguration()
    if problem is not None:
        raise SimulatorMisconfigured(problem)
    reason = _real_npu_refusal()
    if reason is not None:
        raise SimulatorRefused(reason)
    count = visible_device_count()

    from ascend_overlay.core import requirements
    from ascend_overlay.core.settings import SIMULATE_NPU_CAPTURE, SIMULATE_NPU_STATS, read
    from ascend_overlay.npu.sim import capture, counters, device, hccl, lazy_init, module, runtime, torch_api

    for name, start in ((SIMULATE_NPU_STATS, counters.counters.start), (SIMULATE_NPU_CAPTURE, capture.start)):
        directory = read(name)
        try:
            start(directory)
        except OSError as exc:
            raise SimulatorMisconfigured(f"{name}={directory!r} cannot be written: {exc}") from None
    lazy_init.install()
    device.install(count, backend_module=runtime)
    torch_api.install()
    _run_compiled_functions_eagerly()
    hccl.register()
    module.install()
    # Answers computed before the device existed ("no NPU here") must not outlive it.
    requirements.torch_npu_importable.cache_clear()
    requirements.npu_available.cache_clear()
    _installed = True
    log.debug("ascend-overlay: simulated NPU installed (%d device(s))", count)
