"""What the phases are, and the one entrance that fires them.

Every door and hook point (vLLM's hook points in ``hookpoints.py``, the engine-core override, the
general-plugin door) calls ``fire(phase)`` and nothing else, as pluggy gives each hook exactly one
caller. The active overlay of the process plugs its runner in here when it activates; until then,
and after it deactivates, firing is a no-op. This module imports nothing of the overlay, so any
module may call it without creating an import cycle.
"""

from __future__ import annotations

import enum
from collections.abc import Callable


class Phase(str, enum.Enum):
    """When in a vLLM process's life a patch lands (see docs/phases.md)."""

    IMPORT = "import"            # the moment its target module finishes importing, in every process
    PLATFORM = "platform"        # main process, before the engine config is built
    ENGINE_CORE = "engine_core"  # EngineCore process, before the engine core object is built
    WORKER = "worker"            # each worker process, before the worker class is built


_runner: Callable[[Phase, str], None] | None = None


def fire(phase: Phase | str, origin: str = "") -> None:
    """Land every patch of ``phase`` in this process: once per process, whoever calls first.
    ``origin`` names the hook point calling, for the report (``fired_from``)."""
    runner = _runner
    if runner is not None:
        runner(Phase(phase), origin)


def plug(runner: Callable[[Phase, str], None] | None) -> None:
    """Called by activation only: the active overlay's phase runner, or None when it switches off."""
    global _runner
    _runner = runner
