"""The simulated NPU's kernels compute what the torch_npu kernels specify, and refuse what they refuse.

Each kernel runs on host tensors through ``kernels.on_host``: its contract (``contracts``) is checked
as on the simulated device, then its arithmetic runs, and the result is compared with a plain
reference written here or with vLLM's own implementation, in the dtypes a card runs (bfloat16,
float16). The device plumbing around the kernels (NPU arguments, counters) is checked in a simulated
process by tests/test_npu_sim_device.py. Nothing here installs the simulated device in this process.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ascend_overlay.npu.sim import contracts, kernels
from ascend_overlay.npu.sim.kernels import on_host

# One rounding to bfloat16 of a float32 result against a float64 reference: within two bf16 ulps.
BF16 = {"atol": 2e-2, "rtol": 1.6e-2}
TOL = {torch.float32: {"atol": 1e-5, "rtol": 1e-5}, torch.float16: {"atol": 2e-3, "rtol": 2e-3},
       torch.bfloat16: BF16}


def rand(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(dtype)


@pytest.fixture
def fresh_rope_statics(monkeypatch: pytest.MonkeyPatch):
    """The ATB rotary kernel's process-wide cos/sin, empty (as in a new process) for one test."""
    monkeypatch.setattr(kernels, "_rope_tables", kernels._FrozenRopeTables())


# -- activation and normalisation -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_swiglu_is_silu_of_the_first_half_times_the_second(dtype):
    x = rand(5, 2 * 48, seed=1, dtype=dtype)
    expected = (F.silu(x[..., :48].double()) * x[..., 48:].double()).to(dtype)
    torch.testing.assert_close(on_host(kernels.npu_swiglu, x), expected, **TOL[dtype])


def _rms_reference(x: torch.Tensor, gamma: torch.Tensor, eps: float) -> torch.Tensor:
    h = x.double()
    return (h / torch.sqrt(h.pow(2).mean(-1, keepdim=True) + eps) * gamma.double()).to(x.dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_rms_norm_returns_the_normalised_rows_and_their_rstd(dtype):
    x, gamma = rand(7, 64, seed=2, dtype=dtype), rand(64, seed=3, dtype=dtype)
    y, rstd = on_host(kernels.npu_rms_norm, x, gamma, 1e-6)
    torch.testing.assert_close(y, _rms_reference(x, gamma, 1e-6), **TOL[dtype])
    assert rstd.shape == (7, 1) and rstd.dtype == torch.float32
    torch.testing.assert_close(rstd, 1 / torch.sqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6), **TOL[dtype])


def test_add_rms_norm_normalises_the_sum_and_returns_it():
    x1, x2 = (rand(3, 32, seed=s, dtype=torch.bfloat16) for s in (4, 5))
    gamma = rand(32, seed=6, dtype=torch.bfloat16)
    y, rstd, total = on_host(kernels.npu_add_rms_norm, x1, x2, gamma, 1e-5)
    torch.testing.assert_close(total, (x1.double() + x2.double()).to(torch.bfloat16), **BF16)
    torch.testing.assert_close(y, _rms_reference(x1.double() + x2.double(), gamma, 1e-5).to(torch.bfloat16), **BF16)
    assert rstd.shape == (3, 1) and total.dtype == torch.bfloat16


# -- rotary embedding -------------------------------------------------------------------------------

def _vllm_rope(head_size: int, rotary_dim: int, neox: bool, base: float, dtype: torch.dtype):
    from vllm.model_executor.layers.rotary_embedding.base import RotaryEmbedding

    return RotaryEmbedding(head_size, rotary_dim, 256, base, neox, dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("neox", [True, False])
@pytest.mark.parametrize("head_size,rotary_dim", [(64, 64), (128, 64)])
def test_mrope_equals_vllms_rotary_embedding(vllm_config, dtype, neox, head_size, rotary_dim):
    rope = _vllm_rope(head_size, rotary_dim, neox, 10000.0, dtype)
    positions = torch.tensor([0, 3, 9, 17, 64, 255])
    query, key = rand(6, 4 * head_size, seed=7, dtype=dtype), rand(6, 2 * head_size, seed=8, dtype=dtype)
    expected_q, expected_k = rope.forward_native(positions, query.clone(), key.clone())
    q, k = on_host(kernels.npu_mrope, positions, query, key, rope.cos_sin_cache.to(dtype), head_size,
                   mrope_section=[0, 0, 0], rotary_mode="half" if neox else "interleave")
    torch.testing.assert_close(q, expected_q, **TOL[dtype])
    torch.testing.assert_close(k, expected_k, **TOL[dtype])


def test_mrope_rotates_with_each_calls_own_cache(vllm_config):
    """Two layers with two RoPE bases in one process: each call is rotated by its own cache."""
    positions = torch.tensor([1, 50, 200])
    for base in (10000.0, 500000.0):
        rope = _vllm_rope(64, 64, True, base, torch.bfloat16)
        query, key = rand(3, 2 * 64, seed=9, dtype=torch.bfloat16), rand(3, 64, seed=10, dtype=torch.bfloat16)
        expected_q, _ = rope.forward_native(positions, query.clone(), key.clone())
        q, _ = on_host(kernels.npu_mrope, positions, query, key, rope.cos_sin_cache, 64)
        torch.testing.assert_close(q, expected_q, **BF16)


def test_atb_rotary_embedding_keeps_the_first_cache_of_the_process(vllm_config, fresh_rope_statics):
    """The ATB kernel builds cos/sin from the first cos_sin_cache and ignores later ones (RopeAtb.cpp
    statics): a second layer with another base is rotated with the first layer's angles."""
    positions = torch.tensor([1, 50, 200])
    first = _vllm_rope(64, 64, True, 10000.0, torch.bfloat16)
    second = _vllm_rope(64, 64, True, 500000.0, torch.bfloat16)
    query, key = rand(3, 2 * 64, seed=11, dtype=torch.bfloat16), rand(3, 64, seed=12, dtype=torch.bfloat16)
    on_host(kernels._npu_rotary_embedding, positions, query.clone(), key.clone(), 64, first.cos_sin_cache, True)
    q, k = query.clone(), key.clone()
    on_host(kernels._npu_rotary_embedding, positions, q, k, 64, second.cos_sin_cache, True)
    with_first, _ = first.forward_native(positions, query.clone(), key.clone())
    with_second, _ = second.forward_native(positions, query.clone(), key.clone())
    torch.testing.assert_close(q, with_first, **BF16)
    assert (q.float() - with_second.float()).abs().max() > 0.1, "the second cache must have been ignored"


def test_atb_rotary_embedding_fails_setup_for_another_rotary_size(vllm_config, fresh_rope_statics):
    positions = torch.tensor([1])
    first = _vllm_rope(64, 64, True, 10000.0, torch.bfloat16)
    on_host(kernels._npu_rotary_embedding, positions, rand(1, 64, seed=1, dtype=torch.bfloat16),
            rand(1, 64, seed=2, dtype=torch.bfloat16), 64, first.cos_sin_cache, True)
    with pytest.raises(RuntimeError, match="RopeOperation setup failed"):
        on_host(kernels._npu_rotary_embedding, positions, rand(1, 128, seed=3, dtype=torch.bfloat16),
                rand(1, 128, seed=4, dtype=torch.bfloat16), 128, rand(256, 128, seed=5, dtype=torch.bfloat16), True)


# -- paged KV cache and attention ---------------------------------------------------------------------

BLOCK, KV_HEADS, HEADS, HEAD = 128, 2, 4, 16
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
    return out


class PagedSequences:
    """Sequences whose keys and values live in a bfloat16 paged cache at scattered blocks."""

    def __init__(self, lengths: list[int], seed: int, dtype: torch.dtype = torch.bfloat16) -> None:
        self.lengths = lengths
        self.blocks_per_seq = max(-(-n // BLOCK) for n in lengths)
        num_blocks = self.blocks_per_seq * len(lengths) + 3
        order = torch.randperm(num_blocks, generator=torch.Generator().manual_seed(seed))
        self.block_table = order[: self.blocks_per_seq * len(lengths)].view(len(lengths), -1).to(torch.int32)
        self.key_cache = torch.zeros(num_blocks, BLOCK, KV_HEADS, HEAD, dtype=dtype)
        self.value_cache = torch.zeros(num_blocks, BLOCK, KV_HEADS, HEAD, dtype=dtype)
        self.keys = [rand(n, KV_HEADS, HEAD, seed=seed + 10 + i, dtype=dtype) for i, n in enumerate(lengths)]
        self.values = [rand(n, KV_HEADS, HEAD, seed=seed + 50 + i, dtype=dtype) for i, n in enumerate(lengths)]

    def slots(self, seq: int, positions: range) -> list[int]:
        return [int(self.block_table[seq, p // BLOCK]) * BLOCK + p % BLOCK for p in positions]

    def all_slots(self) -> torch.Tensor:
        return torch.tensor([s for i, n in enumerate(self.lengths) for s in self.slots(i, range(n))],
                            dtype=torch.int32)

    def fill(self) -> None:
        on_host(kernels._npu_reshape_and_cache, torch.cat(self.keys), torch.cat(self.values), self.key_cache,
                self.value_cache, self.all_slots())


def test_reshape_and_cache_writes_each_token_at_its_slot_and_nothing_else():
    seqs = PagedSequences([5, 3], seed=1)
    seqs.fill()
    for seq, n in enumerate(seqs.lengths):
        for pos, slot in zip(range(n), seqs.slots(seq, range(n)), strict=True):
            assert torch.equal(seqs.key_cache[slot // BLOCK, slot % BLOCK], seqs.keys[seq][pos])
            assert torch.equal(seqs.value_cache[slot // BLOCK, slot % BLOCK], seqs.values[seq][pos])
    assert int((seqs.key_cache.abs().sum(dim=(2, 3)) != 0).sum()) == 8, "exactly the 8 slots written"


def test_paged_attention_decodes_one_token_per_sequence_over_its_cache():
    seqs = PagedSequences([9, 1, 130], seed=2)
    seqs.fill()
    query = rand(3, HEADS, HEAD, seed=3, dtype=torch.bfloat16)
    out = torch.full((3, HEADS, HEAD), float("nan"), dtype=torch.bfloat16)
    on_host(kernels._npu_paged_attention, query, seqs.key_cache, seqs.value_cache, KV_HEADS, HEADS, SCALE,
            seqs.block_table, torch.tensor(seqs.lengths, dtype=torch.int32), out)
    for seq in range(3):
        expected = reference_attention(query[seq:seq + 1], seqs.keys[seq], seqs.values[seq], causal=False)
        torch.testing.assert_close(out[seq:seq + 1].double(), expected, **BF16)


def _fused(query: torch.Tensor, seqs: PagedSequences, query_ends: list[int], **options):
    defaults = dict(atten_mask=torch.triu(torch.ones(2048, 2048, dtype=torch.bool), diagonal=1).to(torch.int8),
                    block_table=seqs.block_table, input_layout="TND", block_size=BLOCK,
                    actual_seq_lengths=query_ends, actual_seq_lengths_kv=seqs.lengths,
                    num_key_value_heads=KV_HEADS, num_heads=HEADS, scale=SCALE, sparse_mode=3)
    defaults.update(options)
    num_blocks = seqs.key_cache.shape[0]
    return on_host(kernels.npu_fused_infer_attention_score, query, seqs.key_cache.view(num_blocks, BLOCK, -1),
                   seqs.value_cache.view(num_blocks, BLOCK, -1), **defaults)


def test_fused_attention_serves_a_mixed_batch_causally():
    # A fresh prefill (5 of 5), a chunk with context over two blocks (3 new of 131), a decode (1 of 9).
    seqs = PagedSequences([5, 131, 9], seed=4)
    seqs.fill()
    ends = [5, 8, 9]
    query = rand(9, HEADS, HEAD, seed=5, dtype=torch.bfloat16)
    out, lse = _fused(query, seqs, ends)
    assert out.dtype == torch.bfloat16 and out.shape == query.shape
    assert lse.shape == (0,) and lse.dtype == torch.float32, "no lse asked for: an empty tensor, as the meta kernel"
    start = 0
    for seq, end in enumerate(ends):
        expected = reference_attention(query[start:end], seqs.keys[seq], seqs.values[seq], causal=True)
        torch.testing.assert_close(out[start:end].double(), expected, **BF16)
        start = end


def test_fused_attention_without_a_mask_attends_to_every_key():
    seqs = PagedSequences([6], seed=6)
    seqs.fill()
    query = rand(6, HEADS, HEAD, seed=7, dtype=torch.bfloat16)
    out, _ = _fused(query, seqs, [6], atten_mask=None, sparse_mode=0)
    torch.testing.assert_close(out.double(), reference_attention(query, seqs.keys[0], seqs.values[0], causal=False),
                               **BF16)


@pytest.mark.parametrize("options,error,match", [
    ({"input_layout": "BSH"}, NotImplementedError, "TND layout"),
    ({"block_table": None}, NotImplementedError, "block_table"),
    ({"sparse_mode": 4}, NotImplementedError, "sparse_mode 4"),
    ({"antiquant_scale": torch.ones(1)}, NotImplementedError, "antiquant_scale"),
    ({"num_heads": 2}, ValueError, "num_heads=2"),
])
def test_fused_attention_refuses_what_it_does_not_simulate(options, error, match):
    seqs = PagedSequences([4], seed=8)
    with pytest.raises(error, match=match):
        _fused(rand(4, HEADS, HEAD, seed=9, dtype=torch.bfloat16), seqs, [4], **options)


def test_fusion_attention_is_named_but_not_simulated():
    with pytest.raises(NotImplementedError, match="not simulated"):
        kernels.npu_fusion_attention(rand(1, 1, seed=1), rand(1, 1, seed=2), rand(1, 1, seed=3), 1, "BSH")


# -- what a card refuses ------------------------------------------------------------------------------

def _refusal(rule: str, call) -> str:
    """The error of a call the contract ``rule`` refuses: torch_npu's class, the rule's own words."""
    with pytest.raises(RuntimeError) as caught:
        call()
    assert isinstance(caught.value, contracts.KernelContractError), caught.value
    assert caught.value.rule.name == rule, str(caught.value)
    return str(caught.value)


def _cache_write(seqs: PagedSequences, **changes):
    args = dict(key=torch.cat(seqs.keys), value=torch.cat(seqs.values), key_cache=seqs.key_cache,
                value_cache=seqs.value_cache, slot_indices=seqs.all_slots())
    args.update(changes)
    return lambda: on_host(kernels._npu_reshape_and_cache, **args)


def test_reshape_and_cache_refuses_int64_slots_naming_the_argument():
    seqs = PagedSequences([3], seed=20)
    message = _refusal("npu_reshape_and_cache.slot_dtype", _cache_write(seqs, slot_indices=seqs.all_slots().long()))
    assert message.startswith("_npu_reshape_and_cache: slot_indices must be int32, got int64")
    assert "ERR01002 OPS invalid type" in message


def test_reshape_and_cache_refuses_negative_and_out_of_range_slots():
    seqs = PagedSequences([3], seed=21)
    padded = torch.cat([seqs.all_slots(), torch.tensor([-1], dtype=torch.int32)])
    key, value = torch.cat(seqs.keys + [seqs.keys[0][:1]]), torch.cat(seqs.values + [seqs.values[0][:1]])
    message = _refusal("npu_reshape_and_cache.slot_range",
                       _cache_write(seqs, key=key, value=value, slot_indices=padded))
    assert "slot_indices must be in [0, blocks * block_size), got slots from -1" in message
    beyond = seqs.all_slots().clone()
    beyond[0] = seqs.key_cache.shape[0] * BLOCK
    _refusal("npu_reshape_and_cache.slot_range", _cache_write(seqs, slot_indices=beyond))


def test_reshape_and_cache_refuses_float32_and_mixed_dtypes():
    seqs = PagedSequences([3], seed=22, dtype=torch.float32)
    message = _refusal("npu_reshape_and_cache.float_dtype", _cache_write(seqs))
    assert "key must be float16/bfloat16, got float32" in message
    seqs = PagedSequences([3], seed=23)
    _refusal("npu_reshape_and_cache.same_dtype",
             _cache_write(seqs, value=torch.cat(seqs.values).to(torch.float16)))


def test_reshape_and_cache_refuses_a_strided_cache():
    seqs = PagedSequences([3], seed=24)
    strided = torch.zeros(seqs.key_cache.shape[0], BLOCK, 2 * KV_HEADS, HEAD, dtype=torch.bfloat16)[:, :, :KV_HEADS]
    _refusal("npu_reshape_and_cache.contiguous", _cache_write(seqs, key_cache=strided))


def _decode(seqs: PagedSequences, query: torch.Tensor, **changes):
    args = dict(query=query, key_cache=seqs.key_cache, value_cache=seqs.value_cache, num_kv_heads=KV_HEADS,
                num_heads=HEADS, scale_value=SCALE, block_table=seqs.block_table,
                context_lens=torch.tensor(seqs.lengths, dtype=torch.int32),
                out=torch.empty(query.shape, dtype=query.dtype))
    args.update(changes)
    return lambda: on_host(kernels._npu_paged_attention, **args)


def test_paged_attention_refuses_float32_int64_tables_and_sizes_it_does_not_take():
    seqs = PagedSequences([3], seed=25)
    query = rand(1, HEADS, HEAD, seed=26, dtype=torch.bfloat16)
    message = _refusal("npu_paged_attention.float_dtype", _decode(seqs, query.float(), out=torch.empty(1, HEADS, HEAD)))
    assert "query must be float16/bfloat16, got float32" in message
    _refusal("npu_paged_attention.block_table_dtype", _decode(seqs, query, block_table=seqs.block_table.long()))
    big = torch.zeros(1, BLOCK, KV_HEADS, 320, dtype=torch.bfloat16)
    message = _refusal("npu_paged_attention.head_size",
                       _decode(seqs, rand(1, HEADS, 320, seed=27, dtype=torch.bfloat16), key_cache=big, value_cache=big,
                               out=torch.empty(1, HEADS, 320, dtype=torch.bfloat16)))
    assert "a head size in (0, 256], got 320" in message
    # Block size 256 is what FIA takes for prefills, but not paged attention (<= 128).
    wide = torch.zeros(2, 256, KV_HEADS, HEAD, dtype=torch.bfloat16)
    _refusal("npu_paged_attention.block_size", _decode(seqs, query, key_cache=wide, value_cache=wide))


def test_fused_attention_refuses_float32_and_shapes_it_does_not_take():
    seqs = PagedSequences([4], seed=28)
    query = rand(4, HEADS, HEAD, seed=29, dtype=torch.bfloat16)
    message = _refusal("npu_fused_infer_attention_score.float_dtype", lambda: _fused(query.float(), seqs, [4]))
    assert "query must be float16/bfloat16, got float32" in message
    _refusal("npu_fused_infer_attention_score.heads", lambda: _fused(query, seqs, [4], num_heads=320))
    _refusal("npu_fused_infer_attention_score.gqa", lambda: _fused(query, seqs, [4], num_heads=128,
                                                                    num_key_value_heads=1))
    _refusal("npu_fused_infer_attention_score.block_table_dtype",
             lambda: _fused(query, seqs, [4], block_table=seqs.block_table.long()))
    _refusal("npu_fused_infer_attention_score.mask", lambda: _fused(query, seqs, [4], atten_mask=None))
    _refusal("npu_fused_infer_attention_score.tnd_lengths", lambda: _fused(query, seqs, [3]))


def test_fused_attention_refuses_a_head_size_it_does_not_take_with_more_than_one_query_token():
    cache = torch.zeros(2, BLOCK, KV_HEADS * 24, dtype=torch.bfloat16)
    table = torch.tensor([[0]], dtype=torch.int32)
    mask = torch.triu(torch.ones(2048, 2048, dtype=torch.bool), diagonal=1)

    def call(tokens: int):
        return on_host(kernels.npu_fused_infer_attention_score, rand(tokens, HEADS, 24, seed=30, dtype=torch.bfloat16),
                       cache, cache, atten_mask=mask, block_table=table, input_layout="TND", block_size=BLOCK,
                       actual_seq_lengths=[tokens], actual_seq_lengths_kv=[tokens], num_key_value_heads=KV_HEADS,
                       num_heads=HEADS, scale=SCALE, sparse_mode=3)

    message = _refusal("npu_fused_infer_attention_score.head_size", lambda: call(2))
    assert "got 24 with more than one query token" in message
    out, _ = call(1)  # one query token: the decode path takes any head size up to 512
    assert out.shape == (1, HEADS, 24)


def test_fused_attention_refuses_a_block_size_prefills_do_not_take():
    cache = torch.zeros(4, 64, KV_HEADS * HEAD, dtype=torch.bfloat16)
    with pytest.raises(contracts.KernelContractError, match="block_size must be a multiple of 128 in 128..512"):
        on_host(kernels.npu_fused_infer_attention_score, rand(3, HEADS, HEAD, seed=31, dtype=torch.bfloat16),
                cache, cache, atten_mask=torch.ones(2048, 2048, dtype=torch.bool).triu(1),
                block_table=torch.tensor([[0]], dtype=torch.int32), input_layout="TND", block_size=64,
                actual_seq_lengths=[3], actual_seq_lengths_kv=[3], num_key_value_heads=KV_HEADS, num_heads=HEADS,
                scale=SCALE, sparse_mode=3)


def test_mrope_refuses_sizes_and_modes_the_kernel_does_not_take():
    positions = torch.tensor([0, 1])
    q, k = rand(2, 2 * 48, seed=32, dtype=torch.bfloat16), rand(2, 48, seed=33, dtype=torch.bfloat16)
    message = _refusal("npu_mrope.sizes", lambda: on_host(kernels.npu_mrope, positions, q, k,
                                                          rand(8, 48, seed=34, dtype=torch.bfloat16), 48))
    assert "head_size 48, rotary_dim 48 (bfloat16)" in message
    q, k = rand(2, 64, seed=35, dtype=torch.bfloat16), rand(2, 64, seed=36, dtype=torch.bfloat16)
    cache = rand(8, 64, seed=37, dtype=torch.bfloat16)
    # vllm-ascend passes "interleaved"; the kernel checks for "interleave" (libtorch_npu.so strings)
    _refusal("npu_mrope.rotary_mode", lambda: on_host(kernels.npu_mrope, positions, q, k, cache, 64,
                                                      rotary_mode="interleaved"))
    _refusal("npu_mrope.same_dtype", lambda: on_host(kernels.npu_mrope, positions, q, k, cache.float(), 64))
    _refusal("npu_mrope.positions_range", lambda: on_host(kernels.npu_mrope, torch.tensor([0, 8]), q, k, cache, 64))


def test_activation_and_norm_refuse_what_their_docs_exclude():
    _refusal("npu_swiglu.split", lambda: on_host(kernels.npu_swiglu, rand(2, 7, seed=38)))
    _refusal("npu_swiglu.float_dtype", lambda: on_host(kernels.npu_swiglu, torch.ones(2, 4, dtype=torch.float64)))
    _refusal("npu_rms_norm.gamma_dtype", lambda: on_host(kernels.npu_rms_norm, rand(2, 8, seed=39),
                                                         rand(8, seed=40, dtype=torch.bfloat16)))
    x = rand(2, 8, seed=41, dtype=torch.bfloat16)
    _refusal("npu_add_rms_norm.same_dtype", lambda: on_host(kernels.npu_add_rms_norm, x, x, x.float()))


def test_every_rule_cites_a_public_source_and_the_docs_show_the_table(repo):
    rules = contracts.all_rules()
    assert len({r.name for r in rules}) == len(rules), "rule names are unique"
    assert all(r.sources and all(s.where for s in r.sources) for r in rules)
    assert set(contracts.CONTRACTS) == set(kernels.KERNELS), "every simulated kernel has a contract"
    docs = (repo / "docs" / "npu.md").read_text()
    assert contracts.contract_table_markdown() in docs, "docs/npu.md: regenerate with python -m " \
                                                        "ascend_overlay.npu.sim.contracts"


def test_attention_backend_refuses_layer_shapes_the_kernels_do_not_take():
    from ascend_overlay.npu.attention import kernel_shape_problems

    assert kernel_shape_problems(32, 8, 128) == []
    assert kernel_shape_problems(2, 2, 64) == []
    assert any("not a multiple of 16" in p for p in kernel_shape_problems(2, 2, 24))
    assert any("outside (0, 256]" in p for p in kernel_shape_problems(2, 2, 320))
    assert any("exceed 256" in p for p in kernel_shape_problems(320, 8, 128))
    assert any("exceed 64" in p for p in kernel_shape_problems(128, 1, 128))
