"""The simulated NPU's kernels compute what the torch_npu kernels specify, checked against plain
references written here (and vLLM's own rotary embedding).

Each kernel's arithmetic is its undecorated body (``kernel.__wrapped__``), which runs on CPU
tensors; the device plumbing around it (NPU arguments, counters) is checked in a simulated process
by tests/test_npu_sim_device.py. Nothing here installs the simulated device in this process.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ascend_overlay.npu.sim import kernels

TOL = {"atol": 1e-5, "rtol": 1e-5}


def rand(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(dtype)


def body(kernel):
    return kernel.__wrapped__


# -- activation and normalisation -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_swiglu_is_silu_of_the_first_half_times_the_second(dtype):
    x = rand(5, 2 * 48, seed=1, dtype=dtype)
    expected = (F.silu(x[..., :48].float()) * x[..., 48:].float()).to(dtype)
    torch.testing.assert_close(body(kernels.npu_swiglu)(x), expected, **TOL)


def _rms_reference(x: torch.Tensor, gamma: torch.Tensor, eps: float) -> torch.Tensor:
    h = x.double()
    return (h / torch.sqrt(h.pow(2).mean(-1, keepdim=True) + eps) * gamma.double()).to(x.dtype)


def test_rms_norm_returns_the_normalised_rows_and_their_rstd():
    x, gamma = rand(7, 64, seed=2), rand(64, seed=3)
    y, rstd = body(kernels.npu_rms_norm)(x, gamma, 1e-6)
    torch.testing.assert_close(y, _rms_reference(x, gamma, 1e-6), **TOL)
    assert rstd.shape == (7, 1) and rstd.dtype == torch.float32
    torch.testing.assert_close(rstd, 1 / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6), **TOL)


def test_add_rms_norm_normalises_the_sum_and_returns_it():
    x1, x2, gamma = rand(3, 32, seed=4), rand(3, 32, seed=5), rand(32, seed=6)
    y, rstd, total = body(kernels.npu_add_rms_norm)(x1, x2, gamma, 1e-5)
    torch.testing.assert_close(total, x1 + x2, **TOL)
    torch.testing.assert_close(y, _rms_reference(x1 + x2, gamma, 1e-5), **TOL)
    assert rstd.shape == (3, 1)


# -- rotary embedding: equal to vLLM's own, in place --------------------------------------------------

@pytest.mark.parametrize("is_neox_style", [True, False])
def test_rotary_embedding_equals_vllm_in_place(vllm_config, is_neox_style):
    from vllm.model_executor.layers.rotary_embedding import get_rope

    head_size, heads, kv_heads, tokens = 64, 4, 2, 6
    rope = get_rope(head_size, max_position=128, is_neox_style=is_neox_style, dtype=torch.float32)
    positions = torch.tensor([0, 3, 9, 17, 64, 127])
    query, key = rand(tokens, heads * head_size, seed=7), rand(tokens, kv_heads * head_size, seed=8)
    expected_q, expected_k = rope.forward_native(positions, query.clone(), key.clone())
    q, k = query.clone(), key.clone()
    assert body(kernels._npu_rotary_embedding)(positions, q, k, head_size, rope.cos_sin_cache, is_neox_style) is None
    torch.testing.assert_close(q, expected_q, **TOL)
    torch.testing.assert_close(k, expected_k, **TOL)


def test_rotary_embedding_refuses_a_partial_cache():
    with pytest.raises(ValueError, match="rotates whole heads"):
        body(kernels._npu_rotary_embedding)(torch.tensor([0]), rand(1, 64, seed=1), rand(1, 64, seed=2), 64,
                                            rand(8, 32, seed=3), True)


# -- paged KV cache and attention ---------------------------------------------------------------------

BLOCK, KV_HEADS, HEADS, HEAD = 4, 2, 4, 16
SCALE = 1 / math.sqrt(HEAD)


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """Plain softmax attention in float64: ``q`` [Lq, H, D] are the last Lq positions of a sequence
    whose keys/values are ``k``/``v`` [Lk, Hkv, D]."""
    lq, lk = q.shape[0], k.shape[0]
    group = q.shape[1] // k.shape[1]
    out = torch.empty(q.shape, dtype=torch.float64)
    for h in range(q.shape[1]):
        scores = q[:, h].double() @ k[:, h // group].double().T * SCALE
        if causal:
            for i in range(lq):
                scores[i, lk - lq + i + 1:] = float("-inf")
        out[:, h] = torch.softmax(scores, dim=-1) @ v[:, h // group].double()
    return out.float()


class PagedSequences:
    """Sequences whose keys and values live in a paged cache at scattered blocks."""

    def __init__(self, lengths: list[int], seed: int) -> None:
        self.lengths = lengths
        self.blocks_per_seq = max(-(-n // BLOCK) for n in lengths)
        num_blocks = self.blocks_per_seq * len(lengths) + 3
        order = torch.randperm(num_blocks, generator=torch.Generator().manual_seed(seed))
        self.block_table = order[: self.blocks_per_seq * len(lengths)].view(len(lengths), -1).to(torch.int32)
        self.key_cache = torch.zeros(num_blocks, BLOCK, KV_HEADS, HEAD)
        self.value_cache = torch.zeros(num_blocks, BLOCK, KV_HEADS, HEAD)
        self.keys = [rand(n, KV_HEADS, HEAD, seed=seed + 10 + i) for i, n in enumerate(lengths)]
        self.values = [rand(n, KV_HEADS, HEAD, seed=seed + 50 + i) for i, n in enumerate(lengths)]

    def slots(self, seq: int, positions: range) -> list[int]:
        return [int(self.block_table[seq, p // BLOCK]) * BLOCK + p % BLOCK for p in positions]

    def fill(self) -> None:
        """Write every token through _npu_reshape_and_cache, with a padding slot (-1) mixed in."""
        keys = torch.cat(self.keys + [rand(1, KV_HEADS, HEAD, seed=99)])
        values = torch.cat(self.values + [rand(1, KV_HEADS, HEAD, seed=98)])
        slots = [s for i, n in enumerate(self.lengths) for s in self.slots(i, range(n))] + [-1]
        body(kernels._npu_reshape_and_cache)(keys, values, self.key_cache, self.value_cache,
                                             torch.tensor(slots, dtype=torch.int64))


def test_reshape_and_cache_writes_each_token_at_its_slot_and_skips_padding():
    seqs = PagedSequences([5, 3], seed=1)
    seqs.fill()
    for seq, n in enumerate(seqs.lengths):
        for pos, slot in zip(range(n), seqs.slots(seq, range(n)), strict=True):
            torch.testing.assert_close(seqs.key_cache[slot // BLOCK, slot % BLOCK], seqs.keys[seq][pos], **TOL)
            torch.testing.assert_close(seqs.value_cache[slot // BLOCK, slot % BLOCK], seqs.values[seq][pos], **TOL)
    written = {s // BLOCK for i, n in enumerate(seqs.lengths) for s in seqs.slots(i, range(n))}
    untouched = [b for b in range(seqs.key_cache.shape[0]) if b not in written]
    assert untouched and all(seqs.key_cache[b].abs().sum() == 0 for b in untouched), "padding must not be written"


def test_paged_attention_decodes_one_token_per_sequence_over_its_cache():
    seqs = PagedSequences([9, 1, 6], seed=2)
    seqs.fill()
    query = rand(3, HEADS, HEAD, seed=3)
    out = torch.full((3, HEADS, HEAD), float("nan"))
    body(kernels._npu_paged_attention)(query, seqs.key_cache, seqs.value_cache, KV_HEADS, HEADS, SCALE,
                                       seqs.block_table, torch.tensor(seqs.lengths, dtype=torch.int32), out)
    for seq in range(3):
        expected = reference_attention(query[seq:seq + 1], seqs.keys[seq], seqs.values[seq], causal=False)
        torch.testing.assert_close(out[seq:seq + 1], expected, **TOL)


def _fused(query: torch.Tensor, seqs: PagedSequences, query_ends: list[int], **options):
    defaults = dict(atten_mask=torch.triu(torch.ones(2048, 2048, dtype=torch.bool), diagonal=1).to(torch.int8),
                    block_table=seqs.block_table, input_layout="TND", block_size=BLOCK,
                    actual_seq_lengths=query_ends, actual_seq_lengths_kv=seqs.lengths,
                    num_key_value_heads=KV_HEADS, num_heads=HEADS, scale=SCALE, sparse_mode=3)
    defaults.update(options)
    num_blocks = seqs.key_cache.shape[0]
    return body(kernels.npu_fused_infer_attention_score)(query, seqs.key_cache.view(num_blocks, BLOCK, -1),
                                                         seqs.value_cache.view(num_blocks, BLOCK, -1), **defaults)


def test_fused_attention_serves_a_mixed_batch_causally():
    # A fresh prefill (5 of 5), a chunk with context (3 new of 7), a decode (1 of 9).
    seqs = PagedSequences([5, 7, 9], seed=4)
    seqs.fill()
    new_tokens = [5, 3, 1]
    query = rand(sum(new_tokens), HEADS, HEAD, seed=5)
    ends = [5, 8, 9]
    out, _lse = _fused(query, seqs, ends)
    start = 0
    for seq, end in enumerate(ends):
        expected = reference_attention(query[start:end], seqs.keys[seq], seqs.values[seq], causal=True)
        torch.testing.assert_close(out[start:end], expected, **TOL)
        start = end


def test_fused_attention_without_a_mask_attends_to_every_key():
    seqs = PagedSequences([6], seed=6)
    seqs.fill()
    query = rand(6, HEADS, HEAD, seed=7)
    out, _ = _fused(query, seqs, [6], atten_mask=None, sparse_mode=0)
    torch.testing.assert_close(out, reference_attention(query, seqs.keys[0], seqs.values[0], causal=False), **TOL)


@pytest.mark.parametrize("options,error,match", [
    ({"atten_mask": None}, ValueError, "2048x2048 causal atten_mask"),
    ({"input_layout": "BSH"}, NotImplementedError, "TND layout"),
    ({"block_table": None}, NotImplementedError, "block_table"),
    ({"sparse_mode": 4}, NotImplementedError, "sparse_mode 4"),
    ({"antiquant_scale": torch.ones(1)}, NotImplementedError, "antiquant_scale"),
    ({"num_heads": 2}, ValueError, "num_heads=2"),
])
def test_fused_attention_refuses_what_it_does_not_compute(options, error, match):
    seqs = PagedSequences([4], seed=8)
    with pytest.raises(error, match=match):
        _fused(rand(4, HEADS, HEAD, seed=9), seqs, [4], **options)


def test_fusion_attention_is_named_but_not_simulated():
    with pytest.raises(NotImplementedError, match="not simulated"):
        kernels.npu_fusion_attention(rand(1, 1, seed=1), rand(1, 1, seed=2), rand(1, 1, seed=3), 1, "BSH")
