"""E2E test patch (worker phase): a wrap on a method inside the model's compiled forward. vLLM traces
the forward with ``torch.compile(fullgraph=True)``; the server starting at all on its compiled path is
the proof that the wrapper is traceable (with the original bound by ``types.MethodType`` it was not,
and vLLM stopped at its first compile)."""

from ascend_overlay import Patch

PATCH = Patch(
    name="e2e_worker_compiled_wrap",
    phase="worker",
    vllm=">=0.32",
    why="end-to-end proof that a wrap inside vLLM's compiled model forward is traced, not a compile error",
    remove_when="never: test fixture",
)


@PATCH.wrap("vllm.model_executor.models.llama:LlamaMLP.forward", contract="(self, x)")
def through(wrapped, instance, args, kwargs):
    return wrapped(*args, **kwargs)
