"""The Triton kernels vLLM's GPU model runner launches, as tensor operations for the NPU.

vLLM's V1 runner computes each step's KV slot mapping with a Triton kernel
(``vllm.v1.worker.block_table.ComputeSlotMappingKernel.kernel``). Triton has no NPU backend in a
stock install, and vLLM lets a non-CUDA platform replace core Triton kernels through
``Platform.register_triton_kernel_overrides`` (its CPU platform does, with C++ kernels the NPU does
not have). The NPU platform registers the implementation below: the same arithmetic, in torch
operations on the device, so it runs wherever the tensors live.
"""

from __future__ import annotations

import torch

SLOT_MAPPING_KERNEL = "vllm.v1.worker.block_table.ComputeSlotMappingKernel.kernel"


def compute_slot_mapping(num_tokens: int, max_num_tokens: int, query_start_loc_ptr: torch.Tensor,
                         positions_ptr: torch.Tensor, block_table_ptr: torch.Tensor, block_table_stride: int,
                         slot_mapping_ptr: torch.Tensor, KV_CACHE_BLOCK_SIZE: int,  # noqa: N803 (Triton's names)
                         TOTAL_CP_WORLD_SIZE: int = 1, TOTAL_CP_RANK: int = 0,  # noqa: N803
                         CP_KV_CACHE_INTERLEAVE_SIZE: int = 1, PAD_ID: int = -1,  # noqa: N803
                         BLOCK_SIZE: int = 1024) -> None:  # noqa: N803
    """``slot_mapping[t] = block_table[req(t), pos(t) // block_size] * block_size + pos(t) % block_size``
    for the ``num_tokens`` scheduled tokens, ``PAD_ID`` for the rest up to ``max_num_tokens``.

    ``query_start_loc_ptr`` is ``[num_reqs + 1]`` (token ``t`` belongs to the request whose range
    holds it); ``block_table_ptr`` is ``[max_num_reqs, block_table_stride]``.
    """
    if TOTAL_CP_WORLD_SIZE != 1:
        raise NotImplementedError("context parallelism is not supported on the NPU platform")
    slot_mapping_ptr[num_tokens:max_num_tokens].fill_(PAD_ID)
    if num_tokens == 0:
        return
    device = positions_ptr.device
    query_start_loc = query_start_loc_ptr.to(torch.int64)
    token_index = torch.arange(num_tokens, device=device, dtype=torch.int64)
    request = torch.searchsorted(query_start_loc[1:], token_index, right=True)
    positions = positions_ptr[:num_tokens].to(torch.int64)
    block_index = positions // KV_CACHE_BLOCK_SIZE
    table = block_table_ptr.reshape(-1, block_table_stride)
    blocks = table[request, block_index].to(torch.int64)
    slot_mapping_ptr[:num_tokens] = blocks * KV_CACHE_BLOCK_SIZE + positions % KV_CACHE_BLOCK_SIZE


_registered = False


def register() -> None:
    """Install the overrides with vLLM's Triton kernel dispatcher, once per process."""
    global _registered
    if _registered:
        return
    from vllm.triton_utils.dispatcher import register_kernels

    register_kernels({SLOT_MAPPING_KERNEL: compute_slot_mapping})
    _registered = True
