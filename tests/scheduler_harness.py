"""vLLM's real ``Scheduler``, built in-process for scheduling-rule tests (no model runs: a step's
sampled tokens are supplied by the test, since scheduling does not depend on their values)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def build_scheduler(model: Path, *, max_num_seqs: int, max_num_batched_tokens: int, num_blocks: int = 512,
                    policy: str = "fcfs", async_scheduling: bool = False) -> Any:
    import torch
    from vllm.config import CacheConfig, ModelConfig, SchedulerConfig, VllmConfig
    from vllm.v1.core.sched.async_scheduler import AsyncScheduler
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
    from vllm.v1.structured_output import StructuredOutputManager

    config = VllmConfig(
        model_config=ModelConfig(model=str(model), max_model_len=256, dtype="float32"),
        scheduler_config=SchedulerConfig(max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
                                         max_model_len=256, enable_chunked_prefill=True, is_encoder_decoder=False,
                                         policy=policy),
        cache_config=CacheConfig(block_size=16, enable_prefix_caching=False))
    config.cache_config.num_gpu_blocks = num_blocks
    spec = FullAttentionSpec(block_size=16, num_kv_heads=1, head_size=64, dtype=torch.float32)
    kv = KVCacheConfig(num_blocks=num_blocks, kv_cache_tensors=[], kv_cache_groups=[KVCacheGroupSpec(["layer"], spec)])
    cls = AsyncScheduler if async_scheduling else Scheduler
    return cls(config, kv, StructuredOutputManager(config), block_size=16, log_stats=False)


def request(request_id: str, prompt_len: int, max_tokens: int, priority: int = 0) -> Any:
    from vllm.sampling_params import SamplingParams
    from vllm.v1.request import Request

    return Request(request_id, list(range(2, 2 + prompt_len)), SamplingParams(max_tokens=max_tokens, ignore_eos=True),
                   None, priority=priority)


def step(scheduler: Any) -> dict[str, int]:
    """One engine step: schedule, then a token for every request whose prompt is done. Returns what
    was scheduled (request id -> tokens)."""
    from vllm.v1.outputs import ModelRunnerOutput

    out = scheduler.schedule()
    ids = list(out.num_scheduled_tokens)
    sampled = []
    for rid in ids:
        req = scheduler.requests[rid]
        sampled.append([7] if req.num_computed_tokens >= req.num_tokens else [])
    scheduler.update_from_output(out, ModelRunnerOutput(req_ids=ids, req_id_to_index={r: n for n, r in enumerate(ids)},
                                                        sampled_token_ids=sampled))
    return dict(out.num_scheduled_tokens)
