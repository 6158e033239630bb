"""The NPU kernel patches: declared for the supported vLLM versions, skipped here (no NPU), and, once
applied, routing vLLM's own layer objects to the NPU kernels (through the torch_npu test double)."""

from __future__ import annotations

import pytest
import torch

from ascend_overlay.core import applier, requirements
from ascend_overlay.core.catalog import load_catalog
from ascend_overlay.core.contract import fingerprint
from ascend_overlay.core.planning import Context, plan
from ascend_overlay.core.settings import Settings
from ascend_overlay.core.vllm_version import installed_vllm_version

KERNEL_PATCHES = ("npu_silu_and_mul", "npu_rms_norm", "npu_rotary_embedding")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(entry_points=False)


@pytest.fixture
def applied(catalog):
    """Apply named patches directly (the gate would skip them here) and undo them afterwards."""
    done = []

    def apply(name: str):
        patch = catalog.get(name)
        done.append(applier.apply(patch))
        return patch

    yield apply
    for item in reversed(done):
        item.undo()


def test_kernel_patches_are_worker_phase_npu_only_and_version_gated(catalog):
    mine = [p for p in catalog.problems if "/patches/worker/patch_" in p.path]
    assert not mine, mine
    for name in KERNEL_PATCHES:
        patch = catalog.get(name)
        assert patch is not None, name
        assert patch.phase.value == "worker" and patch.requires == ("npu",) and patch.default
        assert patch.vllm == ">=0.32,<0.34"


def test_kernel_patches_skip_without_npu_and_apply_with_one(catalog, monkeypatch):
    ctx = Context(Settings(enabled=True), installed_vllm_version(), catalog.blocked)
    for name in KERNEL_PATCHES:
        decision = plan(catalog.get(name), ctx)
        assert not decision.applies and decision.text == "requires npu"
    # The same decision flips when an NPU is there: the skip comes from the requirement, nothing else.
    requirements.npu_available.cache_clear()
    monkeypatch.setattr(requirements, "npu_available", lambda: True)
    for name in KERNEL_PATCHES:
        assert plan(catalog.get(name), ctx).applies


def test_kernel_patches_are_refused_outside_their_vllm_range(catalog):
    from packaging.version import Version

    for name in KERNEL_PATCHES:
        decision = plan(catalog.get(name), Context(Settings(enabled=True), Version("0.34.0")))
        assert not decision.applies and "outside" in decision.text


def test_forward_native_shapes_the_patches_rely_on():
    """forward_oot is called with forward_native's arguments: a changed shape must fail here."""
    from vllm.model_executor.layers.activation import SiluAndMul
    from vllm.model_executor.layers.layernorm import RMSNorm
    from vllm.model_executor.layers.rotary_embedding.base import RotaryEmbedding, RotaryEmbeddingBase

    assert fingerprint(SiluAndMul.forward_native) == "(x)"
    assert fingerprint(RMSNorm.forward_native) == "(self, x, residual=None)"
    assert fingerprint(RotaryEmbedding.forward_native) == "(self, positions, query, key=None)"
    assert fingerprint(RotaryEmbeddingBase._match_cos_sin_cache_dtype) == "(self, query)"


def test_silu_and_mul_layer_reaches_npu_swiglu(torch_npu_double, vllm_config, applied):
    from vllm.model_executor.layers.activation import SiluAndMul

    applied("npu_silu_and_mul")
    layer = SiluAndMul()
    x = torch.randn(4, 64)
    out = layer.forward_oot(x)
    (call,) = torch_npu_double.calls
    assert call.name == "npu_swiglu" and call.args[0] is x and out is call.result


def test_rms_norm_layer_reaches_fused_kernels(torch_npu_double, vllm_config, applied):
    from vllm.model_executor.layers.layernorm import RMSNorm

    applied("npu_rms_norm")
    layer = RMSNorm(64, eps=1e-5, dtype=torch.bfloat16)
    x, residual = torch.randn(3, 64, dtype=torch.bfloat16), torch.randn(3, 64, dtype=torch.bfloat16)
    y = layer.forward_oot(x)
    y2, new_residual = layer.forward_oot(x, residual)
    first, second = torch_npu_double.calls
    assert first.name == "npu_rms_norm" and y is first.result[0]
    assert torch.equal(first.args[1], layer.weight.data) and first.args[2] == 1e-5
    assert second.name == "npu_add_rms_norm" and second.args[1] is residual
    assert y2 is second.result[0] and new_residual is second.result[2]


def test_rms_norm_with_partial_variance_keeps_vllm_path(torch_npu_double, vllm_config, applied):
    from vllm.model_executor.layers.layernorm import RMSNorm

    applied("npu_rms_norm")
    layer = RMSNorm(64, eps=1e-5, var_hidden_size=32)
    x = torch.randn(3, 64)
    torch.testing.assert_close(layer.forward_oot(x), layer.forward_native(x))
    assert torch_npu_double.calls == []


def test_rotary_layer_reaches_npu_kernel_with_cache_in_query_dtype(torch_npu_double, vllm_config, applied):
    from vllm.model_executor.layers.rotary_embedding.base import RotaryEmbedding

    applied("npu_rotary_embedding")
    layer = RotaryEmbedding(64, 64, 512, 10000.0, True, torch.float32)
    positions = torch.tensor([0, 9, 300])
    query, key = torch.randn(3, 2 * 64, dtype=torch.bfloat16), torch.randn(3, 64, dtype=torch.bfloat16)
    expected = layer.forward_native(positions, query.clone(), key.clone())
    out_q, out_k = layer.forward_oot(positions, query, key)
    (call,) = torch_npu_double.calls
    assert call.name == "npu_mrope" and call.args[4] == 64 and call.kwargs["rotary_mode"] == "half"
    assert call.args[3].dtype == torch.bfloat16
    torch.testing.assert_close(out_q, expected[0], atol=2e-2, rtol=1.6e-2)
    torch.testing.assert_close(out_k, expected[1], atol=2e-2, rtol=1.6e-2)


def test_rotary_layer_the_kernel_does_not_take_keeps_vllms_arithmetic(torch_npu_double, vllm_config, applied):
    from vllm.model_executor.layers.rotary_embedding.base import RotaryEmbedding

    applied("npu_rotary_embedding")
    layer = RotaryEmbedding(64, 16, 512, 10000.0, True, torch.bfloat16)  # rotary_dim 16: not a multiple of 32
    positions = torch.tensor([0, 9, 300])
    query, key = torch.randn(3, 2 * 64, dtype=torch.bfloat16), torch.randn(3, 64, dtype=torch.bfloat16)
    expected = layer.forward_native(positions, query.clone(), key.clone())
    out_q, out_k = layer.forward_oot(positions, query, key)
    assert torch_npu_double.calls == []
    assert torch.equal(out_q, expected[0]) and torch.equal(out_k, expected[1])


def test_rotary_subclass_with_its_own_arithmetic_keeps_it(torch_npu_double, vllm_config, applied):
    from vllm.model_executor.layers.rotary_embedding.base import RotaryEmbedding

    class ScaledRope(RotaryEmbedding):
        def forward_native(self, positions, query, key=None):
            q, k = super().forward_native(positions, query, key)
            return q * 2, k

    applied("npu_rotary_embedding")
    layer = ScaledRope(64, 64, 512, 10000.0, True, torch.float32)
    positions, query, key = torch.tensor([1, 2]), torch.randn(2, 64), torch.randn(2, 64)
    torch.testing.assert_close(layer.forward_oot(positions, query, key)[0],
                               layer.forward_native(positions, query, key)[0])
    assert torch_npu_double.calls == []


def test_undo_restores_vllm_default(catalog, vllm_config):
    from vllm.model_executor.custom_op import CustomOp
    from vllm.model_executor.layers.activation import SiluAndMul

    done = applier.apply(catalog.get("npu_silu_and_mul"))
    assert SiluAndMul.forward_oot is not CustomOp.forward_oot
    done.undo()
    assert SiluAndMul.forward_oot is CustomOp.forward_oot and "forward_oot" not in vars(SiluAndMul)
