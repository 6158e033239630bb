"""RotaryEmbedding on the NPU rotary kernel (``torch_npu._npu_rotary_embedding``, in place)."""

from ascend_overlay import Patch

PATCH = Patch(
    name="npu_rotary_embedding",
    phase="worker",
    vllm=">=0.32,<0.34",
    requires=("npu",),
    why=("On the NPU platform vLLM dispatches RotaryEmbedding to forward_oot, whose default gathers "
         "cos/sin and rotates q and k with a dozen PyTorch kernels per layer. torch_npu's "
         "_npu_rotary_embedding(positions, query, key, head_size, cos_sin_cache, is_neox_style) does it "
         "in place in one kernel; the cache is first cast to the query's dtype and device with vLLM's own "
         "helper (the kernel reads it as is). Subclasses that bring their own forward_native (e.g. "
         "Fourier or Gemma4 RoPE) keep it: the kernel implements only the base class's arithmetic."),
    upstream="vllm/model_executor/layers/rotary_embedding/base.py: RotaryEmbedding (no forward_oot of its own)",
    remove_when="vLLM dispatches RotaryEmbedding to an NPU kernel itself, or the NPU platform moves to vllm-ascend",
)


@PATCH.replace("vllm.model_executor.layers.rotary_embedding.base:RotaryEmbedding.forward_oot",
               contract="(self, *args, **kwargs)", factory=True)
def make_forward_oot(original):
    from vllm.model_executor.layers.rotary_embedding.base import RotaryEmbedding

    from ascend_overlay.npu.ops import rotary_embedding

    base_native = RotaryEmbedding.forward_native

    def forward_oot(self, positions, query, key=None):
        if type(self).forward_native is not base_native:
            return self.forward_native(positions, query, key)
        cos_sin_cache = self._match_cos_sin_cache_dtype(query)
        return rotary_embedding(positions, query, key, self.head_size, self.rotary_dim, cos_sin_cache,
                                self.is_neox_style)

    forward_oot.__qualname__ = "RotaryEmbedding.forward_oot"
    return forward_oot
