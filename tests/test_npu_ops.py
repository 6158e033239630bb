"""ascend_overlay.npu.ops: the CPU path equals vLLM's own implementations, and on an NPU the right
torch_npu kernel gets the right arguments and its results come back the way vLLM expects them.

The NPU half uses ``TorchNpuTestDouble`` (tests/npu_test_double.py), because torch_npu cannot be
imported on this machine; the CPU half uses nothing but vLLM and torch.
"""

from __future__ import annotations

import pytest
import torch

from ascend_overlay.npu import ops

DTYPES = [torch.float32, torch.bfloat16]
EXACT = {"atol": 0.0, "rtol": 0.0}
# The test double computes fused kernels in float32 and rounds once; vLLM's bfloat16 path rounds
# after the normalisation and again after the weight: one bfloat16 ulp apart at most.
FUSED_TOL = {torch.float32: {"atol": 1e-5, "rtol": 1e-5}, torch.bfloat16: {"atol": 2e-2, "rtol": 1.6e-2}}


@pytest.fixture
def cpu_only():
    assert ops.torch_npu_module() is None, "these tests need a machine without torch_npu"


def rand(*shape: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float32).to(dtype)


# -- CPU path == vLLM -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 2), (7, 256), (2, 5, 96)])
def test_silu_and_mul_cpu_equals_vllm(cpu_only, vllm_config, dtype, shape):
    from vllm.model_executor.layers.activation import SiluAndMul

    x = rand(*shape, dtype=dtype, seed=1)
    torch.testing.assert_close(ops.silu_and_mul(x), SiluAndMul.forward_native(x), **EXACT)


def _rms_layer(hidden: int, weight_dtype: torch.dtype, has_weight: bool = True, var_hidden_size=None):
    from vllm.model_executor.layers.layernorm import RMSNorm

    layer = RMSNorm(hidden, eps=1e-5, var_hidden_size=var_hidden_size, has_weight=has_weight, dtype=weight_dtype)
    if has_weight:
        layer.weight.data.copy_(rand(hidden, dtype=weight_dtype, seed=7))
    return layer


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_dtype", DTYPES)
@pytest.mark.parametrize("tokens,hidden", [(1, 64), (9, 128), (33, 4096)])
@pytest.mark.parametrize("with_residual", [False, True])
def test_rms_norm_cpu_equals_vllm(cpu_only, vllm_config, dtype, weight_dtype, tokens, hidden, with_residual):
    layer = _rms_layer(hidden, weight_dtype)
    x = rand(tokens, hidden, dtype=dtype, seed=2)
    residual = rand(tokens, hidden, dtype=dtype, seed=3) if with_residual else None
    expected = layer.forward_native(x.clone(), None if residual is None else residual.clone())
    got = ops.rms_norm(x, layer.weight.data, layer.variance_epsilon, residual)
    if with_residual:
        assert isinstance(got, tuple) and len(got) == 2
        torch.testing.assert_close(got[0], expected[0], **EXACT)
        torch.testing.assert_close(got[1], expected[1], **EXACT)
    else:
        assert isinstance(got, torch.Tensor)
        torch.testing.assert_close(got, expected, **EXACT)


@pytest.mark.parametrize("with_residual", [False, True])
def test_rms_norm_cpu_without_weight_equals_vllm(cpu_only, vllm_config, with_residual):
    layer = _rms_layer(64, torch.bfloat16, has_weight=False)
    x = rand(5, 64, dtype=torch.bfloat16, seed=4)
    residual = rand(5, 64, dtype=torch.bfloat16, seed=5) if with_residual else None
    expected = layer.forward_native(x.clone(), None if residual is None else residual.clone())
    got = ops.rms_norm(x, None, layer.variance_epsilon, residual)
    torch.testing.assert_close(got, expected, **EXACT)


def _rope(head_size: int, rotary_dim: int, neox: bool, cache_dtype: torch.dtype = torch.float32):
    from vllm.model_executor.layers.rotary_embedding.base import RotaryEmbedding

    return RotaryEmbedding(head_size, rotary_dim, 4096, 10000.0, neox, cache_dtype)


ROPE_CASES = [  # (tokens, q_heads, kv_heads, head_size, rotary_dim)
    (1, 2, 1, 64, 64),
    (7, 4, 2, 128, 128),
    (33, 8, 8, 64, 32),   # partial rotary
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("neox", [True, False])
@pytest.mark.parametrize("case", ROPE_CASES)
@pytest.mark.parametrize("layout", ["flat", "heads"])
def test_rotary_cpu_equals_vllm(cpu_only, vllm_config, dtype, neox, case, layout):
    tokens, q_heads, kv_heads, head_size, rotary_dim = case
    rope = _rope(head_size, rotary_dim, neox)
    positions = torch.randint(0, 4096, (tokens,), generator=torch.Generator().manual_seed(6))
    q_shape = (tokens, q_heads * head_size) if layout == "flat" else (tokens, q_heads, head_size)
    k_shape = (tokens, kv_heads * head_size) if layout == "flat" else (tokens, kv_heads, head_size)
    query, key = rand(*q_shape, dtype=dtype, seed=8), rand(*k_shape, dtype=dtype, seed=9)
    expected_q, expected_k = rope.forward_native(positions, query.clone(), key.clone())
    cache = rope._match_cos_sin_cache_dtype(query)
    got_q, got_k = ops.rotary_embedding(positions, query, key, head_size, rotary_dim, cache, neox)
    assert got_q.shape == query.shape and got_k.shape == key.shape
    torch.testing.assert_close(got_q, expected_q, **EXACT)
    torch.testing.assert_close(got_k, expected_k, **EXACT)


def test_rotary_cpu_without_key_equals_vllm(cpu_only, vllm_config):
    rope = _rope(64, 64, True)
    positions = torch.tensor([0, 5, 4095])
    query = rand(3, 2 * 64, dtype=torch.bfloat16, seed=10)
    expected_q, expected_k = rope.forward_native(positions, query.clone(), None)
    got_q, got_k = ops.rotary_embedding(positions, query, None, 64, 64, rope._match_cos_sin_cache_dtype(query), True)
    assert expected_k is None and got_k is None
    torch.testing.assert_close(got_q, expected_q, **EXACT)


# -- NPU dispatch, through the torch_npu test double ---------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_and_mul_dispatches_to_npu_swiglu(torch_npu_double, vllm_config, dtype):
    from vllm.model_executor.layers.activation import SiluAndMul

    x = rand(6, 2 * 48, dtype=dtype, seed=11)
    out = ops.silu_and_mul(x)
    (call,) = torch_npu_double.calls
    assert call.name == "npu_swiglu" and call.args[0] is x and call.kwargs == {"dim": -1}
    assert out is call.result
    torch.testing.assert_close(out, SiluAndMul.forward_native(x), **FUSED_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_rms_norm_dispatches_to_npu_rms_norm(torch_npu_double, vllm_config, dtype):
    layer = _rms_layer(128, dtype)
    x, weight = rand(5, 128, dtype=dtype, seed=12), layer.weight.data
    out = ops.rms_norm(x, weight, layer.variance_epsilon)
    (call,) = torch_npu_double.calls
    assert call.name == "npu_rms_norm"
    assert call.args[0] is x and call.args[1] is weight and call.args[2] == layer.variance_epsilon
    assert out is call.result[0], "vLLM expects the normalised tensor alone, not (y, rstd)"
    torch.testing.assert_close(out, layer.forward_native(x.clone()), **FUSED_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_rms_norm_with_residual_dispatches_to_npu_add_rms_norm(torch_npu_double, vllm_config, dtype):
    layer = _rms_layer(128, dtype)
    x, residual = rand(5, 128, dtype=dtype, seed=13), rand(5, 128, dtype=dtype, seed=14)
    expected, weight = layer.forward_native(x.clone(), residual.clone()), layer.weight.data
    out = ops.rms_norm(x, weight, layer.variance_epsilon, residual)
    (call,) = torch_npu_double.calls
    assert call.name == "npu_add_rms_norm"
    assert call.args[0] is x and call.args[1] is residual and call.args[2] is weight
    assert call.args[3] == layer.variance_epsilon
    y, _rstd, x_sum = call.result
    assert isinstance(out, tuple) and out[0] is y and out[1] is x_sum, "vLLM expects (y, x + residual)"
    torch.testing.assert_close(out[0], expected[0], **FUSED_TOL[dtype])
    torch.testing.assert_close(out[1], expected[1], **FUSED_TOL[dtype])


def test_rms_norm_without_weight_passes_unit_gamma(torch_npu_double, vllm_config):
    x = rand(3, 32, dtype=torch.bfloat16, seed=15)
    ops.rms_norm(x, None, 1e-6)
    (call,) = torch_npu_double.calls
    gamma = call.args[1]
    assert gamma.dtype == x.dtype and torch.equal(gamma, torch.ones(32, dtype=x.dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("neox", [True, False])
def test_rotary_dispatches_to_npu_mrope_with_this_calls_cache_in_query_dtype(torch_npu_double, vllm_config, dtype,
                                                                             neox):
    rope = _rope(64, 64, neox, cache_dtype=torch.float32)  # cache built in float32 on purpose
    positions = torch.tensor([3, 0, 17, 4000])
    query, key = rand(4, 4 * 64, dtype=dtype, seed=16), rand(4, 2 * 64, dtype=dtype, seed=17)
    expected_q, expected_k = rope.forward_native(positions, query.clone(), key.clone())
    cache = rope._match_cos_sin_cache_dtype(query)
    out_q, out_k = ops.rotary_embedding(positions, query, key, 64, 64, cache, neox)
    (call,) = torch_npu_double.calls
    pos, q_arg, k_arg, cache_arg, head_size = call.args
    assert call.name == "npu_mrope"
    assert torch.equal(pos, positions) and head_size == 64
    assert call.kwargs == {"mrope_section": [0, 0, 0], "rotary_mode": "half" if neox else "interleave",
                           "cache_mode": "default"}, "RoPE mode, the rotary_mode strings the kernel checks"
    assert cache_arg is cache and cache_arg.dtype == dtype, "the kernel reads this call's cache, in the query's dtype"
    assert q_arg.shape == (4, 4 * 64) and k_arg.shape == (4, 2 * 64)
    assert out_q.shape == query.shape and out_k.shape == key.shape
    torch.testing.assert_close(out_q, expected_q, **FUSED_TOL[dtype])
    torch.testing.assert_close(out_k, expected_k, **FUSED_TOL[dtype])


@pytest.mark.parametrize("with_key", [True, False])
def test_rotary_partial_and_keyless_dispatch(torch_npu_double, vllm_config, with_key):
    rope = _rope(128, 64, True)
    positions = torch.tensor([1, 2, 3])
    query = rand(3, 2, 128, dtype=torch.bfloat16, seed=18)
    key = rand(3, 1, 128, dtype=torch.bfloat16, seed=19) if with_key else None
    expected_q, expected_k = rope.forward_native(positions, query.clone(), None if key is None else key.clone())
    out_q, out_k = ops.rotary_embedding(positions, query, key, 128, 64, rope._match_cos_sin_cache_dtype(query), True)
    (call,) = torch_npu_double.calls
    assert call.args[4] == 128 and call.args[3].shape[-1] == 64, "partial rotary: whole heads, a 64-wide cache"
    assert call.args[1].shape == (3, 2 * 128)
    assert out_q.shape == query.shape
    torch.testing.assert_close(out_q, expected_q, **FUSED_TOL[torch.bfloat16])
    if with_key:
        torch.testing.assert_close(out_k, expected_k, **FUSED_TOL[torch.bfloat16])
    else:
        assert out_k is None


@pytest.mark.parametrize("head_size,rotary_dim,dtype,takes", [
    (64, 64, torch.bfloat16, True), (128, 64, torch.float16, True), (64, 16, torch.bfloat16, False),
    (48, 48, torch.bfloat16, False), (48, 48, torch.float32, True), (64, 96, torch.bfloat16, False)])
def test_rotary_kernel_takes_only_the_sizes_npu_mrope_documents(head_size, rotary_dim, dtype, takes):
    assert ops.rotary_kernel_takes(head_size, rotary_dim, dtype) is takes
