"""The simulated kernels return what the real torch_npu says they return: shapes and dtypes equal the
wheel's own meta kernels (``torch_npu/op_plugin/meta/_meta_registrations.py``), run on meta tensors,
for torch_npu 2.13.0 (vLLM 0.32's torch) and 2.14.0 (vLLM 0.33's), in bfloat16 and float16, on the
shapes the NPU path calls them with (the tiny models' layers, a mixed prefill/decode batch).

The wheels (about 44 MB each) are fetched once into the cache with pip and read without importing
torch_npu (it needs Ascend CANN); skipped, with pip's error as the reason, when the index is
unreachable. The ATB kernels (``_npu_reshape_and_cache``, ``_npu_paged_attention``,
``_npu_rotary_embedding``) have no Python meta kernel in either wheel: they return nothing and write
in place (their shapes are in the contract table).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch_npu_schemas import META, meta_functions

from ascend_overlay.main2main.sources import FetchError, fetch_wheel
from ascend_overlay.npu.sim import kernels
from ascend_overlay.npu.sim.kernels import on_host

pytestmark = pytest.mark.network

VERSIONS = ("2.13.0", "2.14.0")
WITH_META = ("npu_swiglu", "npu_rms_norm", "npu_add_rms_norm", "npu_mrope", "npu_fused_infer_attention_score")


@pytest.fixture(scope="module", params=VERSIONS)
def registrations(request: pytest.FixtureRequest) -> str:
    """The wheel's ``_meta_registrations.py``."""
    try:
        wheel = fetch_wheel(request.param, "torch_npu")
    except FetchError as exc:
        pytest.skip(f"cannot fetch the torch_npu {request.param} wheel (registry unreachable?): {exc}")
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(META).decode("utf-8")


@pytest.fixture(scope="module")
def meta(registrations: str) -> dict[str, Callable[..., Any]]:
    return meta_functions(registrations, WITH_META)


def _rand(*shape: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _on_meta(value: Any) -> Any:
    return torch.empty(value.shape, dtype=value.dtype, device="meta") if isinstance(value, torch.Tensor) else value


def _calls(dtype: torch.dtype) -> dict[str, tuple[tuple[Any, ...], dict[str, Any]]]:
    """One call per kernel, with the shapes the NPU path passes (TND attention over a paged cache)."""
    tokens, hidden, heads, kv_heads, head, block = 9, 128, 4, 2, 64, 128
    table = torch.tensor([[0, 1], [2, 3], [4, 5]], dtype=torch.int32)
    cache = torch.zeros(6, block, kv_heads * head, dtype=dtype)
    return {
        "npu_swiglu": ((_rand(tokens, 2 * 256, dtype=dtype),), {"dim": -1}),
        "npu_rms_norm": ((_rand(tokens, hidden, dtype=dtype), _rand(hidden, dtype=dtype, seed=1), 1e-6), {}),
        "npu_add_rms_norm": ((_rand(tokens, hidden, dtype=dtype), _rand(tokens, hidden, dtype=dtype, seed=2),
                              _rand(hidden, dtype=dtype, seed=3), 1e-6), {}),
        "npu_mrope": ((torch.arange(tokens), _rand(tokens, heads * head, dtype=dtype),
                       _rand(tokens, kv_heads * head, dtype=dtype), _rand(256, 64, dtype=dtype), head),
                      {"mrope_section": [0, 0, 0], "rotary_mode": "half", "cache_mode": "default"}),
        "npu_fused_infer_attention_score": (
            (_rand(tokens, heads, head, dtype=dtype), cache, cache),
            {"atten_mask": torch.ones(2048, 2048, dtype=torch.int8).triu(1), "block_table": table,
             "input_layout": "TND", "block_size": block, "actual_seq_lengths": [5, 8, 9],
             "actual_seq_lengths_kv": [5, 131, 9], "num_key_value_heads": kv_heads, "num_heads": heads,
             "scale": head ** -0.5, "sparse_mode": 3}),
    }


def _shapes(result: Any) -> list[tuple[tuple[int, ...], torch.dtype]]:
    results = result if isinstance(result, tuple) else (result,)
    return [(tuple(r.shape), r.dtype) for r in results]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", WITH_META)
def test_simulated_kernel_returns_what_the_wheels_meta_kernel_returns(meta, name, dtype):
    args, kwargs = _calls(dtype)[name]
    expected = _shapes(meta[name](*[_on_meta(a) for a in args], **{k: _on_meta(v) for k, v in kwargs.items()}))
    got = _shapes(on_host(getattr(kernels, name), *args, **kwargs))
    assert got == expected, f"{name} ({dtype}): simulated {got}, torch_npu's meta kernel {expected}"


@pytest.mark.parametrize("name", ["_npu_reshape_and_cache", "_npu_paged_attention", "_npu_rotary_embedding"])
def test_the_wheels_register_no_meta_kernel_for_the_atb_kernels(registrations, name):
    """If a later wheel registers one, it belongs in the comparison above."""
    with pytest.raises(KeyError):
        meta_functions(registrations, [name])
