"""A test double of ``torch_npu`` (and of the ``torch.npu`` module it installs), for tests only.

``torch_npu`` links Ascend CANN libraries and can never be imported on machines without them, so the
NPU dispatch of ``ascend_overlay.npu`` is tested against this stand-in: a module named ``torch_npu``
that records every kernel call (name, arguments) and computes the kernel's documented result with
plain PyTorch on CPU tensors. It is installed into ``sys.modules`` by the ``torch_npu_double``
fixture, only for the tests that ask for it, and removed afterwards.

Each kernel's arithmetic is written here from the kernel's specification, independently of
``ascend_overlay.npu.ops``: a test that compares a dispatched result with vLLM's own implementation
therefore checks the argument plumbing and result unpacking, not one copy of a formula against itself.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F


@dataclass
class KernelCall:
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    result: Any = None


class TorchNpuTestDouble(types.ModuleType):
    """Stands in for the ``torch_npu`` module: records calls, computes results on CPU."""

    def __init__(self) -> None:
        super().__init__("torch_npu")
        self.__file__ = __file__
        self.calls: list[KernelCall] = []
        self.npu = NpuDeviceModuleTestDouble()

    def _record(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Any:
        self.calls.append(KernelCall(name, args, kwargs, result))
        return result

    def called(self, name: str) -> list[KernelCall]:
        return [c for c in self.calls if c.name == name]

    # -- kernels (signatures as torch_npu publishes them) ----------------------------------------

    def npu_swiglu(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        gate, up = x.chunk(2, dim=dim)
        out = (F.silu(gate.float()) * up.float()).to(x.dtype)
        return self._record("npu_swiglu", (x,), {"dim": dim}, out)

    def npu_rms_norm(self, x: torch.Tensor, gamma: torch.Tensor,
                     epsilon: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
        rstd = torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + epsilon)
        y = (x.float() * rstd * gamma.float()).to(x.dtype)
        return self._record("npu_rms_norm", (x, gamma, epsilon), {}, (y, rstd))

    def npu_add_rms_norm(self, x1: torch.Tensor, x2: torch.Tensor, gamma: torch.Tensor,
                         epsilon: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x_sum = (x1.float() + x2.float()).to(x1.dtype)
        rstd = torch.rsqrt((x1.float() + x2.float()).pow(2).mean(dim=-1, keepdim=True) + epsilon)
        y = ((x1.float() + x2.float()) * rstd * gamma.float()).to(x1.dtype)
        return self._record("npu_add_rms_norm", (x1, x2, gamma, epsilon), {}, (y, rstd, x_sum))

    def npu_mrope(self, positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor, cos_sin_cache: torch.Tensor,
                  head_size: int, *, mrope_section: list[int] | None = None, rotary_mode: str = "half",
                  cache_mode: str = "default") -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE mode, out of place on [num_tokens, num_heads * head_size]: the first
        cos_sin_cache.shape[-1] channels of each head rotate ('half' NeoX, 'interleave' GPT-J), the
        rest pass through."""
        rotary_dim = cos_sin_cache.shape[-1]
        outputs = []
        for tensor in (query, key):
            heads = tensor.reshape(tensor.shape[0], -1, head_size).float()
            cos, sin = cos_sin_cache[positions].float().chunk(2, dim=-1)
            cos, sin = cos[:, None, :], sin[:, None, :]
            rot, rest = heads[..., :rotary_dim], heads[..., rotary_dim:]
            if rotary_mode == "half":
                a, b = rot[..., : rotary_dim // 2], rot[..., rotary_dim // 2:]
                rotated = torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)
            else:
                a, b = rot[..., 0::2], rot[..., 1::2]
                rotated = torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)
            outputs.append(torch.cat((rotated, rest), dim=-1).to(tensor.dtype).reshape(tensor.shape))
        return self._record("npu_mrope", (positions, query, key, cos_sin_cache, head_size),
                            {"mrope_section": mrope_section, "rotary_mode": rotary_mode, "cache_mode": cache_mode},
                            (outputs[0], outputs[1]))


@dataclass
class NpuDeviceModuleTestDouble:
    """Stands in for ``torch.npu`` (installed by torch_npu): one visible NPU, calls recorded."""

    device_count_value: int = 1
    total_memory: int = 64 * 2**30
    initialized: bool = True  # whether this process has initialised the NPU (torch_npu's lazy init)
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def is_available(self) -> bool:
        return self.device_count_value > 0

    def device_count(self) -> int:
        return self.device_count_value

    def is_initialized(self) -> bool:
        return self.initialized

    def get_device_name(self, device_id: int = 0) -> str:
        self.calls.append(("get_device_name", (device_id,)))
        return "Ascend910B-test-double"

    def get_device_properties(self, device_id: int = 0) -> Any:
        self.calls.append(("get_device_properties", (device_id,)))
        return types.SimpleNamespace(total_memory=self.total_memory, name="Ascend910B-test-double")

    def set_device(self, device: Any) -> None:
        self.calls.append(("set_device", (device,)))

    def manual_seed_all(self, seed: int) -> None:
        self.calls.append(("manual_seed_all", (seed,)))

    def reset_peak_memory_stats(self, device: Any = None) -> None:
        self.calls.append(("reset_peak_memory_stats", (device,)))

    def max_memory_allocated(self, device: Any = None) -> int:
        self.calls.append(("max_memory_allocated", (device,)))
        return 123_456

    def empty_cache(self) -> None:
        self.calls.append(("empty_cache", ()))
