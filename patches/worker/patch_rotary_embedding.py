"""RotaryEmbedding on the NPU rotary kernel (``torch_npu.npu_mrope``, which reads each call's cos/sin cache)."""

from ascend_overlay import Patch

PATCH = Patch(
    name="npu_rotary_embedding",
    phase="worker",
    vllm=">=0.32,<0.34",
    requires=("npu",),
    why=("On the NPU platform vLLM dispatches RotaryEmbedding to forward_oot, whose default gathers "
         "cos/sin and rotates q and k with a dozen PyTorch kernels per layer. torch_npu's npu_mrope "
         "(RoPE mode) does it in one kernel with the cos/sin cache of each call, so layers with different "
         "RoPE settings stay right (the ATB _npu_rotary_embedding keeps the first cache of the process); "
         "the cache is first cast to the query's dtype and device with vLLM's own helper (the kernel reads "
         "it as is). Layers whose head or rotary size the kernel does not take (not multiples of 32 in "
         "16-bit), and subclasses that bring their own forward_native (e.g. Fourier or Gemma4 RoPE), keep "
         "vLLM's arithmetic."),
    upstream="vllm/model_executor/layers/rotary_embedding/base.py: RotaryEmbedding (no forward_oot of its own)",
    remove_when="vLLM dispatches RotaryEmbedding to an NPU kernel itself, or the NPU platform moves to vllm-ascend",
)


@PATCH.replace("vllm.model_executor.layers.rotary_embedding.base:RotaryEmbedding.forward_oot",
               contract="(self, *args, **kwargs)", factory=True)
def make_forward_oot(original):
    from vllm.model_executor.layers.rotary_embedding.base import RotaryEmbedding

    from ascend_overlay.npu.ops import rotary_embedding, rotary_kernel_takes

    base_native = RotaryEmbedding.forward_native

    def forward_oot(self, positions, query, key=None):
        if (type(self).forward_native is not base_native
                or not rotary_kernel_takes(self.head_size, self.rotary_dim, query.dtype)):
            return self.forward_native(positions, query, key)
        cos_sin_cache = self._match_cos_sin_cache_dtype(query)
        return rotary_embedding(positions, query, key, self.head_size, self.rotary_dim, cos_sin_cache,
                                self.is_neox_style)

    forward_oot.__qualname__ = "RotaryEmbedding.forward_oot"
    return forward_oot
