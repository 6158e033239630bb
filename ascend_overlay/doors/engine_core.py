"""The engine-core override: subclasses of ``EngineCoreProc`` / ``DPEngineCoreProc``.

vLLM starts the EngineCore process with ``target=EngineCoreProc.run_engine_core``, looking
``EngineCoreProc`` up at call time. With the override in place the target is
``OverlayEngineCoreProc.run_engine_core``, which a spawned child unpickles *by reference to this
module*: so the child imports the overlay first, activates it, and only then lets vLLM build the
engine core, from our subclass, whose ``__init__`` fires the engine_core phase. The classes are built
lazily (PEP 562 ``__getattr__``) so that importing this module never imports vLLM; the hook patch
that installs them (``patches/hooks/hook_engine_core_override.py``) is loaded by the catalog from its
file, so this door can import activation without an import loop.
"""

from __future__ import annotations

from typing import Any

from ascend_overlay.core.phases import fire
from ascend_overlay.core.vocabulary import Phase
from ascend_overlay.doors import activation

_NAMES = ("OverlayEngineCoreProc", "OverlayDPEngineCoreProc")
_built: tuple[type, type] | None = None


def _original(cls: Any) -> Any:  # vLLM's classes, whose members mypy is not shown
    while getattr(cls, "__ascend_overlay_override__", False):
        cls = cls.__bases__[0]
    return cls


def overrides() -> tuple[type, type]:
    global _built
    if _built is not None:
        return _built
    from vllm.v1.engine import core

    base = _original(core.EngineCoreProc)
    dp_base = _original(core.DPEngineCoreProc)

    def run_engine_core(*args: Any, **kwargs: Any) -> Any:
        activation.activate(door="engine_core_target")
        return base.run_engine_core(*args, **kwargs)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        fire(Phase.ENGINE_CORE, "EngineCoreProc override")
        base.__init__(self, *args, **kwargs)

    def dp_init(self: Any, *args: Any, **kwargs: Any) -> None:
        fire(Phase.ENGINE_CORE, "DPEngineCoreProc override")
        dp_base.__init__(self, *args, **kwargs)

    classes: list[Any] = []
    for name, parent, init in ((_NAMES[0], base, __init__), (_NAMES[1], dp_base, dp_init)):
        init.__qualname__ = f"{name}.__init__"
        runner = staticmethod(run_engine_core) if parent is base else staticmethod(_dp_run(dp_base))
        cls: Any = type(name, (parent,), {"__init__": init, "run_engine_core": runner, "__module__": __name__,
                                     "__qualname__": name, "__ascend_overlay_override__": True,
                                     "__doc__": f"{parent.__name__} with the overlay's engine_core phase."})
        cls.run_engine_core.__qualname__ = f"{name}.run_engine_core"
        cls.run_engine_core.__module__ = __name__
        classes.append(cls)
    _built = (classes[0], classes[1])
    return _built


def _dp_run(dp_base: Any) -> Any:
    def run_engine_core(*args: Any, **kwargs: Any) -> Any:
        activation.activate(door="engine_core_target")
        return dp_base.run_engine_core(*args, **kwargs)
    return run_engine_core


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return overrides()[_NAMES.index(name)]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
