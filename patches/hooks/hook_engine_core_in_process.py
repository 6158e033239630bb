"""The engine_core phase when the engine core runs inside the main process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0`` builds ``EngineCore``, not ``EngineCoreProc``)."""

from ascend_overlay import Patch, Phase
from ascend_overlay.core.phases import fire
from ascend_overlay.core.vllm_version import SUPPORTED

PATCH = Patch(
    name="hook_engine_core_in_process", phase=Phase.IMPORT, vllm=SUPPORTED, internal=True,
    why="engine_core phase when the engine core runs inside the main process "
        "(VLLM_ENABLE_V1_MULTIPROCESSING=0 builds EngineCore, not EngineCoreProc)",
    remove_when="never: core hook")


@PATCH.wrap("vllm.v1.engine.core:EngineCore.__init__",
            contract="(self, vllm_config, executor_class, log_stats, executor_fail_callback=None, "
                     "include_finished_set=False)")
def on_engine_core_init(wrapped, instance, args, kwargs):
    fire(Phase.ENGINE_CORE, "EngineCore.__init__")
    return wrapped(*args, **kwargs)


# EngineCore.__init__ loads vLLM's general plugins, where the plugin door may be the first to
# activate the overlay (doors/plugin.py recognises this caller).
PATCH.relies_on("vllm.plugins:load_general_plugins", contract="()")
