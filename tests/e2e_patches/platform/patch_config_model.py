"""E2E test patch (platform phase): caps max_model_len at 77, visible in GET /v1/models."""

from ascend_overlay import Patch

PATCH = Patch(
    name="e2e_platform_max_len",
    phase="platform",
    vllm=">=0.32",
    why="end-to-end proof that platform-phase patches land in the main process before the config is built",
    remove_when="never: test fixture",
)


@PATCH.wrap("vllm.config.model:ModelConfig.get_and_verify_max_len", contract="(self, max_model_len)")
def cap_max_len(wrapped, instance, args, kwargs):
    return min(77, wrapped(*args, **kwargs))
