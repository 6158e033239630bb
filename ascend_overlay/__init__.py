"""ascend-overlay: a monkey-patch runtime overlay that runs stock vLLM with Ascend NPU adaptations.

Where things live (docs/architecture.md draws it): ``core/`` is the patch model and the pipeline every
patch takes (load, plan, apply, report) in the words of ``core/vocabulary.py``; ``doors/`` are the ways
into vLLM's processes (interpreter start, the general-plugin entry point, the engine-core override,
Ray's workers), all calling ``doors/activation.py``; ``npu/`` is the NPU platform and the simulated
Ascend NPU; ``cli/``, ``main2main/``, ``smoke/``, ``serving/`` and ``testing/`` are the tools. The
patches themselves live in ``patches/`` beside the package (``patches/hooks/`` fire the phases).

This module is the API a patch author imports; importing it imports nothing heavy.
"""

from __future__ import annotations

from ascend_overlay.core.patch import Patch, Phase
from ascend_overlay.core.vllm_version import vllm_version_in, vllm_version_is

__all__ = ["Patch", "Phase", "vllm_version_in", "vllm_version_is"]
# The one place the overlay's version is written: pyproject.toml reads it (statically), and so do
# `ascend-overlay --version`, the smoke reports and CHANGELOG.md's newest heading (a test compares).
__version__ = "0.2.0"
