"""The platform phase, fired from ``Platform.pre_register_and_update``: vLLM calls it in the main
process before the engine config is built and before CLI arguments are parsed."""

from ascend_overlay import Patch, Phase
from ascend_overlay.core.phases import fire
from ascend_overlay.core.vllm_version import SUPPORTED

PATCH = Patch(
    name="hook_platform_pre_register", phase=Phase.IMPORT, vllm=SUPPORTED, internal=True,
    why="platform phase from Platform.pre_register_and_update: vLLM calls it before the config is built "
        "and before CLI arguments are parsed",
    remove_when="never: core hook")


@PATCH.wrap("vllm.platforms.interface:Platform.pre_register_and_update", contract="(cls, parser=None)")
def on_pre_register(wrapped, instance, args, kwargs):
    fire(Phase.PLATFORM, "Platform.pre_register_and_update")
    return wrapped(*args, **kwargs)
