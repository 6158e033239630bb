"""The NPU worker: vLLM's GPU worker with a device initialisation that knows the NPU.

vLLM's ``Worker.init_device`` accepts only ``cuda`` devices (it raises for anything else), so an
out-of-tree device needs its own; everything after device set-up (model runner, KV cache, execution)
is vLLM's. The distributed environment is initialised with the platform's backend, ``hccl``: the same
call, and the same source of the backend name, as vLLM's CUDA, XPU and CPU workers.

Version-gated difference: vLLM 0.33 maps a worker's local rank to its host-local device through
``ParallelConfig.get_local_gpu_index``; 0.32 computes the same inline in ``Worker.init_device``.
"""

from __future__ import annotations

import gc
from typing import Any

import torch
from vllm.platforms import current_platform
from vllm.utils.mem_utils import MemorySnapshot
from vllm.utils.torch_utils import set_random_seed
from vllm.v1.worker.gpu_worker import Worker, init_worker_distributed_environment
from vllm.v1.worker.utils import request_memory

from ascend_overlay.vllm_version import vllm_version_in


def local_device_index(parallel_config: Any, local_rank: int) -> int:
    """The host-local logical device index of a worker, as vLLM's own worker computes it."""
    if vllm_version_in(">=0.33"):
        return parallel_config.get_local_gpu_index(local_rank)
    # vLLM 0.32 (gpu_worker.Worker.init_device): with several DP ranks on one host, each rank's
    # workers take the next block of world_size devices.
    p = parallel_config
    if (p.distributed_executor_backend not in ("ray", "external_launcher")
            and p.data_parallel_backend != "ray"
            and p.nnodes_within_dp == 1):
        dp_local_rank = p.data_parallel_rank_local
        if dp_local_rank is None:
            dp_local_rank = p.data_parallel_index
        per_replica = (p.pipeline_parallel_size * p.prefill_context_parallel_size
                       * p.tensor_parallel_size)
        return local_rank + dp_local_rank * per_replica
    return local_rank


class NPUWorker(Worker):
    """A vLLM worker bound to one Ascend NPU."""

    def init_device(self) -> None:
        if self.device_config.device_type != "npu":
            raise RuntimeError(f"NPUWorker needs the npu device, got {self.device_config.device}; "
                               f"it is selected by the NPU platform only")
        self.local_rank = local_device_index(self.parallel_config, self.local_rank)
        visible_index = current_platform.logical_device_id_to_visible_device_id(self.local_rank)
        self.device = torch.device(f"npu:{visible_index}")
        current_platform.set_device(self.device)
        current_platform.check_if_supports_dtype(self.model_config.dtype)

        # Before the memory snapshot, so HCCL's buffers count as baseline (as NCCL's do on CUDA).
        init_worker_distributed_environment(self.vllm_config, self.rank, self.distributed_init_method,
                                            self.local_rank, current_platform.dist_backend)
        set_random_seed(self.model_config.seed)
        gc.collect()
        torch.npu.empty_cache()
        self.init_snapshot = MemorySnapshot(device=self.device)
        self.requested_memory = request_memory(self.init_snapshot, self.cache_config)
        self._init_workspace_and_model_runner()
