"""Keep vLLM's environment check from flagging (or, strictly, refusing) the overlay's own variables."""

from ascend_overlay import Patch

PATCH = Patch(
    name="overlay_env_vars_known",
    phase="import",
    vllm=">=0.32,<0.34",
    why=("Platform.validate_environ flags every VLLM_* variable vLLM does not know: it logs "
         "'Unknown vLLM environment variable detected: VLLM_ASCEND_OVERLAY...' in every run with the overlay "
         "on, and with --fail-on-environ-validation it refuses to start. The overlay's variables "
         "(VLLM_ASCEND_OVERLAY*) are skipped; every other variable is checked exactly as before. They are not "
         "added to vllm.envs.environment_variables, which would make them part of torch.compile cache keys."),
    upstream="vllm/platforms/interface.py: Platform.validate_environ",
    remove_when="vLLM lets plugins declare their environment variables",
)

OWN_PREFIX = "VLLM_ASCEND_OVERLAY"


@PATCH.replace("vllm.platforms.interface:Platform.validate_environ", contract="(cls, hard_fail)")
def validate_environ(cls, hard_fail):
    import os

    from vllm import envs
    from vllm.platforms.interface import logger

    for env in os.environ:
        if env.startswith("VLLM_") and not env.startswith(OWN_PREFIX) and env not in envs.environment_variables:
            if hard_fail:
                raise ValueError(f"Unknown vLLM environment variable detected: {env}")
            logger.warning("Unknown vLLM environment variable detected: %s", env)
