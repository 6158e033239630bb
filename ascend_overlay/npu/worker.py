"""The NPU worker: vLLM's GPU worker with a device initialisation that knows the NPU.

vLLM's ``Worker.init_device`` accepts only ``cuda`` devices (it raises for anything else), so an
out-of-tree device needs its own; everything after device set-up (model runner, KV cache, execution)
is vLLM's. The distributed environment is initialised with the platform's backend, ``hccl``: the same
call, and the same source of the backend name, as vLLM's CUDA, XPU and CPU workers. The model
runner is the NPU's (``model_runner.NPUModelRunner``): vLLM's GPU runner with its CUDA stream and
event calls on ``torch.npu``.

Version-gated difference: vLLM 0.33 maps a worker's local rank to its host-local device through
``ParallelConfig.get_local_gpu_index``; 0.32 computes the same inline in ``Worker.init_device``.
"""

from __future__ import annotations

import gc
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from vllm.platforms import current_platform
from vllm.utils.mem_utils import MemorySnapshot
from vllm.utils.torch_utils import set_random_seed
from vllm.v1.worker.gpu_worker import Worker, init_worker_distributed_environment
from vllm.v1.worker.utils import request_memory
from vllm.v1.worker.worker_base import CompilationTimes

from ascend_overlay.core.vllm_version import vllm_version_in


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
        self.local_rank: int = local_device_index(self.parallel_config, self.local_rank)
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

    def _make_model_runner(self) -> Any:
        """vLLM's hook for a platform's model runner (0.32 and 0.33)."""
        if self.use_v2_model_runner:
            raise NotImplementedError("the NPU worker runs vLLM's V1 model runner only; unset "
                                      "VLLM_USE_V2_MODEL_RUNNER")
        from ascend_overlay.npu.model_runner import NPUModelRunner

        return NPUModelRunner(self.vllm_config, self.device)

    def _maybe_get_memory_pool_context(self, tag: str) -> AbstractContextManager:
        """vLLM's worker wraps weight, workspace and KV cache allocation in its sleep-mode memory
        pool on every platform it does not know (CUDA, XPU and CPU opt out), and that pool exists
        only for CUDA: without this, loading the model fails on the NPU. Sleep mode is not provided
        on the NPU, so allocation uses the device's own allocator."""
        if self.vllm_config.model_config.enable_sleep_mode:
            raise NotImplementedError("sleep mode (--enable-sleep-mode) is not supported on the NPU platform")
        return nullcontext()

    def compile_or_warm_up_model(self) -> CompilationTimes:
        """The NPU's warm-up: a dummy forward and sampler pass at the largest batch, so sampling
        buffers are allocated before serving, then vLLM's seed reset. vLLM's GPU version also runs
        CUDA kernel warm-ups (Triton, FlashInfer, DeepGEMM, and imports that need torchvision) and
        CUDA graph capture, none of which exists on the NPU platform, which runs eager."""
        from vllm.config import CUDAGraphMode
        from vllm.distributed.parallel_state import get_pp_group

        if get_pp_group().is_last_rank:
            max_num_reqs = min(self.scheduler_config.max_num_seqs, self.scheduler_config.max_num_batched_tokens)
            hidden_states, last_hidden_states = self.model_runner._dummy_run(
                num_tokens=max_num_reqs, skip_eplb=True, cudagraph_runtime_mode=CUDAGraphMode.NONE)
            if self.model_runner.is_pooling_model:
                self.model_runner._dummy_pooler_run(hidden_states)
            else:
                self.model_runner._dummy_sampler_run(hidden_states=last_hidden_states)
        set_random_seed(self.model_config.seed, self.parallel_config.data_parallel_index)
        return CompilationTimes(language_model=self.compilation_config.compilation_time,
                                encoder=self.compilation_config.encoder_compilation_time)
