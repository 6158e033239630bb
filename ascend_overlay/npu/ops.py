"""The hot ops of a decoder layer, on the NPU kernel when ``torch_npu`` is present, in plain PyTorch otherwise.

vLLM's ``CustomOp`` classes dispatch to ``forward_oot`` on an out-of-tree platform; the worker-phase
patches (``patches/worker/patch_activation.py`` and friends) make those call the functions here. Each
function has two paths with one contract:

* NPU: the ``torch_npu`` kernel, called with the arguments vllm-ascend uses for it, and its results
  reshaped into what vLLM's own implementation returns.
* CPU: the same arithmetic as vLLM's ``forward_native`` (float32 accumulation where vLLM does it), so
  that a machine without an NPU computes what stock vLLM computes; tests check both against vLLM.

Which path runs is decided per call from whether ``torch_npu`` is loaded or loadable (one dict lookup
and one cached check), never from guesses about attributes. On a machine with ``torch_npu`` the
tensors handed in must live on the NPU: that is always so under the NPU platform, which is the only
place the patches route here.

Kernel signatures (torch_npu 2.13/2.14, as vllm-ascend calls them; no NPU was available to re-check
them): ``npu_swiglu(x, dim=-1) -> y``; ``npu_rms_norm(x, gamma, epsilon) -> (y, rstd)``;
``npu_add_rms_norm(x1, x2, gamma, epsilon) -> (y, rstd, x1 + x2)``; ``npu_mrope(positions, query, key,
cos_sin_cache, head_size, *, mrope_section, rotary_mode, cache_mode) -> (query, key)`` on
``[num_tokens, num_heads * head_size]``.

Why ``npu_mrope`` for rotary embeddings, not ``_npu_rotary_embedding``: the ATB kernel behind the
latter builds its cos/sin tables once per process from the first cache it is given and ignores every
later one (op-plugin ``RopeAtb.cpp``), so a model whose layers use two RoPE settings (per-layer bases,
two rotary sizes) computes the wrong rotation on a card. ``npu_mrope`` reads the cache of each call
(vllm-ascend moved to it in its PR #13631).
"""

from __future__ import annotations

import sys
from types import ModuleType

import torch
import torch.nn.functional as F

from ascend_overlay.core.requirements import torch_npu_importable


def torch_npu_module() -> ModuleType | None:
    """The loaded ``torch_npu`` module, or None when this process cannot have one."""
    module = sys.modules.get("torch_npu")
    if module is not None:
        return module
    if torch_npu_importable():  # cached: after the first "no", this is a dict lookup
        return sys.modules.get("torch_npu")
    return None


# -- SiluAndMul ------------------------------------------------------------------------------------

def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """``silu(x[..., :d]) * x[..., d:]`` with ``d = x.shape[-1] // 2`` (vLLM's SiluAndMul)."""
    npu = torch_npu_module()
    if npu is not None:
        # npu_swiglu splits the last dimension in two halves, gate first: the layout vLLM uses.
        return npu.npu_swiglu(x, dim=-1)
    d = x.shape[-1] // 2
    return F.silu(x[..., :d]) * x[..., d:]


# -- RMSNorm ---------------------------------------------------------------------------------------

def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float,
             residual: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """vLLM's RMSNorm: ``y`` without a residual; ``(y, x + residual)`` with one, where ``y`` is the
    normalisation of ``x + residual`` (the new residual stream, in ``x``'s dtype)."""
    npu = torch_npu_module()
    if npu is not None:
        gamma = weight if weight is not None else torch.ones(x.shape[-1], dtype=x.dtype, device=x.device)
        if residual is None:
            y, _rstd = npu.npu_rms_norm(x, gamma, eps)
            return y
        y, _rstd, x_sum = npu.npu_add_rms_norm(x, residual, gamma, eps)
        return y, x_sum
    return _rms_norm_cpu(x, weight, eps, residual)


def _rms_norm_cpu(x: torch.Tensor, weight: torch.Tensor | None, eps: float,
                  residual: torch.Tensor | None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    # Same order of operations as vllm/ir/ops/layernorm.py, so bfloat16 rounds the same way.
    orig_dtype = x.dtype
    h = x.to(torch.float32)
    new_residual = None
    if residual is not None:
        h = h + residual.to(torch.float32)
        new_residual = h.to(orig_dtype)
    variance = h.pow(2).mean(dim=-1, keepdim=True)
    h = h * torch.rsqrt(variance + eps)
    if weight is not None:
        h = h.to(weight.dtype) * weight
    y = h.to(orig_dtype)
    return y if new_residual is None else (y, new_residual)


# -- RotaryEmbedding -------------------------------------------------------------------------------

def rotary_kernel_takes(head_size: int, rotary_dim: int, dtype: torch.dtype) -> bool:
    """Whether ``npu_mrope`` takes a layer of these sizes: head size and rotary size multiples of 32
    (16 in float32), the rotary part no larger than the head (op-plugin's npu_mrope constraints).
    Layers it does not take keep vLLM's own arithmetic."""
    step = 16 if dtype == torch.float32 else 32
    return head_size % step == 0 and rotary_dim % step == 0 and 0 < rotary_dim <= head_size


def rotary_embedding(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor | None,
                     head_size: int, rotary_dim: int, cos_sin_cache: torch.Tensor,
                     is_neox_style: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rotate the first ``rotary_dim`` channels of every head of ``query`` (and ``key``) by the
    angles of ``positions``; returns tensors shaped like the inputs, as vLLM's RotaryEmbedding does.

    ``cos_sin_cache`` is ``[max_position, rotary_dim]`` (cos half, then sin half) and must already be
    in ``query``'s dtype and on its device: the NPU kernel reads it as is.
    """
    npu = torch_npu_module()
    if npu is not None:
        return _rotary_npu(npu, positions, query, key, head_size, cos_sin_cache, is_neox_style)
    return _rotary_cpu(positions, query, key, head_size, rotary_dim, cos_sin_cache, is_neox_style)


def _rotary_npu(npu: ModuleType, positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor | None,
                head_size: int, cos_sin_cache: torch.Tensor,
                is_neox_style: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    num_tokens = query.shape[0]
    q = query.reshape(num_tokens, -1)
    # The kernel takes a key; a layer without one rotates a throwaway head.
    k = key.reshape(num_tokens, -1) if key is not None else q.new_zeros((num_tokens, head_size))
    q_out, k_out = npu.npu_mrope(positions.flatten(), q, k, cos_sin_cache, head_size, mrope_section=[0, 0, 0],
                                 rotary_mode="half" if is_neox_style else "interleave", cache_mode="default")
    return q_out.view(query.shape), (k_out.view(key.shape) if key is not None else None)


def _rotary_cpu(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor | None,
                head_size: int, rotary_dim: int, cos_sin_cache: torch.Tensor,
                is_neox_style: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    positions = positions.flatten()
    num_tokens = positions.shape[0]
    cos, sin = cos_sin_cache.index_select(0, positions).chunk(2, dim=-1)
    # [num_tokens, 1, rotary_dim // 2], in the activations' dtype as vLLM computes it
    cos = cos.unsqueeze(-2).to(query.dtype)
    sin = sin.unsqueeze(-2).to(query.dtype)

    def rotate(x: torch.Tensor) -> torch.Tensor:
        heads = x.view(num_tokens, -1, head_size)
        rot, rest = heads[..., :rotary_dim], heads[..., rotary_dim:]
        if is_neox_style:
            x1, x2 = torch.chunk(rot, 2, dim=-1)
        else:
            x1, x2 = rot[..., ::2], rot[..., 1::2]
        o1 = x1 * cos - x2 * sin
        o2 = x2 * cos + x1 * sin
        rotated = torch.cat((o1, o2), dim=-1) if is_neox_style else torch.stack((o1, o2), dim=-1).flatten(-2)
        return torch.cat((rotated, rest), dim=-1).reshape(x.shape)

    return rotate(query), (rotate(key) if key is not None else None)
