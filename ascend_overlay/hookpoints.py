"""Where the phases are fired from: the overlay's own edits to vLLM's hook points.

These are declared with the same patch model as every other patch (pinned contracts, atomic apply,
undo) and marked ``internal``: they are planned like any patch (their ``vllm`` range is read), but no
toggle switches them off, and ``ascend-overlay check`` watches them for upstream drift. They bind to
the import of the hook point's module, so they are in place before vLLM can call the hook. Every one
of them calls ``phases.fire``, the one entrance.

The general-plugin door needs to know one more thing: which of these hook points is running when
vLLM loads plugins, for the case where that door is the first to activate the overlay in a process
(the wrapper was installed too late for the call already running). ``PLUGIN_CALLERS`` declares those
callers by target, pinned by the hook patches above, and ``caller_phase`` recognises them by the
identity of their code objects, never by names or file names.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

from ascend_overlay.patch import Patch, Phase
from ascend_overlay.phases import fire

_SUPPORTED = ">=0.32"


def _hook(name: str, why: str) -> Patch:
    return Patch(name=name, phase=Phase.IMPORT, vllm=_SUPPORTED, why=why, remove_when="never: core hook",
                 source="overlay", file=__file__, internal=True)


PLATFORM_FROM_PLATFORM = _hook(
    "hook_platform_pre_register",
    "platform phase from Platform.pre_register_and_update: vLLM calls it before the config is built "
    "and before CLI arguments are parsed")


@PLATFORM_FROM_PLATFORM.wrap("vllm.platforms.interface:Platform.pre_register_and_update",
                             contract="(cls, parser=None)")
def _on_pre_register(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    fire(Phase.PLATFORM, "Platform.pre_register_and_update")
    return wrapped(*args, **kwargs)


PLATFORM_FROM_ARGS = _hook(
    "hook_platform_engine_args",
    "platform phase from argument parsing and create_engine_config, for platforms that override "
    "pre_register_and_update without calling the base")


@PLATFORM_FROM_ARGS.wrap("vllm.engine.arg_utils:EngineArgs.create_engine_config",
                         contract="(self, usage_context=None, headless=False)")
def _on_create_engine_config(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    fire(Phase.PLATFORM, "EngineArgs.create_engine_config")
    return wrapped(*args, **kwargs)


@PLATFORM_FROM_ARGS.wrap("vllm.engine.arg_utils:AsyncEngineArgs.add_cli_args",
                         contract="(parser, async_args_only=False)")
def _on_add_cli_args(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    fire(Phase.PLATFORM, "AsyncEngineArgs.add_cli_args")
    return wrapped(*args, **kwargs)


WORKER = _hook("hook_worker_init",
               "worker phase from WorkerWrapperBase.init_worker, before the worker class is resolved and built")


@WORKER.wrap("vllm.v1.worker.worker_base:WorkerWrapperBase.init_worker", contract="(self, all_kwargs)")
def _on_init_worker(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    fire(Phase.WORKER, "WorkerWrapperBase.init_worker")
    return wrapped(*args, **kwargs)


ENGINE_CORE = _hook(
    "hook_engine_core_override",
    "engine_core phase: vLLM has no engine-core class hook, so EngineCoreProc and DPEngineCoreProc "
    "are overridden by subclasses whose run_engine_core re-activates a spawned child by reference")

_ENGINE_CORE_PIN = ("class(self, vllm_config, local_client, handshake_address, executor_class, log_stats, "
                    "client_handshake_address=None, tensor_queue=None, *, engine_index=0)")
_DP_ENGINE_CORE_PIN = ("class(self, vllm_config, local_client, handshake_address, executor_class, log_stats, "
                       "client_handshake_address=None, tensor_queue=None)")


@ENGINE_CORE.replace("vllm.v1.engine.core:EngineCoreProc", contract=_ENGINE_CORE_PIN, factory=True)
def _engine_core_override(original: type) -> type:
    from ascend_overlay import engine_core

    return engine_core.overrides()[0]


@ENGINE_CORE.replace("vllm.v1.engine.core:DPEngineCoreProc", contract=_DP_ENGINE_CORE_PIN, factory=True)
def _dp_engine_core_override(original: type) -> type:
    from ascend_overlay import engine_core

    return engine_core.overrides()[1]


ENGINE_CORE_IN_PROCESS = _hook(
    "hook_engine_core_in_process",
    "engine_core phase when the engine core runs inside the main process "
    "(VLLM_ENABLE_V1_MULTIPROCESSING=0 builds EngineCore, not EngineCoreProc)")


@ENGINE_CORE_IN_PROCESS.wrap("vllm.v1.engine.core:EngineCore.__init__",
                             contract="(self, vllm_config, executor_class, log_stats, executor_fail_callback=None, "
                                      "include_finished_set=False)")
def _on_engine_core_init(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    fire(Phase.ENGINE_CORE, "EngineCore.__init__")
    return wrapped(*args, **kwargs)


HOOK_PATCHES = [PLATFORM_FROM_PLATFORM, PLATFORM_FROM_ARGS, WORKER, ENGINE_CORE, ENGINE_CORE_IN_PROCESS]

# vLLM 0.32/0.33 call ``vllm.plugins.load_general_plugins`` from these hook points (and from
# EngineArgs, where the platform phase follows anyway): target -> the phase that call belongs to.
# The hook patches that wrap the same targets pin their shapes; the function they call to load
# plugins is declared as relied on, so `ascend-overlay check` sees a rename of either.
PLUGIN_CALLERS: dict[str, Phase] = {
    "vllm.v1.worker.worker_base:WorkerWrapperBase.init_worker": Phase.WORKER,
    "vllm.v1.engine.core:EngineCore.__init__": Phase.ENGINE_CORE,
}
for _hook_patch in (WORKER, ENGINE_CORE_IN_PROCESS):
    _hook_patch.relies_on("vllm.plugins:load_general_plugins", contract="()")
_MAX_DEPTH = 8


def _code_of(target: str) -> Any:
    """The code object of a caller's original function, from the loaded module (never importing)."""
    module_name, _, path = target.partition(":")
    obj: Any = sys.modules.get(module_name)
    for name in path.split("."):
        obj = getattr(obj, name, None)
    while hasattr(obj, "__wrapped__"):  # the WORKER / ENGINE_CORE hooks wrap these very functions
        obj = obj.__wrapped__
    return getattr(obj, "__code__", None)


def caller_phase(frame: FrameType | None) -> tuple[Phase, str] | None:
    """The phase and target of the declared hook point running in ``frame`` or just above it."""
    codes = {code: (phase, target) for target, phase in PLUGIN_CALLERS.items()
             if (code := _code_of(target)) is not None}
    for _ in range(_MAX_DEPTH):
        if frame is None:
            return None
        found = codes.get(frame.f_code)
        if found is not None:
            return found
        frame = frame.f_back
    return None

# The engine-core entry the override relies on (not edited, but its shape matters).
RELIED_ON = {"vllm.v1.engine.core:EngineCoreProc.run_engine_core": "(*args, dp_rank=0, local_dp_rank=0, **kwargs)"}
