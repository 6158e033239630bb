"""RMSNorm on the NPU's fused kernels: ``npu_rms_norm``, and ``npu_add_rms_norm`` with a residual."""

from ascend_overlay import Patch

PATCH = Patch(
    name="npu_rms_norm",
    phase="worker",
    vllm=">=0.32,<0.34",
    requires=("npu",),
    why=("On the NPU platform vLLM dispatches RMSNorm to forward_oot, whose default runs the PyTorch "
         "composition (cast, square, mean, rsqrt, scale: five kernels, plus an add with a residual) "
         "twice per decoder layer. torch_npu fuses it: npu_rms_norm(x, gamma, eps) -> (y, rstd), and "
         "npu_add_rms_norm(x, residual, gamma, eps) -> (y, rstd, x + residual), from which the patch "
         "returns what vLLM expects: y, or (y, x + residual). Layers with a partial variance size "
         "(var_hidden_size) keep vLLM's own path: the NPU kernel normalises over the whole row."),
    upstream="vllm/model_executor/layers/layernorm.py: RMSNorm (no forward_oot of its own)",
    remove_when="vLLM dispatches RMSNorm to an NPU kernel itself, or the NPU platform moves to vllm-ascend",
)


@PATCH.replace("vllm.model_executor.layers.layernorm:RMSNorm.forward_oot",
               contract="(self, *args, **kwargs)", factory=True)
def make_forward_oot(original):
    from ascend_overlay.npu.ops import rms_norm

    def forward_oot(self, x, residual=None):
        if self.variance_size_override is not None:
            return self.forward_native(x, residual)
        pass_weight = self.pass_weight if residual is None else self.pass_weight_add
        return rms_norm(x, self.weight.data if pass_weight else None, self.variance_epsilon, residual)

    forward_oot.__qualname__ = "RMSNorm.forward_oot"
    return forward_oot
