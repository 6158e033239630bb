"""The worker phase, fired from ``WorkerWrapperBase.init_worker``: before the worker class is
resolved and built, in every worker process (multiprocessing or Ray)."""

from ascend_overlay import Patch, Phase
from ascend_overlay.core.phases import fire
from ascend_overlay.core.vllm_version import SUPPORTED

PATCH = Patch(
    name="hook_worker_init", phase=Phase.IMPORT, vllm=SUPPORTED, internal=True,
    why="worker phase from WorkerWrapperBase.init_worker, before the worker class is resolved and built",
    remove_when="never: core hook")


@PATCH.wrap("vllm.v1.worker.worker_base:WorkerWrapperBase.init_worker", contract="(self, all_kwargs)")
def on_init_worker(wrapped, instance, args, kwargs):
    fire(Phase.WORKER, "WorkerWrapperBase.init_worker")
    return wrapped(*args, **kwargs)


# init_worker loads vLLM's general plugins, where the plugin door may be the first to activate the
# overlay (doors/plugin.py recognises this caller): a rename of that function is a break too.
PATCH.relies_on("vllm.plugins:load_general_plugins", contract="()")
