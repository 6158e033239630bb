"""SiluAndMul on the NPU's fused SwiGLU kernel (``torch_npu.npu_swiglu``)."""

from ascend_overlay import Patch

PATCH = Patch(
    name="npu_silu_and_mul",
    phase="worker",
    vllm=">=0.32,<0.34",
    requires=("npu",),
    why=("On the NPU platform vLLM dispatches SiluAndMul to forward_oot, whose default is the PyTorch "
         "composition silu(gate) * up (three kernels and two intermediates per MLP). torch_npu's "
         "npu_swiglu computes it in one fused kernel with the same gate-first layout. forward_oot is "
         "called with forward_native's arguments, (x); tests pin that shape for 0.32 and 0.33."),
    upstream="vllm/model_executor/layers/activation.py: SiluAndMul (no forward_oot of its own)",
    remove_when="vLLM dispatches SiluAndMul to an NPU kernel itself, or the NPU platform moves to vllm-ascend",
)


@PATCH.replace("vllm.model_executor.layers.activation:SiluAndMul.forward_oot",
               contract="(self, *args, **kwargs)", factory=True)
def make_forward_oot(original):
    from ascend_overlay.npu.ops import silu_and_mul

    def forward_oot(self, x):
        return silu_and_mul(x)

    forward_oot.__qualname__ = "SiluAndMul.forward_oot"
    return forward_oot
