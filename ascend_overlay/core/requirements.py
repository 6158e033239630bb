"""Checks for what a patch ``requires``: an NPU, torch_npu, a vLLM distribution, another patch, an
importable module.

Each check is as cheap as it can be made, because the answer "no NPU here" is computed in every
process of every run on machines without one: ``find_spec`` answers before anything heavy imports.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable

from ascend_overlay.core import locate
from ascend_overlay.core.vllm_version import vllm_distribution_name


@functools.lru_cache(maxsize=1)
def torch_npu_importable() -> bool:
    if importlib.util.find_spec("torch_npu") is None:
        return False
    try:
        import torch_npu  # noqa: F401
    except Exception:
        return False
    return True


@functools.lru_cache(maxsize=1)
def npu_available() -> bool:
    if not torch_npu_importable():
        return False
    import torch

    try:
        return bool(torch.npu.is_available() and torch.npu.device_count() > 0)
    except Exception:
        return False


def unmet(requirements: tuple[str, ...], applied: Callable[[str], bool], *,
          simulated_npu: bool = False) -> str | None:
    """The first requirement not met, in words, or None when all are. ``simulated_npu`` answers for
    a process that will run on the simulated NPU (``ascend-overlay status`` predicting one)."""
    for req in requirements:
        if req == "npu" and not (simulated_npu or npu_available()):
            return "requires npu"
        if req == "torch_npu" and not (simulated_npu or torch_npu_importable()):
            return "requires torch_npu"
        if req.startswith("dist:"):
            wanted = req[len("dist:"):]
            found = vllm_distribution_name()
            if (found or "").lower().replace("_", "-") != wanted.lower().replace("_", "-"):
                return f"requires vLLM distribution {wanted} (installed: {found or 'none'})"
        if req.startswith("patch:") and not applied(req[len("patch:"):]):
            return f"requires patch {req[len('patch:'):]} to be applied"
        if req.startswith("module:") and not locate.importable(req[len("module:"):]):
            # Found without importing: an optional dependency of vLLM (Ray) is answered in microseconds,
            # and a module that is absent is reported as such, not as a failure of its importer.
            return f"requires module {req[len('module:'):]}, which is not installed here"
    return None
