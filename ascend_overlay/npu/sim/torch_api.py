"""What torch_npu's C++ extension makes torch answer for an NPU, answered for the simulated one.

torch_npu registers, in C++, a device allocator, a device guard and generator hooks for its
device. vLLM (0.32) relies on them through device-neutral torch APIs: ``torch.accelerator``
(``memory_stats``, ``get_memory_info``, ``synchronize``, ``empty_cache``...), ``torch.Event()``, and
``torch.Generator(device=...)`` for dummy weights and seeded sampling. torch's Python PrivateUse1
backend can register none of these (its guard always names device 0 and cannot synchronize an
event; there is no device allocator and no generator hook, so these calls raise). The simulator
answers them in Python instead, with the same meaning, for the simulated device:

* ``torch.accelerator.*`` are routed to the simulator's ``torch.npu``;
* ``torch.Event`` is ``torch.npu.Event`` (events complete at once: kernels run when called);
* ``torch.Generator(device="npu")`` gives a host generator, which is what the simulated device's
  kernels draw from (they run on CPU memory); every other device is torch's own generator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from ascend_overlay.npu.sim import runtime

_ROUTED = {
    "synchronize": runtime.synchronize,
    "empty_cache": lambda: runtime.empty_cache(),
    "get_memory_info": runtime.mem_get_info,
    "memory_stats": runtime.memory_stats,
    "memory_allocated": runtime.memory_allocated,
    "max_memory_allocated": runtime.max_memory_allocated,
    "memory_reserved": runtime.memory_reserved,
    "max_memory_reserved": runtime.max_memory_reserved,
    "reset_peak_memory_stats": runtime.reset_peak_memory_stats,
    "reset_accumulated_memory_stats": runtime.reset_accumulated_memory_stats,
    "device_count": runtime.device_count,
    "current_device_index": runtime.current_device,
    "current_device_idx": runtime.current_device,
    "set_device_index": runtime.set_device,
    "set_device_idx": runtime.set_device,
}


@contextlib.contextmanager
def _device_index(device: Any, /) -> Iterator[None]:
    with runtime.device(device):
        yield


_TorchGenerator = torch._C.Generator


class _GeneratorType(type(_TorchGenerator)):  # type: ignore[misc]
    """Keeps ``isinstance(g, torch.Generator)`` true for every torch generator."""

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, _TorchGenerator)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, _TorchGenerator)


class Generator(_TorchGenerator, metaclass=_GeneratorType):  # type: ignore[valid-type,misc]
    """``torch.Generator``, which for the simulated NPU is a host generator."""

    def __new__(cls, device: Any = "cpu") -> Any:
        if torch.device(device).type == "npu":
            return _TorchGenerator("cpu")
        return _TorchGenerator(device)


def install() -> None:
    for name, function in _ROUTED.items():
        setattr(torch.accelerator, name, function)
    torch.accelerator.device_index = _device_index
    torch.Event = runtime.Event
    torch.Generator = Generator
