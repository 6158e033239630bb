"""The engine_core phase in an EngineCore process. vLLM has no engine-core class hook, so
``EngineCoreProc`` and ``DPEngineCoreProc`` are replaced by subclasses (``doors/engine_core.py``)
whose ``run_engine_core`` re-activates a spawned child by reference and whose ``__init__`` fires the
phase before vLLM builds the engine core."""

from ascend_overlay import Patch, Phase
from ascend_overlay.core.vllm_version import SUPPORTED
from ascend_overlay.doors import engine_core

PATCH = Patch(
    name="hook_engine_core_override", phase=Phase.IMPORT, vllm=SUPPORTED, internal=True,
    why="engine_core phase: vLLM has no engine-core class hook, so EngineCoreProc and DPEngineCoreProc "
        "are overridden by subclasses whose run_engine_core re-activates a spawned child by reference",
    remove_when="never: core hook")

_ARGS = "self, vllm_config, local_client, handshake_address, executor_class, log_stats, " \
        "client_handshake_address=None, tensor_queue=None"


@PATCH.replace("vllm.v1.engine.core:EngineCoreProc", contract=f"class({_ARGS}, *, engine_index=0)", factory=True)
def engine_core_override(original):
    return engine_core.overrides()[0]


@PATCH.replace("vllm.v1.engine.core:DPEngineCoreProc", contract=f"class({_ARGS})", factory=True)
def dp_engine_core_override(original):
    return engine_core.overrides()[1]


# The process target the override re-enters vLLM through: not edited, but its shape matters.
PATCH.relies_on("vllm.v1.engine.core:EngineCoreProc.run_engine_core",
                contract="(*args, dp_rank=0, local_dp_rank=0, **kwargs)")
