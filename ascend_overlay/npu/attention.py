"""Paged attention on the NPU, on the torch_npu kernels vllm-ascend uses.

vLLM's fallback for a device without a backend of its own is FLEX_ATTENTION, which wraps
``flex_attention`` in ``torch.compile(fullgraph=True)``: inductor has no NPU code generator, so it
cannot run on an NPU, and the NPU platform runs eager. This backend runs eagerly, three kernels:

* ``torch_npu._npu_reshape_and_cache`` writes each step's keys and values into the paged cache;
* ``torch_npu._npu_paged_attention`` serves batches of pure decodes (one query token per sequence);
* ``torch_npu.npu_fused_infer_attention_score`` serves everything else (prefill, chunked prefill,
  prefix-cache hits, mixed batches) in the TND layout over the paged cache, causal mask aligned to
  the last key (``sparse_mode=3`` with the 2048x2048 compressed mask), as vllm-ascend calls it.

The KV cache: vLLM (0.32/0.33) hands every layer a view ``[blocks, heads, block_size, 2 * head_size]``
of its own contiguous region (layout LBHNC, which this backend asks for). The kernels take
``key_cache``/``value_cache`` as two contiguous ``[blocks, block_size, kv_heads, head_size]``
tensors, vllm-ascend's layout, so the backend reads the same region as ``[2, blocks, block_size,
kv_heads, head_size]``: the layer's memory is the same, only its interpretation is the kernels'.
Block ids, the only thing vLLM knows about the inside of a block, keep their meaning.

Index tensors as the kernels take them, the way vllm-ascend passes them: vLLM's slot mapping is int64
and padded with -1 when vLLM pads a batch; the ATB cache write takes int32 slots, all in range, so each
step's slots are cut to the step's real tokens and cast to int32 once (``build``), and a step without
attention metadata (vLLM's dummy runs, whose slots are all -1) writes nothing. Block tables and
context lengths are int32 already.

Not provided (each refused with a clear error, at start-up where vLLM builds the layer): sliding
windows, ALiBi, soft-capping, attention sinks, encoder or cross attention, quantised KV caches,
speculative decoding, micro-batching, and head sizes or head counts the kernels do not take. Dtypes:
float16 and bfloat16, the only ones the three kernels take (float32 is refused by the platform).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from vllm.v1.attention.backend import (
    AttentionBackend,
    AttentionImpl,
    AttentionLayer,
    AttentionMetadataBuilder,
    AttentionType,
    CommonAttentionMetadata,
)
from vllm.v1.attention.backends.registry import AttentionBackendEnum
from vllm.v1.kv_cache_interface import AttentionSpec, KVCacheLayout

BACKEND_NAME = "NPU_ATTN"
_MASK_SIZE = 2048     # torch_npu's compressed causal mask for sparse_mode 3
_RIGHT_DOWN_CAUSAL = 3


def _torch_npu() -> Any:
    import torch_npu

    return torch_npu


class NPUAttentionBackend(AttentionBackend):
    forward_includes_kv_cache_update: bool = False  # vLLM calls do_kv_cache_update first

    supported_dtypes: ClassVar[list[torch.dtype]] = [torch.float16, torch.bfloat16]
    supported_kv_cache_dtypes: ClassVar[list[Any]] = ["auto"]

    @staticmethod
    def get_name() -> str:
        return BACKEND_NAME

    @staticmethod
    def get_impl_cls() -> type[NPUAttentionImpl]:
        return NPUAttentionImpl

    @staticmethod
    def get_builder_cls() -> type[NPUAttentionMetadataBuilder]:
        return NPUAttentionMetadataBuilder

    @staticmethod
    def get_supported_kernel_block_sizes(kv_cache_spec: Any = None) -> list[Any]:
        return [128]  # the block size vllm-ascend runs its paged kernels with

    @classmethod
    def supported_kv_cache_layouts(cls) -> tuple[KVCacheLayout, ...]:
        # Layer-compact and block-contiguous: each layer's cache is one contiguous region,
        # which the kernels read as separate key and value caches (module docstring).
        return (KVCacheLayout.LBHNC,)

    @classmethod
    def supports_attn_type(cls, attn_type: str) -> bool:
        return attn_type == AttentionType.DECODER


def _register() -> None:
    """vLLM names a layer's backend by ``AttentionBackendEnum[get_name()]``: one member for ours."""
    if BACKEND_NAME not in AttentionBackendEnum.__members__:
        AttentionBackendEnum.register(BACKEND_NAME, f"{__name__}.NPUAttentionBackend")


_register()


def causal_mask() -> torch.Tensor:
    """The compressed causal mask FIA takes for ``sparse_mode`` 3 (1 = masked, upper triangle), on the
    host: the one vllm-ascend builds (``AttentionMaskBuilder.get_splitfuse_attn_mask``)."""
    return torch.triu(torch.ones(_MASK_SIZE, _MASK_SIZE, dtype=torch.bool), diagonal=1).to(torch.int8)


@dataclass
class NPUAttentionMetadata:
    num_actual_tokens: int
    decode_only: bool                # one query token per sequence: _npu_paged_attention
    query_ends: list[int]            # cumulative query ends (TND actual_seq_lengths), host
    seq_lens: list[int]              # KV length of each sequence, host
    seq_lens_host: torch.Tensor      # the same as an int32 host tensor (paged attention's context_lens)
    block_table: torch.Tensor        # [sequences, max_blocks] int32, device
    slot_indices: torch.Tensor       # [num_actual_tokens] int32, device: the step's real slots only
    attn_mask: torch.Tensor          # [2048, 2048] int8 causal mask, device


class NPUAttentionMetadataBuilder(AttentionMetadataBuilder[NPUAttentionMetadata]):
    def __init__(self, kv_cache_spec: AttentionSpec, layer_names: list[str], vllm_config: Any,
                 device: torch.device) -> None:
        super().__init__(kv_cache_spec, layer_names, vllm_config, device)
        if vllm_config.speculative_config is not None:
            raise NotImplementedError("the NPU attention backend does not support speculative decoding")
        self._mask: torch.Tensor | None = None

    def _causal_mask(self) -> torch.Tensor:
        if self._mask is None:
            self._mask = causal_mask().to(self.device)
        return self._mask

    def build(self, common_prefix_len: int, common_attn_metadata: CommonAttentionMetadata,
              fast_build: bool = False) -> NPUAttentionMetadata:
        meta = common_attn_metadata
        num_reqs = meta.num_reqs
        query_starts = meta.query_start_loc_cpu[: num_reqs + 1]
        # Exact on the host without a device sync: vLLM keeps this bound, precise for every row
        # outside speculative decoding (refused above).
        seq_lens_host = meta.seq_lens_cpu_upper_bound
        if seq_lens_host is None:
            seq_lens_host = meta.seq_lens.to("cpu")
        seq_lens_host = seq_lens_host[:num_reqs].to(torch.int32)
        return NPUAttentionMetadata(
            num_actual_tokens=meta.num_actual_tokens,
            decode_only=meta.max_query_len == 1 and meta.num_actual_tokens == num_reqs,
            query_ends=query_starts[1:].tolist(),
            seq_lens=seq_lens_host.tolist(),
            seq_lens_host=seq_lens_host,
            block_table=meta.block_table_tensor[:num_reqs],
            slot_indices=meta.slot_mapping[: meta.num_actual_tokens].to(torch.int32),
            attn_mask=self._causal_mask(),
        )


def paged_caches(kv_cache: torch.Tensor, num_kv_heads: int, head_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The key and value caches, ``[blocks, block_size, kv_heads, head_size]`` each, of one layer's
    KV cache region as vLLM hands it over (``[blocks, kv_heads, block_size, 2 * head_size]``)."""
    if not kv_cache.is_contiguous():
        raise RuntimeError("the NPU attention backend needs each layer's KV cache as one contiguous region "
                           "(KV cache layout LBHNC); got a strided view")
    num_blocks, _, block_size, _ = kv_cache.shape
    key_cache, value_cache = kv_cache.view(2, num_blocks, block_size, num_kv_heads, head_size).unbind(0)
    return key_cache, value_cache


# The kernels' limits on a layer's shape (docs/npu.md, contract table): a model outside them is refused
# when vLLM builds it, not at its first request.
MAX_HEAD_SIZE = 256       # _npu_paged_attention: head size in (0, 256]
HEAD_SIZE_MULTIPLE = 16   # npu_fused_infer_attention_score: fp16/bf16 with more than one query token
MAX_HEADS = 256           # npu_fused_infer_attention_score: query heads
MAX_GROUP = 64            # npu_fused_infer_attention_score: query heads per KV head


def kernel_shape_problems(num_heads: int, num_kv_heads: int, head_size: int) -> list[str]:
    """Why the attention kernels cannot take a layer of this shape (empty: they can)."""
    problems = []
    if not 0 < head_size <= MAX_HEAD_SIZE:
        problems.append(f"head size {head_size} is outside (0, {MAX_HEAD_SIZE}] (_npu_paged_attention)")
    if head_size % HEAD_SIZE_MULTIPLE:
        problems.append(f"head size {head_size} is not a multiple of {HEAD_SIZE_MULTIPLE} "
                        f"(npu_fused_infer_attention_score)")
    if num_heads > MAX_HEADS:
        problems.append(f"{num_heads} query heads per rank exceed {MAX_HEADS} (npu_fused_infer_attention_score)")
    if num_kv_heads <= 0 or num_heads % num_kv_heads:
        problems.append(f"{num_heads} query heads are not a multiple of {num_kv_heads} KV heads")
    elif num_heads // num_kv_heads > MAX_GROUP:
        problems.append(f"{num_heads // num_kv_heads} query heads per KV head exceed {MAX_GROUP} "
                        f"(npu_fused_infer_attention_score)")
    return problems


def _step_metadata(layer: Any) -> NPUAttentionMetadata | None:
    """This step's metadata of ``layer``, as vLLM's forward context holds it (None in a dummy run)."""
    from vllm.forward_context import get_forward_context

    metadata = get_forward_context().attn_metadata
    if metadata is None:
        return None
    if isinstance(metadata, list):
        raise NotImplementedError("the NPU attention backend does not support micro-batched or speculative "
                                  "metadata (a list of per-layer dicts)")
    return metadata.get(layer.layer_name)


class NPUAttentionImpl(AttentionImpl[NPUAttentionMetadata]):
    def __init__(self, num_heads: int, head_size: int, scale: float, num_kv_heads: int | None = None,
                 alibi_slopes: list[float] | None = None, sliding_window: int | None = None,
                 kv_cache_dtype: str = "auto", logits_soft_cap: float | None = None,
                 attn_type: str = AttentionType.DECODER, kv_sharing_target_layer_name: str | None = None,
                 sinks: torch.Tensor | None = None, **extra: Any) -> None:
        unsupported = {"ALiBi": alibi_slopes is not None, "sliding windows": sliding_window is not None,
                       "logits soft-capping": bool(logits_soft_cap), "attention sinks": sinks is not None,
                       f"{attn_type} attention": attn_type != AttentionType.DECODER,
                       f"kv_cache_dtype={kv_cache_dtype}": kv_cache_dtype != "auto",
                       f"options {sorted(extra)}": bool(extra)}
        refused = [name for name, present in unsupported.items() if present]
        if refused:
            raise NotImplementedError(f"the NPU attention backend does not support {', '.join(refused)}")
        kernel_limits = kernel_shape_problems(num_heads, num_kv_heads or num_heads, head_size)
        if kernel_limits:
            raise NotImplementedError(f"the NPU attention kernels cannot serve this model's attention: "
                                      f"{'; '.join(kernel_limits)}")
        self.num_heads = num_heads
        self.head_size = head_size
        self.scale = float(scale)
        self.num_kv_heads = num_kv_heads or num_heads
        self.kv_cache_dtype = kv_cache_dtype
        self.attn_type = attn_type
        self.kv_sharing_target_layer_name = kv_sharing_target_layer_name

    def do_kv_cache_update(self, layer: torch.nn.Module, key: torch.Tensor, value: torch.Tensor,
                           kv_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
        """vLLM's ``slot_mapping`` (int64, padded with -1) is not what the kernel takes: the step's
        metadata carries the real tokens' slots as int32. A dummy run has no metadata and only padding
        slots: nothing is written, as vLLM's own cache kernels skip -1."""
        metadata = _step_metadata(layer)
        if metadata is None:
            return
        key_cache, value_cache = paged_caches(kv_cache, self.num_kv_heads, self.head_size)
        tokens = metadata.num_actual_tokens
        _torch_npu()._npu_reshape_and_cache(key=key[:tokens], value=value[:tokens], key_cache=key_cache,
                                            value_cache=value_cache, slot_indices=metadata.slot_indices)

    def forward(self, layer: AttentionLayer, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                kv_cache: torch.Tensor, attn_metadata: NPUAttentionMetadata | None, output: torch.Tensor,
                output_scale: torch.Tensor | None = None,
                output_block_scale: torch.Tensor | None = None) -> torch.Tensor:
        if output_scale is not None or output_block_scale is not None:
            raise NotImplementedError("the NPU attention backend does not fuse output quantisation")
        if attn_metadata is None:
            return output  # vLLM's profiling/warm-up pass without a KV cache
        npu = _torch_npu()
        key_cache, value_cache = paged_caches(kv_cache, self.num_kv_heads, self.head_size)
        tokens = attn_metadata.num_actual_tokens
        if attn_metadata.decode_only:
            npu._npu_paged_attention(query=query[:tokens], key_cache=key_cache, value_cache=value_cache,
                                     num_kv_heads=self.num_kv_heads, num_heads=self.num_heads,
                                     scale_value=self.scale, block_table=attn_metadata.block_table,
                                     context_lens=attn_metadata.seq_lens_host, out=output[:tokens])
            return output
        num_blocks, block_size = key_cache.shape[:2]
        result, _ = npu.npu_fused_infer_attention_score(
            query[:tokens], key_cache.view(num_blocks, block_size, -1), value_cache.view(num_blocks, block_size, -1),
            atten_mask=attn_metadata.attn_mask, block_table=attn_metadata.block_table, input_layout="TND",
            block_size=block_size, actual_seq_lengths=attn_metadata.query_ends,
            actual_seq_lengths_kv=attn_metadata.seq_lens, num_key_value_heads=self.num_kv_heads,
            num_heads=self.num_heads, scale=self.scale, sparse_mode=_RIGHT_DOWN_CAUSAL)
        output[:tokens] = result.view(tokens, self.num_heads, self.head_size)
        return output
