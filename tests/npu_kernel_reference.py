"""vLLM's own path for each NPU kernel call the simulated NPU recorded (``sim/capture.py``), and the
bfloat16 tolerance a kernel's output is held to against it.

The kernels are compared with what vLLM computes without them, on the inputs a real request gave
them: ``SiluAndMul``, ``RMSNorm`` and ``RotaryEmbedding``'s ``forward_native`` for the patched layers;
for the cache write, the keys and values themselves (a copy is exact); for the two attention kernels,
softmax attention in float32 over the cache rows the kernel read (vLLM has no native attention
function: this is the arithmetic its SDPA-based CPU backends compute). vLLM's native paths round in
bfloat16 at several steps where a fused kernel rounds once, so the two may differ by a few bf16 ulps:
``TOLERANCE`` bounds each element by four ulps of the largest magnitude in its row, plus two ulps of
its own. A kernel that computed anything else (a wrong rotation, a stale cache, a wrong mask) is off
by the size of the values, orders of magnitude more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

BF16_ULP = 2.0 ** -8  # the spacing of bfloat16 values in [1, 2), relative: 8 significant bits
ROW_ULPS = 4           # absolute: 4 ulps of the row's largest magnitude (cancellation in a sum of products)
OWN_ULPS = 2           # relative: 2 ulps of the element itself


@dataclass
class Deviation:
    """How far one kernel call's output is from vLLM's path, against the tolerance."""

    kernel: str
    sequence: int
    worst: float       # max |out - ref| / allowed over the elements: <= 1 is within tolerance
    max_abs: float

    @property
    def within(self) -> bool:
        return self.worst <= 1.0


def deviation(kernel: str, sequence: int, out: torch.Tensor, ref: torch.Tensor) -> Deviation:
    out, ref = out.double(), ref.double()
    rows = ref.reshape(ref.shape[0], -1) if ref.dim() > 1 else ref.reshape(1, -1)
    scale = rows.abs().amax(dim=-1, keepdim=True).clamp_min(1e-30).expand_as(rows).reshape(ref.shape)
    allowed = ROW_ULPS * BF16_ULP * scale + OWN_ULPS * BF16_ULP * ref.abs()
    diff = (out - ref).abs()
    return Deviation(kernel, sequence, float((diff / allowed).max()) if diff.numel() else 0.0,
                     float(diff.max()) if diff.numel() else 0.0)


def _attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float,
               causal: bool) -> torch.Tensor:
    """``query`` [Lq, H, D], the last Lq positions of a sequence with ``keys``/``values`` [Lk, Hkv, D]."""
    heads, kv_heads = query.shape[1], keys.shape[1]
    k = keys.float().repeat_interleave(heads // kv_heads, dim=1).transpose(0, 1)
    v = values.float().repeat_interleave(heads // kv_heads, dim=1).transpose(0, 1)
    q = query.float().transpose(0, 1)
    mask = None
    if causal:
        lq, lk = q.shape[1], k.shape[1]
        mask = torch.arange(lk)[None, :] <= torch.arange(lq)[:, None] + (lk - lq)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return out.transpose(0, 1)


def compare(call: dict[str, Any]) -> list[Deviation]:
    """The call's outputs against vLLM's path on its inputs (needs a current VllmConfig)."""
    from vllm.model_executor.layers.activation import SiluAndMul
    from vllm.model_executor.layers.layernorm import RMSNorm
    from vllm.model_executor.layers.rotary_embedding.base import RotaryEmbedding

    kernel, seq, inputs, outputs, result = (call["kernel"], call["sequence"], call["inputs"], call["outputs"],
                                            call["result"])
    if kernel == "npu_swiglu":
        return [deviation(kernel, seq, result, SiluAndMul.forward_native(inputs["self"]))]
    if kernel in ("npu_rms_norm", "npu_add_rms_norm"):
        gamma = inputs["gamma"]
        layer = RMSNorm(gamma.shape[-1], eps=inputs["epsilon"], dtype=gamma.dtype)
        layer.weight.data.copy_(gamma)
        if kernel == "npu_rms_norm":
            return [deviation(kernel, seq, result[0], layer.forward_native(inputs["self"]))]
        y, residual = layer.forward_native(inputs["x1"], inputs["x2"])
        return [deviation(kernel, seq, result[0], y), deviation(f"{kernel}.residual", seq, result[2], residual)]
    if kernel == "npu_mrope":
        cache, head_size = inputs["cos_sin_cache"], inputs["head_size"]
        rope = RotaryEmbedding(head_size, cache.shape[-1], cache.shape[0], 10000.0, inputs["rotary_mode"] == "half",
                               cache.dtype)
        rope.cos_sin_cache = cache  # the layer's own cache, as the kernel got it
        q, k = rope.forward_native(inputs["positions"], inputs["query"].clone(), inputs["key"].clone())
        return [deviation(kernel, seq, result[0], q), deviation(f"{kernel}.key", seq, result[1], k)]
    if kernel == "_npu_rotary_embedding":  # in place: its outputs are the arguments after the call
        cache, head_size = inputs["cos_sin_cache"], inputs["head_size"]
        rope = RotaryEmbedding(head_size, head_size, cache.shape[0], 10000.0, inputs["is_neox_style"], cache.dtype)
        rope.cos_sin_cache = cache  # this call's cache: what the layer asked the kernel to rotate with
        q, k = rope.forward_native(inputs["positions"], inputs["query"].clone(), inputs["key"].clone())
        return [deviation(kernel, seq, outputs["query_out"], q), deviation(f"{kernel}.key", seq, outputs["key_out"], k)]
    if kernel == "_npu_reshape_and_cache":
        exact = torch.equal(outputs["written_key"], inputs["key"]) and torch.equal(outputs["written_value"],
                                                                                   inputs["value"])
        return [Deviation(kernel, seq, 0.0 if exact else float("inf"), 0.0 if exact else float("nan"))]
    if kernel in ("npu_fused_infer_attention_score", "_npu_paged_attention"):
        out = result[0] if kernel == "npu_fused_infer_attention_score" else outputs["out"]
        ends = inputs.get("query_ends") or list(range(1, len(inputs["seq_lens"]) + 1))
        causal = inputs.get("sparse_mode", 0) == 3
        found, start = [], 0
        for i, end in enumerate(ends):
            if end > start:
                ref = _attention(inputs["query"][start:end], inputs["keys"][i], inputs["values"][i], inputs["scale"],
                                 causal)
                found.append(deviation(kernel, seq, out[start:end], ref))
            start = end
        return found
    raise AssertionError(f"no reference for {kernel}")
