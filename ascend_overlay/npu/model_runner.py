"""The NPU model runner: vLLM's GPU model runner with its CUDA stream and event calls on ``torch.npu``.

``GPUModelRunner`` creates and uses CUDA streams and events by name: ``torch.cuda.Stream()`` and
``torch.cuda.Event(blocking=True)`` in ``__init__`` when async scheduling is on (vLLM's default),
``torch.cuda.current_stream()``/``torch.cuda.stream(...)`` when it hands sampled tokens back. On an
NPU, torch is built without CUDA, and these raise (``torch.cuda.Stream requires CUDA support``).
vLLM's own CPU and XPU runners build the GPU runner inside a context that swaps these names; vllm-
ascend's ``NPUModelRunner`` points them at ``torch.npu``. This runner does the same, but only for
the duration of its own calls (construction, execution, sampling, the profiling and warm-up runs),
and restores them afterwards, so nothing outside the runner sees ``torch.cuda`` changed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch
from vllm.v1.worker.gpu_model_runner import GPUModelRunner

# torch.cuda names GPUModelRunner uses, by their torch.npu counterpart.
_CUDA_NAMES = ("Stream", "Event", "current_stream", "default_stream", "stream", "set_stream", "synchronize",
               "mem_get_info")

_lock = threading.Lock()
_depth = 0
_saved: dict[str, Any] = {}


@contextlib.contextmanager
def cuda_calls_on_npu() -> Iterator[None]:
    """Make ``torch.cuda.<stream/event API>`` and ``torch.Event`` the NPU's within the block.

    Re-entrant (the runner's calls nest) and process-wide while any caller is inside: the names are
    module attributes, and a worker process has one device.
    """
    global _depth
    with _lock:
        if _depth == 0:
            npu = torch.npu
            _saved.clear()
            for name in _CUDA_NAMES:
                _saved[name] = torch.cuda.__dict__.get(name, _MISSING)
                setattr(torch.cuda, name, getattr(npu, name))
            _saved["torch.Event"] = torch.Event
            torch.Event = npu.Event
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                torch.Event = _saved.pop("torch.Event")
                for name, value in _saved.items():
                    if value is _MISSING:
                        delattr(torch.cuda, name)
                    else:
                        setattr(torch.cuda, name, value)
                _saved.clear()


_MISSING = object()


class NPUModelRunner(GPUModelRunner):
    """``GPUModelRunner`` whose CUDA stream/event calls run on the NPU's."""

    def __init__(self, vllm_config: Any, device: torch.device) -> None:
        with cuda_calls_on_npu():
            super().__init__(vllm_config, device)

    def load_model(self, *args: Any, **kwargs: Any) -> Any:
        with cuda_calls_on_npu():
            return super().load_model(*args, **kwargs)

    def profile_run(self, *args: Any, **kwargs: Any) -> Any:
        with cuda_calls_on_npu():
            return super().profile_run(*args, **kwargs)

    def _dummy_run(self, *args: Any, **kwargs: Any) -> Any:
        with cuda_calls_on_npu():
            return super()._dummy_run(*args, **kwargs)

    def _dummy_sampler_run(self, *args: Any, **kwargs: Any) -> Any:
        with cuda_calls_on_npu():
            return super()._dummy_sampler_run(*args, **kwargs)

    def initialize_kv_cache(self, *args: Any, **kwargs: Any) -> Any:
        with cuda_calls_on_npu():
            return super().initialize_kv_cache(*args, **kwargs)

    def execute_model(self, *args: Any, **kwargs: Any) -> Any:
        with cuda_calls_on_npu():
            return super().execute_model(*args, **kwargs)

    def sample_tokens(self, *args: Any, **kwargs: Any) -> Any:
        with cuda_calls_on_npu():
            return super().sample_tokens(*args, **kwargs)
