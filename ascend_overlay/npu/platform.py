"""The Ascend NPU as a vLLM out-of-tree platform.

Only what vLLM 0.32/0.33 really asks of a platform is here, each member with the reason vLLM needs
it; everything else keeps ``Platform``'s default, and attributes vLLM reads off the device module
(``synchronize``, ``mem_get_info``, ``device_count``, ``Event``...) resolve through
``Platform.__getattr__`` to ``torch.npu``, which ``torch_npu`` installs.

vLLM imports this module only after ``platform_plugin()`` has seen ``torch_npu`` import and an NPU;
importing vLLM and torch at module level is therefore fine here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
from vllm.platforms.interface import Platform, PlatformEnum
from vllm.v1.attention.backends.registry import AttentionBackendEnum

from ascend_overlay.npu import NPU_CUSTOM_OPS, WORKER_QUALNAME

if TYPE_CHECKING:
    from vllm.config import VllmConfig
    from vllm.v1.attention.selector import AttentionSelectorConfig

log = logging.getLogger("ascend_overlay")

NPU_ATTENTION_BACKEND = "ascend_overlay.npu.attention.NPUAttentionBackend"

_NPU_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


class NPUPlatform(Platform):
    _enum = PlatformEnum.OOT                # CustomOp dispatches enabled ops to forward_oot
    device_name: str = "npu"
    device_type: str = "npu"                # torch.device("npu"); also the torch.npu module name
    dispatch_key: str = "PrivateUse1"       # the dispatch key torch_npu registers its kernels under
    ray_device_key: str = "NPU"             # Ray's resource name for Ascend NPUs
    device_control_env_var: str = "ASCEND_RT_VISIBLE_DEVICES"  # the CANN runtime's visibility mask
    # vLLM's Ray executors index a worker's NPU by its local rank over all of the node's NPUs (as on
    # CUDA), so Ray must not narrow ASCEND_RT_VISIBLE_DEVICES to the actor's own NPU.
    ray_noset_device_env_vars: list[str] = ["RAY_EXPERIMENTAL_NOSET_ASCEND_RT_VISIBLE_DEVICES"]
    dist_backend: str = "hccl"              # every vLLM worker passes this to init_distributed_environment
    # torch.compile's default (inductor) has no NPU code generator without extra Ascend packages;
    # vLLM compiles small helpers with this backend, so keep them eager.
    simple_compile_backend: str = "eager"

    @classmethod
    def import_kernels(cls) -> None:
        """vLLM calls this before any kernel runs. The default imports ``vllm._C`` (CUDA kernels,
        absent from NPU builds: a misleading warning); the NPU's kernels are torch_npu's, and
        importing it registers the ``npu`` device, ``torch.npu`` and the ``hccl`` backend."""
        import torch_npu  # noqa: F401

    @classmethod
    def register_triton_kernel_overrides(cls) -> None:
        """vLLM's GPU model runner computes KV slot mappings with a Triton kernel, and Triton has no
        NPU backend here: replace it with the same arithmetic in torch operations (``triton_overrides``)."""
        from ascend_overlay.npu import triton_overrides

        triton_overrides.register()

    @classmethod
    def apply_config_platform_defaults(cls, vllm_config: VllmConfig) -> None:
        """Runs before vLLM picks its compilation default (VLLM_COMPILE with inductor, which has no
        NPU code generator here): make eager the default, which also makes custom ops default on."""
        from vllm.config import CompilationMode

        if vllm_config.compilation_config.mode is None:
            vllm_config.compilation_config.mode = CompilationMode.NONE

    @classmethod
    def check_and_update_config(cls, vllm_config: VllmConfig) -> None:
        """vLLM's config hook: enable the NPU custom ops, pick the NPU worker, and turn off graph
        capture, which this platform does not provide (no ACL graph wrapper)."""
        from vllm.config import CompilationMode, CUDAGraphMode

        compilation = vllm_config.compilation_config
        for name in NPU_CUSTOM_OPS:
            # An explicit "-name" from the user wins; otherwise the op must be on, even under a
            # "none" base, or its object would never reach forward_oot and the NPU kernel.
            if f"-{name}" not in compilation.custom_ops and f"+{name}" not in compilation.custom_ops:
                compilation.custom_ops.append(f"+{name}")
        if compilation.mode not in (None, CompilationMode.NONE):
            log.warning("ascend-overlay: compilation mode %s is not supported by the NPU platform; "
                        "running eager", compilation.mode)
            compilation.mode = CompilationMode.NONE
        compilation.cudagraph_mode = CUDAGraphMode.NONE
        compilation.cudagraph_capture_sizes = []
        parallel = vllm_config.parallel_config
        if parallel.worker_cls == "auto":
            parallel.worker_cls = WORKER_QUALNAME

    @classmethod
    def get_attn_backend_cls(cls, selected_backend: AttentionBackendEnum | None,
                             attn_selector_config: AttentionSelectorConfig,
                             num_heads: int | None = None) -> str:
        """vLLM asks the platform for the attention backend of every attention layer. An operator's
        ``--attention-backend`` is honoured; otherwise the NPU backend (``npu/attention.py``: paged
        attention on torch_npu's kernels, eager). vLLM's own fallback, FLEX_ATTENTION, compiles
        with inductor, which has no NPU code generator."""
        if selected_backend is not None:
            return selected_backend.get_path()
        if attn_selector_config.use_mla or attn_selector_config.use_sparse:
            raise NotImplementedError(
                "MLA and sparse attention need an NPU attention backend, which ascend-overlay does not "
                "provide; choose one with --attention-backend")
        return NPU_ATTENTION_BACKEND

    @classmethod
    def is_pin_memory_available(cls) -> bool:
        """Pinned host buffers speed up host-to-NPU copies, and torch_npu provides them. The
        simulated NPU cannot: torch's Python device backend has no pinned-memory allocator."""
        from ascend_overlay.npu import npu_mode

        if npu_mode() == "simulated":
            return False
        return super().is_pin_memory_available()

    @classmethod
    def get_device_name(cls, device_id: int = 0) -> str:
        """Logged, and recorded in the startup plan and usage stats."""
        return torch.npu.get_device_name(device_id)

    @classmethod
    def get_device_total_memory(cls, device_id: int = 0) -> int:
        """Sizes default batch limits (EngineArgs) and is recorded in the startup plan."""
        return torch.npu.get_device_properties(device_id).total_memory

    @classmethod
    def set_device(cls, device: torch.device) -> None:
        """Binds the worker's process to its NPU before any allocation."""
        torch.npu.set_device(device)

    @classmethod
    def manual_seed_all(cls, seed: int) -> None:
        """Called by vLLM's ``set_random_seed`` so sampling is reproducible on the device."""
        torch.npu.manual_seed_all(seed)

    @classmethod
    def get_current_memory_usage(cls, device: torch.types.Device | None = None) -> float:
        """The model runner's memory profiler measures weights and activations with this."""
        torch.npu.reset_peak_memory_stats(device)
        return float(torch.npu.max_memory_allocated(device))

    @classmethod
    def check_if_supports_dtype(cls, dtype: torch.dtype) -> None:
        """Workers check the model dtype before loading it (the base raises NotImplementedError)."""
        if dtype not in _NPU_DTYPES:
            raise ValueError(f"dtype {dtype} is not supported on the NPU; use one of "
                             f"{', '.join(str(d).replace('torch.', '') for d in _NPU_DTYPES)} (--dtype)")
