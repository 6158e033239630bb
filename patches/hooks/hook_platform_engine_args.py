"""The platform phase, fired from argument parsing and ``create_engine_config`` too: a platform may
override ``pre_register_and_update`` without calling the base, and the phase must still fire."""

from ascend_overlay import Patch, Phase
from ascend_overlay.core.phases import fire
from ascend_overlay.core.vllm_version import SUPPORTED

PATCH = Patch(
    name="hook_platform_engine_args", phase=Phase.IMPORT, vllm=SUPPORTED, internal=True,
    why="platform phase from argument parsing and create_engine_config, for platforms that override "
        "pre_register_and_update without calling the base",
    remove_when="never: core hook")


@PATCH.wrap("vllm.engine.arg_utils:EngineArgs.create_engine_config",
            contract="(self, usage_context=None, headless=False)")
def on_create_engine_config(wrapped, instance, args, kwargs):
    fire(Phase.PLATFORM, "EngineArgs.create_engine_config")
    return wrapped(*args, **kwargs)


@PATCH.wrap("vllm.engine.arg_utils:AsyncEngineArgs.add_cli_args", contract="(parser, async_args_only=False)")
def on_add_cli_args(wrapped, instance, args, kwargs):
    fire(Phase.PLATFORM, "AsyncEngineArgs.add_cli_args")
    return wrapped(*args, **kwargs)
