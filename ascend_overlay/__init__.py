"""ascend-overlay: a monkey-patch runtime overlay that runs stock vLLM with Ascend NPU adaptations.

Where things live: activation (``activation.py``, ``bootstrap/``, ``plugin.py``), phases fired from
vLLM's hook points (``hookpoints.py``, ``engine_core.py``, ``runtime.py``), patches declared
(``patch.py``) and applied (``applier.py``), loaded (``catalog.py``, ``hotfix.py``) and gated
(``gate.py``), the CLI (``cli/``). Importing this package imports nothing heavy.
"""

from __future__ import annotations

from ascend_overlay.patch import Patch, Phase
from ascend_overlay.vllm_version import vllm_version_in, vllm_version_is

__all__ = ["Patch", "Phase", "vllm_version_in", "vllm_version_is"]
__version__ = "0.1.0"
