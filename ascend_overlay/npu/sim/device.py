"""The simulated ``npu`` device: torch's PrivateUse1 backend, served from Python on CPU memory.

A tensor on the simulated device is an ``NpuTensor``: a ``__torch_dispatch__`` wrapper subclass whose
device is ``npu:<i>`` and which holds a CPU tensor with the same sizes, strides and storage offset.
Every aten operator on it runs on the held CPU tensors and its results are wrapped again, so views
share storage with their base and in-place ops are seen by every view, as on a real device. Factory
calls that name the device (``torch.empty(..., device="npu")``) carry no tensor to dispatch on; they
reach the PrivateUse1 fallback, which serves them the same way.

What a real NPU refuses, this device refuses too: an operator that has no NPU kernel (a vLLM
``_C`` CPU kernel, say) raises ``NotImplementedError`` for the PrivateUse1 backend; mixing NPU
tensors with CPU tensors in arithmetic raises the same-device error; ``tensor.is_cuda`` is False.

Device indices: torch's Python device guard reports device 0 to C++ whatever the process selected,
so an index torch fills in itself (``x.to("npu")``) is 0; a device given without an index in Python
(``torch.empty(..., device="npu")``, the ``torch.device`` context) is resolved to the current one.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._pytree import tree_map

from ascend_overlay.npu.sim import lazy_init

DEVICE_TYPE = "npu"
# The simulated device's memory, per device. vLLM sizes its KV cache from it
# (gpu_memory_utilization x total), and the simulator backs it with host RAM: kept modest.
TOTAL_MEMORY = 4 * 2**30


class _DeviceState(threading.local):
    """The current device, per thread (as ``torch.npu.set_device`` is on a real NPU)."""

    index = 0


_state = _DeviceState()
_device_count = 0  # set by install()


def device_count() -> int:
    return _device_count


def current_index() -> int:
    return _state.index


def set_current_index(index: int) -> None:
    check_index(index)
    _state.index = index


def check_index(index: int) -> int:
    if not 0 <= index < _device_count:
        raise RuntimeError(f"Invalid device ordinal npu:{index}: the simulated NPU has {_device_count} "
                           f"device(s) (ASCEND_RT_VISIBLE_DEVICES)")
    return index


def resolve_index(device: Any) -> int:
    """The device index a user's ``device`` argument means (None or bare ``npu`` = current)."""
    if device is None:
        return current_index()
    if isinstance(device, int):
        return check_index(device)
    device = torch.device(device)
    if device.type != DEVICE_TYPE:
        raise ValueError(f"expected an npu device, got {device}")
    return current_index() if device.index is None else check_index(device.index)


# -- memory accounting -----------------------------------------------------------------------------

class _Memory:
    """Bytes held by live storages of each simulated device, with the peak since the last reset."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.allocated: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        self.allocations: dict[int, int] = {}
        self.tracked: dict[int, int] = {}  # storage key -> device index

    def track(self, storage: torch.UntypedStorage, index: int) -> None:
        key = storage._cdata
        with self.lock:
            if key in self.tracked:
                return
            nbytes = storage.nbytes()
            self.tracked[key] = index
            now = self.allocated.get(index, 0) + nbytes
            self.allocated[index] = now
            self.peak[index] = max(self.peak.get(index, 0), now)
            self.allocations[index] = self.allocations.get(index, 0) + 1
        weakref.finalize(storage, self._release, key, index, nbytes)

    def _release(self, key: int, index: int, nbytes: int) -> None:
        with self.lock:
            if self.tracked.pop(key, None) is not None:
                self.allocated[index] = self.allocated.get(index, 0) - nbytes

    def reset_peak(self, index: int) -> None:
        with self.lock:
            self.peak[index] = self.allocated.get(index, 0)


memory = _Memory()


# -- the tensor ------------------------------------------------------------------------------------

class NpuTensor(torch.Tensor):
    """A tensor on the simulated NPU; ``_cpu`` holds its data (same sizes, strides, storage)."""

    _cpu: torch.Tensor

    @staticmethod
    def __new__(cls, cpu: torch.Tensor, index: int) -> NpuTensor:
        wrapper = torch.Tensor._make_wrapper_subclass(
            cls, cpu.size(), strides=cpu.stride(), storage_offset=cpu.storage_offset(), dtype=cpu.dtype,
            layout=cpu.layout, device=torch.device(DEVICE_TYPE, index), requires_grad=cpu.requires_grad,
            # Sizes and strides are asked of __torch_dispatch__, i.e. of the held CPU tensor: an
            # out= or in-place op that resizes it (arange.out, resize_) resizes the NPU tensor too.
            dispatch_sizes_strides_policy="sizes")
        wrapper._cpu = cpu
        return wrapper

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func.namespace not in _SERVED_NAMESPACES:
            return _custom_op(func, args, kwargs or {})
        return serve(func, args, kwargs or {})

    # Methods torch implements in C++ only for tensors with storage; a real NPU tensor has them.
    def tolist(self) -> Any:
        return self._cpu.tolist()

    def data_ptr(self) -> int:
        return self._cpu.data_ptr()

    def untyped_storage(self) -> torch.UntypedStorage:
        return self._cpu.untyped_storage()

    def numpy(self, *, force: bool = False) -> Any:
        raise TypeError(f"can't convert {self.device} device type tensor to numpy. Use Tensor.cpu() to copy the "
                        f"tensor to host memory first.")

    def __repr__(self, *, tensor_contents: Any = None) -> str:
        return f"{self._cpu!r} (simulated on {self.device})"

    def __reduce_ex__(self, protocol: Any) -> Any:
        # A real NPU tensor pickles to the same device; the simulator rebuilds it on its own device.
        return (_rebuild, (self._cpu, self.device.index))


def _rebuild(cpu: torch.Tensor, index: int) -> NpuTensor:
    return wrap(cpu, index)


def wrap(cpu: torch.Tensor, index: int) -> NpuTensor:
    lazy_init.ensure("a tensor on the npu device")  # every NPU tensor is made here: creating one initialises
    memory.track(cpu.untyped_storage(), index)
    if torch._C.is_inference_mode_enabled():
        # A wrapper made under inference mode would be an inference tensor; torch then refuses to
        # make it a view of a normal tensor ("Cannot set version_counter for inference tensor").
        # The held CPU tensor carries the data; the wrapper is always a normal tensor.
        with torch._C._InferenceMode(False):
            return NpuTensor(cpu, index)
    return NpuTensor(cpu, index)


# -- serving operators -----------------------------------------------------------------------------

_SERVED_NAMESPACES = frozenset({"aten", "prims"})

# Operators that legitimately take tensors of two devices (copies, and indexing with host indices,
# which CUDA and torch_npu both accept).
_CROSS_DEVICE = frozenset({
    "aten::copy_", "aten::_copy_from", "aten::_copy_from_and_resize", "aten::_to_copy", "aten::copy",
    "aten::index.Tensor", "aten::index_put_", "aten::index_put", "aten::_index_put_impl_",
    "aten::_unsafe_index", "aten::_unsafe_index_put", "aten::set_", "aten::lift_fresh",
    "aten::is_same_size", "aten::_has_compatible_shallow_copy_type", "aten::equal",
})


def _device_of_factory(kwargs: dict[str, Any]) -> tuple[bool, int | None]:
    """(names a device, the npu index it names or None when it names another device)."""
    if "device" not in kwargs or kwargs["device"] is None:
        return False, None
    device = torch.device(kwargs["device"])
    if device.type != DEVICE_TYPE:
        return True, None
    return True, resolve_index(device)


def _check_devices(func: Any, tensors: list[torch.Tensor]) -> int:
    """The one npu index of an operator's tensor arguments; raises on a mix a device would refuse."""
    npu_index = None
    other: torch.Tensor | None = None
    for t in tensors:
        if isinstance(t, NpuTensor):
            index = t.device.index
            if npu_index is None:
                npu_index = index
            elif index != npu_index and func.name() not in _CROSS_DEVICE:
                raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two "
                                   f"devices, npu:{npu_index} and npu:{index}! (in {func.name()})")
        elif t.dim() > 0 and other is None:
            other = t
    assert npu_index is not None
    if other is not None and func.name() not in _CROSS_DEVICE:
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                           f"npu:{npu_index} and {other.device}! (in {func.name()})")
    return npu_index


def _tensors(args: tuple, kwargs: dict[str, Any]) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []

    def visit(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            found.append(value)
        return value

    tree_map(visit, (args, kwargs))
    return found


# Metadata queries (sizes/strides policy): answered by the held CPU tensor.
_METADATA = {
    "aten::sym_size", "aten::sym_stride", "aten::sym_numel", "aten::dim", "aten::sym_storage_offset",
    "aten::is_contiguous", "aten::is_strides_like_format", "aten::is_non_overlapping_and_dense",
    "aten::size", "aten::stride", "aten::numel", "aten::storage_offset",
}


def serve(func: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
    """Run an aten operator whose inputs or outputs are on the simulated device, on CPU memory."""
    if func._schema.name in _METADATA:
        return func(args[0]._cpu, *args[1:], **kwargs)
    tensors = _tensors(args, kwargs)
    index = _check_devices(func, tensors) if any(isinstance(t, NpuTensor) for t in tensors) else current_index()
    names_device, target = _device_of_factory(kwargs)
    if names_device:
        kwargs = {**kwargs, "device": torch.device("cpu")}
        index = -1 if target is None else target  # -1: the result is on the device named (CPU), handed back as is
    inputs: dict[int, NpuTensor] = {}

    def down(value: Any) -> Any:
        if isinstance(value, NpuTensor):
            inputs[id(value._cpu)] = value
            return value._cpu
        return value

    cpu_args, cpu_kwargs = tree_map(down, (args, kwargs))
    if kwargs.get("pin_memory"):
        cpu_kwargs["pin_memory"] = False  # device memory is never pinned host memory
    result = func(*cpu_args, **cpu_kwargs)

    def up(value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        same = inputs.get(id(value))
        if same is not None:
            return same  # an in-place or out= result: the caller's own tensor, not a new wrapper
        return value if index < 0 else wrap(value, index)

    return tree_map(up, result)


_NPU_KERNEL_KEYS = ("PrivateUse1", "CompositeExplicitAutograd", "CompositeExplicitAutogradNonFunctional")


def _custom_op(func: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
    """A non-torch operator on NPU tensors: its NPU kernel if someone registered one (vLLM registers
    its custom ops under the platform's dispatch key), else the error a device without one gives."""
    name = func.name()
    if not any(torch._C._dispatch_has_kernel_for_dispatch_key(name, key) for key in _NPU_KERNEL_KEYS):
        raise NotImplementedError(
            f"Could not run '{name}' with arguments from the 'PrivateUse1' backend: no kernel for the "
            f"(simulated) NPU is registered for this operator.")
    return func.redispatch(torch._C.DispatchKeySet(torch._C.DispatchKey.PrivateUse1), *args, **kwargs)


def fallback(op: Any, *args: Any, **kwargs: Any) -> Any:
    """PrivateUse1 fallback: factories that name the device. (torch cannot hand a fallback tensors of
    a Python subclass; operators reached below the Python key are registered one by one below.)"""
    if op.namespace not in _SERVED_NAMESPACES:
        raise NotImplementedError(
            f"Could not run '{op.name()}' with arguments from the 'PrivateUse1' backend: no kernel for the "
            f"(simulated) NPU is registered for this operator.")
    return serve(op, args, kwargs)


_installed = False
_library: Any = None


def install(count: int, backend_module: Any) -> None:
    """Register ``npu`` as torch's PrivateUse1 backend with ``count`` devices. Once per process."""
    global _installed, _library, _device_count
    if _installed:
        return
    from torch.utils.backend_registration import _setup_privateuseone_for_python_backend

    _device_count = count
    _setup_privateuseone_for_python_backend(DEVICE_TYPE, backend_module=backend_module)
    _library = torch.library.Library("_", "IMPL")  # kept alive: dropping it unregisters the fallback
    _library.fallback(fallback, dispatch_key="PrivateUse1")
    _below_python.extend(_register_below_python())
    _installed = True


# Operators torch runs with the Python key excluded, so that they reach the backend kernel with NPU
# tensors: torch.tensor(data, device="npu") copies its data in with it.
_BELOW_PYTHON = ("copy_", "_copy_from", "_copy_from_and_resize", "_to_copy")
_below_python: list[Any] = []


def _register_below_python() -> list[Any]:
    library = torch.library.Library("aten", "IMPL")
    for name in _BELOW_PYTHON:
        packet = getattr(torch.ops.aten, name)
        for overload in packet.overloads():
            op = getattr(packet, overload)
            library.impl(op, _served(op), "PrivateUse1")
    return [library]


def _served(op: Any) -> Callable[..., Any]:
    def kernel(*args: Any, **kwargs: Any) -> Any:
        return serve(op, args, kwargs)

    return kernel
