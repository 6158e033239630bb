"""E2E test patch (engine_core phase): every request stops after 3 tokens, seen in the usage counts."""

from ascend_overlay import Patch

PATCH = Patch(
    name="e2e_engine_core_max_tokens",
    phase="engine_core",
    vllm=">=0.32",
    why="end-to-end proof that engine_core-phase patches land in the EngineCore process",
    remove_when="never: test fixture",
)


@PATCH.wrap("vllm.v1.engine.core:EngineCore.add_request", contract="(self, request, request_wave=0)")
def clip_max_tokens(wrapped, instance, args, kwargs):
    request = args[0] if args else kwargs["request"]
    request.max_tokens = min(request.max_tokens, 3)
    return wrapped(*args, **kwargs)
