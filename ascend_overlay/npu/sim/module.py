"""The ``torch_npu`` stand-in: a module named ``torch_npu`` that serves the simulated device.

It carries what the overlay and vLLM use of torch_npu: the kernels (``kernels.KERNELS``), the device
module as ``torch_npu.npu`` (also installed as ``torch.npu``), and ``SIMULATED = True`` so that any
code, and the overlay's report, can tell it from the real one.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types
from typing import Any

from ascend_overlay.npu.sim import kernels, runtime

VERSION = "2.14.0+simulated"  # the torch_npu release whose kernel schemas the stand-in follows


def build() -> types.ModuleType:
    module: Any = types.ModuleType("torch_npu", __doc__)  # attributes set here, as torch_npu has them
    module.__file__ = __file__
    module.__spec__ = importlib.machinery.ModuleSpec("torch_npu", None, origin=__file__)
    module.__version__ = VERSION
    module.SIMULATED = True
    module.npu = runtime
    for name, function in {**kernels.KERNELS, **kernels.NOT_SIMULATED}.items():
        setattr(module, name, function)
    return module


def install() -> types.ModuleType:
    """Put the stand-in into ``sys.modules`` as ``torch_npu`` (and ``torch_npu.npu``)."""
    existing = sys.modules.get("torch_npu")
    if existing is not None and getattr(existing, "SIMULATED", False):
        return existing
    module = build()
    sys.modules["torch_npu"] = module
    sys.modules["torch_npu.npu"] = runtime
    return module
