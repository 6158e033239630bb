"""The overlay in the Ray workers of vLLM's legacy Ray executor (``RayDistributedExecutor``, chosen with
``VLLM_USE_RAY_V2_EXECUTOR_BACKEND=0``): the same route as ``ray_workers_overlay`` for RayExecutorV2."""

from ascend_overlay import Patch

PATCH = Patch(
    name="ray_workers_overlay_legacy",
    phase="import",
    # Without Ray, vLLM's Ray executor module cannot even be imported (its annotations name Ray's types),
    # and vLLM runs without it: so does this patch, skipped as a requirement, not reported as broken.
    requires=("module:ray",),
    vllm=">=0.32,<0.33",  # vLLM 0.33 removed vllm/v1/executor/ray_executor.py (found by main2main's check)
    why=("vLLM's legacy Ray executor builds its worker actors' Ray runtime environment in "
         "_update_noset_device_env_vars and copies the driver's VLLM_* variables only once the actors exist: "
         "on a cluster started by a plain `ray start` its workers would run stock. The overlay's variables "
         "are added to that runtime environment (values the operator set there are kept), and once the "
         "workers are up the driver names the hosts that run stock (docs/distributed.md)."),
    upstream="vllm/v1/executor/ray_executor.py: RayDistributedExecutor._update_noset_device_env_vars, _init_executor",
    remove_when="vLLM 0.32 support ends: 0.33 removed the legacy Ray executor",
)


@PATCH.wrap("vllm.v1.executor.ray_executor:RayDistributedExecutor._update_noset_device_env_vars",
            contract="(self, ray_remote_kwargs)")
def _update_noset_device_env_vars(wrapped, instance, args, kwargs):
    import os

    from ascend_overlay.doors.ray_workers import carry_into

    remote_kwargs = wrapped(*args, **kwargs)
    remote_kwargs["runtime_env"] = carry_into(remote_kwargs.get("runtime_env"), os.environ)
    return remote_kwargs


@PATCH.wrap("vllm.v1.executor.ray_executor:RayDistributedExecutor._init_executor", contract="(self)")
def _init_executor(wrapped, instance, args, kwargs):
    from ascend_overlay.doors.ray_workers import check_workers

    result = wrapped(*args, **kwargs)
    check_workers(instance.collective_rpc)
    return result
