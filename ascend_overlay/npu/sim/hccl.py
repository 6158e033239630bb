"""``hccl``, the collective backend of the simulated NPU: NPU tensors carried over gloo.

torch_npu registers HCCL with ``torch.distributed`` for ``npu`` tensors; vLLM's NPU worker brings
its device groups up with it (``init_process_group(backend="hccl")``, ``new_group(backend="hccl")``).
The simulated backend is a Python ``ProcessGroup`` that accepts only NPU tensors, as HCCL does, and
runs each collective with gloo on the CPU tensors that hold their data: results land in the NPU
tensors because they share storage. Every rank is a separate process, as on a real machine.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ascend_overlay.npu.sim.device import NpuTensor

BACKEND = "hccl"


def _host(value: Any) -> Any:
    """The CPU tensor(s) holding the data of NPU tensor(s); anything else is refused, as HCCL does."""
    if isinstance(value, (list, tuple)):
        return [_host(v) for v in value]
    if isinstance(value, NpuTensor):
        return value._cpu
    if isinstance(value, torch.Tensor):
        raise RuntimeError(f"hccl: tensors must be on the npu device, got {value.device} "
                           f"(use a gloo group for host tensors)")
    return value


class SimulatedHccl(dist.ProcessGroup):
    """One rank of an ``hccl`` group on the simulated NPU."""

    def __init__(self, store: dist.Store, rank: int, size: int, timeout: timedelta) -> None:
        super().__init__(rank, size)
        self._gloo = dist.ProcessGroupGloo(store, rank, size, timeout)
        self._group_name = ""
        self._group_desc = ""

    # torch names a group through these; a Python group keeps the names itself.
    def getBackendName(self) -> str:  # noqa: N802 (torch's names)
        return BACKEND

    def setGroupName(self, name: str) -> None:  # noqa: N802
        self._group_name = name

    def getGroupName(self) -> str:  # noqa: N802
        return self._group_name

    def setGroupDesc(self, desc: str) -> None:  # noqa: N802
        self._group_desc = desc

    def getGroupDesc(self) -> str:  # noqa: N802
        return self._group_desc

    def allreduce(self, tensors: list[torch.Tensor], opts: Any) -> Any:
        return self._gloo.allreduce(_host(tensors), opts)

    def allreduce_coalesced(self, tensors: list[torch.Tensor], opts: Any) -> Any:
        return self._gloo.allreduce_coalesced(_host(tensors), opts)

    def broadcast(self, tensors: list[torch.Tensor], opts: Any) -> Any:
        return self._gloo.broadcast(_host(tensors), opts)

    def reduce(self, tensors: list[torch.Tensor], opts: Any) -> Any:
        return self._gloo.reduce(_host(tensors), opts)

    def allgather(self, output_tensors: list[list[torch.Tensor]], input_tensors: list[torch.Tensor], opts: Any) -> Any:
        return self._gloo.allgather(_host(output_tensors), _host(input_tensors), opts)

    def _allgather_base(self, output: torch.Tensor, input: torch.Tensor, opts: Any) -> Any:
        return self._gloo._allgather_base(_host(output), _host(input), opts)

    def all_gather_single(self, output: torch.Tensor, input: torch.Tensor, opts: Any) -> Any:
        return self._gloo._allgather_base(_host(output), _host(input), opts)

    def gather(self, output_tensors: list[list[torch.Tensor]], input_tensors: list[torch.Tensor], opts: Any) -> Any:
        return self._gloo.gather(_host(output_tensors), _host(input_tensors), opts)

    def scatter(self, output_tensors: list[torch.Tensor], input_tensors: list[list[torch.Tensor]], opts: Any) -> Any:
        return self._gloo.scatter(_host(output_tensors), _host(input_tensors), opts)

    def reduce_scatter(self, output_tensors: list[torch.Tensor], input_tensors: list[list[torch.Tensor]],
                       opts: Any) -> Any:
        return self._gloo.reduce_scatter(_host(output_tensors), _host(input_tensors), opts)

    def _reduce_scatter_base(self, output: torch.Tensor, input: torch.Tensor, opts: Any) -> Any:
        return self._gloo._reduce_scatter_base(_host(output), _host(input), opts)

    def reduce_scatter_single(self, output: torch.Tensor, input: torch.Tensor, opts: Any) -> Any:
        return self._gloo._reduce_scatter_base(_host(output), _host(input), opts)

    def alltoall_base(self, output: torch.Tensor, input: torch.Tensor, output_split_sizes: list[int],
                      input_split_sizes: list[int], opts: Any) -> Any:
        return self._gloo.alltoall_base(_host(output), _host(input), output_split_sizes, input_split_sizes, opts)

    def all_to_all_single(self, output: torch.Tensor, input: torch.Tensor, output_split_sizes: list[int],
                          input_split_sizes: list[int], opts: Any) -> Any:
        return self.alltoall_base(output, input, output_split_sizes, input_split_sizes, opts)

    def send(self, tensors: list[torch.Tensor], dst: int, tag: int) -> Any:
        return self._gloo.send(_host(tensors), dst, tag)

    def recv(self, tensors: list[torch.Tensor], src: int, tag: int) -> Any:
        return self._gloo.recv(_host(tensors), src, tag)

    def barrier(self, opts: Any) -> Any:
        return self._gloo.barrier(opts)


def _create(store: dist.Store, rank: int, size: int, timeout: timedelta) -> SimulatedHccl:
    return SimulatedHccl(store, rank, size, timeout)


def register() -> None:
    """Make ``hccl`` a torch.distributed backend for ``npu`` tensors (once per process)."""
    if BACKEND not in dist.Backend.backend_list:
        dist.Backend.register_backend(BACKEND, _create, devices=["npu"])
