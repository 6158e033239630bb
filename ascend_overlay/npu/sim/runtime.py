"""``torch.npu`` of the simulated device: what torch_npu's device module offers and vLLM uses.

The device initialises lazily, as torch_npu's does (``lazy_init``): the calls that initialise a card
initialise the simulated one, and a child forked after that refuses them.

Kernels run synchronously on CPU, so every stream is always idle and every event is complete:
streams and events are torch's own ``torch.Stream``/``torch.Event`` on the ``npu`` device (recorded
through torch's Python device guard, which completes them at once), and ``synchronize`` returns at
once. Memory figures come from the device's accounting of live storages (``device.memory``) against
a fixed simulated capacity; nothing here knows the memory of a real NPU.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ascend_overlay.npu.sim import device as _device
from ascend_overlay.npu.sim import lazy_init

DEVICE_NAME = "Ascend910B (simulated)"


def _index(device: Any = None) -> int:
    if isinstance(device, torch.Stream):
        return device.device_index
    return _device.resolve_index(device)


# -- availability and selection --------------------------------------------------------------------

def is_available() -> bool:
    return _device.device_count() > 0


def is_initialized() -> bool:
    return lazy_init.is_initialised()


def init() -> None:
    lazy_init.ensure("torch.npu.init")


def _is_in_bad_fork() -> bool:
    return lazy_init.in_bad_fork()


def _lazy_init() -> None:
    lazy_init.ensure("torch.npu._lazy_init")


def device_count() -> int:
    return _device.device_count()


def current_device() -> int:
    lazy_init.ensure("torch.npu.current_device")
    return _device.current_index()


def set_device(device: Any) -> None:
    index = _index(device)
    lazy_init.ensure("torch.npu.set_device")
    _device.set_current_index(index)


@contextlib.contextmanager
def device(index: Any) -> Iterator[None]:
    """``with torch.npu.device(i)``: select a device for a block."""
    if index is None or (isinstance(index, int) and index < 0):
        yield
        return
    previous = current_device()
    set_device(index)
    try:
        yield
    finally:
        set_device(previous)


def synchronize(device: Any = None) -> None:
    """Kernels ran on the CPU when they were called: nothing is ever pending."""
    if device is not None:
        _index(device)
    lazy_init.ensure("torch.npu.synchronize")


def get_device_name(device: Any = None) -> str:
    _index(device)
    return DEVICE_NAME


@dataclass(frozen=True)
class DeviceProperties:
    name: str
    total_memory: int
    multi_processor_count: int = 1


def get_device_properties(device: Any = None) -> DeviceProperties:
    _index(device)
    lazy_init.ensure("torch.npu.get_device_properties")
    return DeviceProperties(DEVICE_NAME, _device.TOTAL_MEMORY)


def get_device_capability(device: Any = None) -> None:
    """torch_npu reports no CUDA compute capability."""
    _index(device)
    return None


def is_bf16_supported() -> bool:
    return True


# -- seeding: kernels run on CPU memory and draw from the CPU generator --------------------------------
# (torch.manual_seed calls a PrivateUse1 module's manual_seed_all: seed the generator directly.)

def manual_seed(seed: int) -> None:
    torch.default_generator.manual_seed(int(seed))


def manual_seed_all(seed: int) -> None:
    torch.default_generator.manual_seed(int(seed))


def seed() -> None:
    torch.default_generator.seed()


def seed_all() -> None:
    torch.default_generator.seed()


def initial_seed() -> int:
    return torch.default_generator.initial_seed()


def get_rng_state(device: Any = None) -> torch.Tensor:
    return torch.default_generator.get_state()


def set_rng_state(new_state: torch.Tensor, device: Any = None) -> None:
    torch.default_generator.set_state(new_state)


# -- streams and events ------------------------------------------------------------------------------

class Stream(torch.Stream):
    """An NPU stream. ``torch.Stream`` on the npu device; always idle here."""

    def __new__(cls, device: Any = None, priority: int = 0, **_: Any) -> Stream:
        return super().__new__(cls, device=torch.device(_device.DEVICE_TYPE, _index(device)), priority=priority)

    def wait_stream(self, stream: torch.Stream) -> None:
        return None


class Event(torch.Event):
    """An NPU event; ``blocking`` is accepted as torch_npu accepts it. Work recorded before it has
    always completed (kernels run when called), so waiting on it returns at once."""

    def __new__(cls, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False,
                **_: Any) -> Event:
        return super().__new__(cls, enable_timing=enable_timing, blocking=blocking, interprocess=interprocess)

    def synchronize(self) -> None:
        # torch's Python device guard records and queries events but cannot synchronize one.
        return None


_current_streams: dict[int, torch.Stream] = {}


def default_stream(device: Any = None) -> torch.Stream:
    index = _index(device)
    return torch.Stream(device=torch.device(_device.DEVICE_TYPE, index))


def current_stream(device: Any = None) -> torch.Stream:
    index = _index(device)
    return _current_streams.get(index) or default_stream(index)


def set_stream(stream: torch.Stream | None) -> None:
    if stream is not None:
        _current_streams[stream.device_index] = stream


@contextlib.contextmanager
def stream(stream: torch.Stream | None) -> Iterator[None]:
    """``with torch.npu.stream(s)``: make ``s`` the current stream of its device for a block."""
    if stream is None:
        yield
        return
    index = stream.device_index
    previous = _current_streams.get(index)
    _current_streams[index] = stream
    try:
        yield
    finally:
        if previous is None:
            _current_streams.pop(index, None)
        else:
            _current_streams[index] = previous


# -- memory ------------------------------------------------------------------------------------------

def memory_allocated(device: Any = None) -> int:
    return _device.memory.allocated.get(_index(device), 0)


def max_memory_allocated(device: Any = None) -> int:
    return _device.memory.peak.get(_index(device), 0)


# No caching allocator: what is reserved is what is allocated.
memory_reserved = memory_allocated
max_memory_reserved = max_memory_allocated


def reset_peak_memory_stats(device: Any = None) -> None:
    _device.memory.reset_peak(_index(device))


reset_max_memory_allocated = reset_peak_memory_stats


def reset_accumulated_memory_stats(device: Any = None) -> None:
    _index(device)


def mem_get_info(device: Any = None) -> tuple[int, int]:
    """(free, total) bytes of the simulated device, as seen by this process."""
    lazy_init.ensure("torch.npu.mem_get_info")
    used = memory_allocated(device)
    return max(_device.TOTAL_MEMORY - used, 0), _device.TOTAL_MEMORY


def memory_stats(device: Any = None) -> OrderedDict[str, Any]:
    index = _index(device)
    memory = _device.memory
    stats: OrderedDict[str, Any] = OrderedDict()
    for kind in ("allocated_bytes", "reserved_bytes", "active_bytes"):
        stats[f"{kind}.all.current"] = memory.allocated.get(index, 0)
        stats[f"{kind}.all.peak"] = memory.peak.get(index, 0)
    stats["allocation.all.allocated"] = memory.allocations.get(index, 0)
    stats["num_alloc_retries"] = 0
    stats["num_ooms"] = 0
    return stats


def empty_cache() -> None:
    """No caching allocator to empty."""
    return None


class OutOfMemoryError(RuntimeError):
    pass


# -- amp (torch asks a PrivateUse1 module for these when autocast names the device) --------------------

def get_amp_supported_dtype() -> list[torch.dtype]:
    return [torch.float16, torch.bfloat16]


def is_autocast_enabled() -> bool:
    return torch.is_autocast_enabled(_device.DEVICE_TYPE)


def get_autocast_dtype() -> torch.dtype:
    return torch.get_autocast_dtype(_device.DEVICE_TYPE)
