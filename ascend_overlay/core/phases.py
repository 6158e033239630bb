"""The one entrance that fires a phase.

Every door and hook point (the hook patches in ``patches/hooks/``, the engine-core override, the
general-plugin door) calls ``fire(phase)`` and nothing else, as pluggy gives each hook exactly one
caller. The active overlay of the process plugs its runner in here when it activates; until then,
and after it deactivates, firing is a no-op. This module depends on nothing but the vocabulary, so
any module may call it.
"""

from __future__ import annotations

from collections.abc import Callable

from ascend_overlay.core.vocabulary import Phase

__all__ = ["Phase", "fire", "plug"]

_runner: Callable[[Phase, str], None] | None = None


def fire(phase: Phase, origin: str = "") -> None:
    """Land every patch of ``phase`` in this process: once per process, whoever calls first.
    ``origin`` names the hook point calling, for the report (``fired_from``)."""
    runner = _runner
    if runner is not None:
        runner(Phase(phase), origin)


def plug(runner: Callable[[Phase, str], None] | None) -> None:
    """Called by activation only: the active overlay's phase runner, or None when it switches off."""
    global _runner
    _runner = runner
