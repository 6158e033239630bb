"""ascend-overlay: a monkey-patch runtime overlay that runs stock vLLM with Ascend NPU adaptations.

Where things live: activation (``activation.py``, its doors ``bootstrap/`` and ``plugin.py``); phases
(``phases.py``: the one ``fire`` entrance) fired from vLLM's hook points (``hookpoints.py``,
``engine_core.py``); patches declared (``patch.py``), then the pipeline: load (``catalog.py``, with the
trust rules of ``hotfix.py``), plan (``planning.py``), apply (``runtime.py``, ``applier.py``), report
(``report.py``, in the words of ``outcomes.py``); every variable (``settings.py``); the CLI (``cli/``).
Importing this package imports nothing heavy.
"""

from __future__ import annotations

from ascend_overlay.core.patch import Patch, Phase
from ascend_overlay.core.vllm_version import vllm_version_in, vllm_version_is

__all__ = ["Patch", "Phase", "vllm_version_in", "vllm_version_is"]
__version__ = "0.1.0"
