"""The torch_npu kernels the overlay calls, computed on CPU for the simulated device.

Each function has the signature torch_npu 2.14.0 publishes for it (parameter names, order, keyword-
only parameters and defaults; ``tests/test_npu_sim_schemas.py`` checks them against the wheel),
returns what the wheel's meta kernels say it returns (``tests/test_npu_sim_meta.py``), and computes
what the kernel's documentation specifies, in float32 with the result in the input dtype. Before it
computes, every call is held to the kernel's contract (``contracts``: dtypes, index dtypes and ranges,
shape limits, contiguity), which refuses what a card refuses. Tensor arguments must be on the NPU
(``context_lens`` of paged attention is a host tensor, as torch_npu takes it); a CPU tensor is
refused as the device would refuse it. Options the real kernel has but this simulation does not
compute (quantisation, other layouts and sparse modes) raise ``NotImplementedError`` naming the
option, never a silently different result. Every call is counted (``counters``) and, when asked for,
recorded (``capture``) so a run can show which kernels served it and what they computed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from ascend_overlay.npu.sim import capture, contracts
from ascend_overlay.npu.sim.counters import counters
from ascend_overlay.npu.sim.device import NpuTensor, wrap

_F = TypeVar("_F", bound=Callable[..., Any])
_MASK_SIZE = 2048  # the compressed causal mask torch_npu takes for sparse_mode 2/3/4: [2048, 2048]


def kernel(host_args: Sequence[str] = ()) -> Callable[[_F], _F]:
    """Count calls, check devices and the kernel's contract, hand the body CPU tensors and put its
    results on the NPU."""

    def decorate(body: _F) -> _F:
        import inspect

        signature = inspect.signature(body)

        @functools.wraps(body)
        def npu_kernel(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            index = None
            for name, value in bound.arguments.items():
                if not isinstance(value, torch.Tensor):
                    continue
                if isinstance(value, NpuTensor):
                    if index is None:
                        index = value.device.index
                    elif value.device.index != index:
                        raise RuntimeError(f"{body.__name__}: tensors on npu:{index} and {value.device}")
                    bound.arguments[name] = value._cpu
                elif name not in host_args:
                    raise RuntimeError(f"{body.__name__}: argument '{name}' is on {value.device}; the NPU kernel "
                                       f"takes it on the npu device")
            if index is None:
                raise RuntimeError(f"{body.__name__}: no argument is on the npu device")
            bound.apply_defaults()
            contracts.check(body.__name__, bound.arguments)
            counters.record(body.__name__)
            recording = capture.begin(body.__name__, bound.arguments)
            result = body(*bound.args, **bound.kwargs)
            if recording is not None:
                recording.finish(bound.arguments, result)
            return _to_npu(result, index)

        return npu_kernel  # type: ignore[return-value]

    return decorate


def on_host(kernel_fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A simulated kernel run on host tensors, its contract checked as on the device: how tests hold
    the arithmetic and the contract without installing the simulated device in their process (the
    device checks, counters and results on the NPU are the device's, tested in a simulated process)."""
    import inspect

    body = kernel_fn.__wrapped__  # type: ignore[attr-defined]
    bound = inspect.signature(body).bind(*args, **kwargs)
    bound.apply_defaults()
    contracts.check(body.__name__, bound.arguments)
    return body(*bound.args, **bound.kwargs)


def _to_npu(result: Any, index: int) -> Any:
    if isinstance(result, torch.Tensor):
        return wrap(result, index)
    if isinstance(result, tuple):
        return tuple(_to_npu(r, index) for r in result)
    return result


def _unsupported(kernel_name: str, **options: Any) -> None:
    for name, value in options.items():
        if value is not None:
            raise NotImplementedError(f"{kernel_name}: the simulated NPU does not compute '{name}'")


# -- activation and normalisation -------------------------------------------------------------------

@kernel()
def npu_swiglu(self: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """SwiGLU: ``silu(a) * b`` of the two halves of ``self`` along ``dim`` (gate first)."""
    gate, up = self.float().chunk(2, dim=dim)
    return (F.silu(gate) * up).to(self.dtype)


def _rms(x: torch.Tensor, gamma: torch.Tensor, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    # rstd over the trailing dimensions that gamma covers, as the kernel defines it.
    dims = tuple(range(x.dim() - gamma.dim(), x.dim()))
    h = x.float()
    rstd = torch.rsqrt(h.pow(2).mean(dim=dims, keepdim=True) + epsilon)
    return (h * rstd * gamma.float()).to(x.dtype), rstd


@kernel()
def npu_rms_norm(self: torch.Tensor, gamma: torch.Tensor, epsilon: float = 1e-06) -> tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm: ``(y, rstd)`` with ``y = self * rstd * gamma``, ``rstd = 1/sqrt(mean(self^2) + eps)``."""
    return _rms(self, gamma, epsilon)


@kernel()
def npu_add_rms_norm(x1: torch.Tensor, x2: torch.Tensor, gamma: torch.Tensor,
                     epsilon: float = 1e-06) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Residual add then RMSNorm: ``(y, rstd, x)`` with ``x = x1 + x2`` in ``x1``'s dtype."""
    x = (x1.float() + x2.float()).to(x1.dtype)
    y, rstd = _rms(x, gamma, epsilon)
    return y, rstd, x


# -- rotary embedding ----------------------------------------------------------------------------------

def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, neox: bool) -> torch.Tensor:
    """``x`` ``[tokens, heads, rotary_dim]`` rotated by ``cos``/``sin`` ``[tokens, 1, rotary_dim // 2]``,
    in float32."""
    h = x.float()
    if neox:
        a, b = h.chunk(2, dim=-1)
        return torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)
    a, b = h[..., 0::2], h[..., 1::2]
    return torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)


class _FrozenRopeTables:
    """The ATB Rope kernel's process statics: cos/sin built from the first ``cos_sin_cache`` it is
    given, reused for every later call whatever cache that call passes (op-plugin RopeAtb.cpp)."""

    def __init__(self) -> None:
        self.cos: torch.Tensor | None = None
        self.sin: torch.Tensor | None = None

    def tables(self, cos_sin_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cos is None or self.sin is None:
            cos, sin = cos_sin_cache.chunk(2, dim=-1)
            self.cos, self.sin = cos.clone(), sin.clone()
        return self.cos, self.sin


_rope_tables = _FrozenRopeTables()


@kernel(host_args=())
def _npu_rotary_embedding(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor, head_size: int,
                          cos_sin_cache: torch.Tensor, is_neox_style: bool) -> None:
    """Rotate every head of ``query`` and ``key`` (``[tokens, heads * head_size]``) in place by the
    angles of ``positions``, with the cos/sin this process froze at its first call (ATB Rope)."""
    cos, sin = _rope_tables.tables(cos_sin_cache)
    if 2 * cos.shape[-1] != head_size:
        raise RuntimeError(f"_npu_rotary_embedding: RopeOperation setup failed! cos/sin frozen from this process's "
                           f"first cos_sin_cache have {2 * cos.shape[-1]} channels, head_size is {head_size}")
    flat = positions.flatten().long()
    if flat.numel() and int(flat.max()) >= cos.shape[0]:
        raise RuntimeError(f"_npu_rotary_embedding: position {int(flat.max())} is outside the {cos.shape[0]} rows "
                           f"of the cos/sin this process froze at its first call")
    cos_t, sin_t = cos.index_select(0, flat).float()[:, None, :], sin.index_select(0, flat).float()[:, None, :]
    for tensor in (query, key):
        heads = tensor.view(tensor.shape[0], -1, head_size)
        heads.copy_(_rotate(heads, cos_t, sin_t, is_neox_style).to(tensor.dtype))


@kernel()
def npu_mrope(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor, cos_sin_cache: torch.Tensor,
              head_size: int, *, mrope_section: Sequence[int] | None = None, rotary_mode: str | None = "half",
              cache_mode: str | None = "default") -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE mode (1-D ``positions``): new ``query``/``key`` (``[tokens, heads * head_size]``) whose first
    ``rotary_dim = cos_sin_cache.shape[-1]`` channels of every head are rotated by this call's cache
    (cos half, then sin half); the other channels pass through. ``rotary_mode`` 'half' is NeoX style,
    'interleave' GPT-J style."""
    rotary_dim = cos_sin_cache.shape[-1]
    flat = positions.long()
    cos, sin = cos_sin_cache.index_select(0, flat).float().chunk(2, dim=-1)
    cos, sin = cos[:, None, :], sin[:, None, :]
    outputs = []
    for tensor in (query, key):
        heads = tensor.view(tensor.shape[0], -1, head_size)
        rotated = _rotate(heads[..., :rotary_dim], cos, sin, rotary_mode == "half").to(tensor.dtype)
        outputs.append(torch.cat((rotated, heads[..., rotary_dim:]), dim=-1).reshape(tensor.shape))
    return outputs[0], outputs[1]


# -- paged KV cache and attention ---------------------------------------------------------------------

@kernel()
def _npu_reshape_and_cache(key: torch.Tensor, value: torch.Tensor, key_cache: torch.Tensor,
                           value_cache: torch.Tensor, slot_indices: torch.Tensor) -> None:
    """Write each token's ``key``/``value`` (``[tokens, kv_heads, head_size]``) into the paged caches
    (``[blocks, block_size, kv_heads, head_size]``) at its slot (int32, each in range: the contract)."""
    slots = slot_indices.long()
    key_cache.view(-1, *key_cache.shape[2:]).index_copy_(0, slots, key)
    value_cache.view(-1, *value_cache.shape[2:]).index_copy_(0, slots, value)


def _gather_kv(cache: torch.Tensor, blocks: torch.Tensor, length: int, kv_heads: int) -> torch.Tensor:
    """The first ``length`` tokens of one sequence from a paged cache, ``[length, kv_heads, head]``."""
    block_size = cache.shape[1]
    count = -(-length // block_size)
    gathered = cache[blocks[:count].long()]  # [count, block_size, ...]
    return gathered.reshape(count * block_size, kv_heads, -1)[:length]


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, causal: bool) -> torch.Tensor:
    """Softmax attention of ``q`` ``[Lq, N, D]`` over ``k``/``v`` ``[Lk, Nkv, D]`` in float32; with
    ``causal`` query i sees keys ``j <= Lk - Lq + i`` (the causal mask aligned to the last key)."""
    heads, kv_heads = q.shape[1], k.shape[1]
    if heads != kv_heads:
        k = k.repeat_interleave(heads // kv_heads, dim=1)
        v = v.repeat_interleave(heads // kv_heads, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q.float(), k.float()) * scale
    if causal:
        lq, lk = q.shape[0], k.shape[0]
        visible = torch.arange(lk)[None, :] <= (torch.arange(lq)[:, None] + (lk - lq))
        scores = scores.masked_fill(~visible, float("-inf"))
    return torch.einsum("hqk,khd->qhd", torch.softmax(scores, dim=-1), v.float())


@kernel(host_args=("context_lens",))
def _npu_paged_attention(query: torch.Tensor, key_cache: torch.Tensor, value_cache: torch.Tensor,
                         num_kv_heads: int, num_heads: int, scale_value: float, block_table: torch.Tensor,
                         context_lens: torch.Tensor, out: torch.Tensor, workspace: torch.Tensor | None = None) -> None:
    """Decode attention: one query token per sequence (``[seqs, heads, head_size]``) over its
    ``context_lens`` cached tokens, written into ``out``."""
    if query.shape[1] != num_heads or key_cache.shape[2] != num_kv_heads:
        raise ValueError(f"_npu_paged_attention: num_heads={num_heads}/num_kv_heads={num_kv_heads} do not match "
                         f"query {tuple(query.shape)} and key_cache {tuple(key_cache.shape)}")
    for seq, length in enumerate(context_lens.tolist()):
        k = _gather_kv(key_cache, block_table[seq], length, num_kv_heads)
        v = _gather_kv(value_cache, block_table[seq], length, num_kv_heads)
        out[seq] = _attend(query[seq:seq + 1], k, v, scale_value, causal=False)[0].to(out.dtype)


@kernel()
def npu_fused_infer_attention_score(
        query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *, pse_shift: torch.Tensor | None = None,
        atten_mask: torch.Tensor | None = None, actual_seq_lengths: Sequence[int] | None = None,
        actual_seq_lengths_kv: Sequence[int] | None = None, dequant_scale1: torch.Tensor | None = None,
        quant_scale1: torch.Tensor | None = None, dequant_scale2: torch.Tensor | None = None,
        quant_scale2: torch.Tensor | None = None, quant_offset2: torch.Tensor | None = None,
        antiquant_scale: torch.Tensor | None = None, antiquant_offset: torch.Tensor | None = None,
        key_antiquant_scale: torch.Tensor | None = None, key_antiquant_offset: torch.Tensor | None = None,
        value_antiquant_scale: torch.Tensor | None = None, value_antiquant_offset: torch.Tensor | None = None,
        block_table: torch.Tensor | None = None, query_padding_size: torch.Tensor | None = None,
        kv_padding_size: torch.Tensor | None = None, key_shared_prefix: torch.Tensor | None = None,
        value_shared_prefix: torch.Tensor | None = None, actual_shared_prefix_len: Sequence[int] | None = None,
        query_rope: torch.Tensor | None = None, key_rope: torch.Tensor | None = None,
        key_rope_antiquant_scale: torch.Tensor | None = None, num_heads: int = 1, scale: float = 1.0,
        pre_tokens: int = 2147483647, next_tokens: int = 2147483647, input_layout: str = "BSH",
        num_key_value_heads: int = 0, sparse_mode: int = 0, inner_precise: int = 0, block_size: int = 0,
        antiquant_mode: int = 0, key_antiquant_mode: int = 0, value_antiquant_mode: int = 0,
        softmax_lse_flag: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused inference attention, the TND layout with a paged KV cache as vllm-ascend calls it:
    ``query`` ``[tokens, heads, head_size]``; ``key``/``value`` the caches viewed as
    ``[blocks, block_size, kv_heads * head_size]``; ``actual_seq_lengths`` the cumulative query ends,
    ``actual_seq_lengths_kv`` each sequence's KV length. ``sparse_mode`` 3 (with the 2048x2048 causal
    mask) is causal attention aligned to the last key; 0 without a mask attends to every key."""
    _unsupported("npu_fused_infer_attention_score", pse_shift=pse_shift, dequant_scale1=dequant_scale1,
                 quant_scale1=quant_scale1, dequant_scale2=dequant_scale2, quant_scale2=quant_scale2,
                 quant_offset2=quant_offset2, antiquant_scale=antiquant_scale, antiquant_offset=antiquant_offset,
                 key_antiquant_scale=key_antiquant_scale, key_antiquant_offset=key_antiquant_offset,
                 value_antiquant_scale=value_antiquant_scale, value_antiquant_offset=value_antiquant_offset,
                 query_padding_size=query_padding_size, kv_padding_size=kv_padding_size,
                 key_shared_prefix=key_shared_prefix, value_shared_prefix=value_shared_prefix,
                 actual_shared_prefix_len=actual_shared_prefix_len, query_rope=query_rope, key_rope=key_rope,
                 key_rope_antiquant_scale=key_rope_antiquant_scale)
    if input_layout != "TND" or block_table is None:
        raise NotImplementedError("npu_fused_infer_attention_score: the simulated NPU computes the TND layout "
                                  "with a block_table (paged KV cache) only")
    if sparse_mode == 3:
        if atten_mask is None or tuple(atten_mask.shape) != (_MASK_SIZE, _MASK_SIZE):
            raise ValueError(f"npu_fused_infer_attention_score: sparse_mode 3 needs the compressed "
                             f"{_MASK_SIZE}x{_MASK_SIZE} causal atten_mask")
        causal = True
    elif sparse_mode == 0 and atten_mask is None:
        causal = False
    else:
        raise NotImplementedError(f"npu_fused_infer_attention_score: sparse_mode {sparse_mode} "
                                  f"(atten_mask {'given' if atten_mask is not None else 'none'}) is not simulated")
    if actual_seq_lengths is None or actual_seq_lengths_kv is None:
        raise ValueError("npu_fused_infer_attention_score: TND needs actual_seq_lengths and actual_seq_lengths_kv")
    kv_heads = num_key_value_heads or num_heads
    if query.shape[1] != num_heads or key.shape[-1] != kv_heads * query.shape[2] or key.shape[1] != block_size:
        raise ValueError(f"npu_fused_infer_attention_score: query {tuple(query.shape)}, key {tuple(key.shape)} do "
                         f"not match num_heads={num_heads}, num_key_value_heads={kv_heads}, block_size={block_size}")
    q_ends = [int(x) for x in actual_seq_lengths]
    kv_lens = [int(x) for x in actual_seq_lengths_kv]
    if len(q_ends) != len(kv_lens):
        raise ValueError("npu_fused_infer_attention_score: one KV length per query sequence is needed")
    out = torch.zeros_like(query)
    start = 0
    for seq, (end, length) in enumerate(zip(q_ends, kv_lens, strict=True)):
        if end > start:
            k = _gather_kv(key, block_table[seq], length, kv_heads)
            v = _gather_kv(value, block_table[seq], length, kv_heads)
            out[start:end] = _attend(query[start:end], k, v, scale, causal).to(query.dtype)
        start = end
    if softmax_lse_flag:
        raise NotImplementedError("npu_fused_infer_attention_score: softmax_lse_flag is not simulated")
    return out, torch.empty(0, dtype=torch.float32)  # no lse asked for: the wheel's meta kernel returns [0]


# -- published but not simulated ----------------------------------------------------------------------

def npu_fusion_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, head_num: int,
                         input_layout: str, pse: torch.Tensor | None = None, padding_mask: torch.Tensor | None = None,
                         atten_mask: torch.Tensor | None = None, scale: float = 1., keep_prob: float = 1.,
                         pre_tockens: int = 2147483647, next_tockens: int = 2147483647, inner_precise: int = 0,
                         prefix: Sequence[int] | None = None, actual_seq_qlen: Sequence[int] | None = None,
                         actual_seq_kvlen: Sequence[int] | None = None, sparse_mode: int = 0,
                         gen_mask_parallel: bool = True, sync: bool = False, softmax_layout: str = "",
                         sink: torch.Tensor | None = None, dropout_mask: torch.Tensor | None = None, seed: int = 0,
                         offset: int = 0) -> Any:
    """Training flash attention. transformers imports this name whenever an NPU is available; vLLM
    and the overlay never call it, so the simulator names it and refuses to compute it."""
    raise NotImplementedError("npu_fusion_attention is not simulated: the simulated NPU computes the kernels "
                              "vLLM's NPU path calls (see ascend_overlay.npu.sim.kernels.KERNELS)")


KERNELS = {f.__name__: f for f in (npu_swiglu, npu_rms_norm, npu_add_rms_norm, _npu_rotary_embedding, npu_mrope,
                                   _npu_reshape_and_cache, _npu_paged_attention, npu_fused_infer_attention_score)}
NOT_SIMULATED = {f.__name__: f for f in (npu_fusion_attention,)}
