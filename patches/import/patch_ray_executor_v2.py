"""The overlay in the Ray workers of vLLM's Ray executor (``RayExecutorV2``, vLLM's default for ``ray``)."""

from ascend_overlay import Patch

PATCH = Patch(
    name="ray_workers_overlay",
    phase="import",
    # Without Ray, vLLM's Ray executor module cannot even be imported (its annotations name Ray's types),
    # and vLLM runs without it: so does this patch, skipped as a requirement, not reported as broken.
    requires=("module:ray",),
    vllm=">=0.32,<0.34",
    why=("Ray starts vLLM's workers in Ray's own processes. On a cluster started by a plain `ray start` they "
         "lack the overlay's variables until RayWorkerProc.initialize_worker copies the driver's VLLM_* "
         "variables, after the actor's arguments were unpickled and the platform resolved: the worker runs "
         "stock (on the NPU platform it cannot even unpickle its config's `npu` device). The actors' Ray "
         "runtime environment is what reaches a worker at process start, so the overlay's variables are "
         "added to it (values the operator set there are kept). Once the workers are up, the driver asks each "
         "whether the overlay is active and names the hosts that run stock (docs/distributed.md)."),
    upstream="vllm/v1/executor/ray_executor_v2.py: RayExecutorV2._build_runtime_env, _init_executor",
    remove_when="vLLM carries a platform's or plugin's variables into the Ray runtime environment of its workers",
)


@PATCH.wrap("vllm.v1.executor.ray_executor_v2:RayExecutorV2._build_runtime_env", contract="(self)")
def _build_runtime_env(wrapped, instance, args, kwargs):
    import os

    from ascend_overlay.doors.ray_workers import carry_into

    return carry_into(wrapped(*args, **kwargs), os.environ)


@PATCH.wrap("vllm.v1.executor.ray_executor_v2:RayExecutorV2._init_executor", contract="(self)")
def _init_executor(wrapped, instance, args, kwargs):
    from ascend_overlay.doors.ray_workers import check_workers

    result = wrapped(*args, **kwargs)
    check_workers(instance.collective_rpc)
    return result
