"""Issue 9 acceptance: ``ascend-overlay run --simulate-npu -- vllm serve`` serves the tiny model on the
NPU platform, on a simulated Ascend NPU, with no NPU and no CANN on the machine.

Three real servers, each started once and questioned several times: the NPU path with the kernel
patches (tensor parallel 1), the same with the kernel patches disabled (greedy tokens must not
change: the check docs/npu.md asks for on hardware), and tensor parallel 2 over the simulated hccl.
Kernel calls are read from the simulator's per-process counters (VLLM_ASCEND_OVERLAY_SIMULATE_NPU_STATS)
and patch outcomes from the overlay's report (VLLM_ASCEND_OVERLAY_REPORT).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import BIN, VllmServer, base_env, outcome, wait_gone

from ascend_overlay.core.report import latest_per_process, read_jsonl
from ascend_overlay.npu.sim.counters import read_counts, total_counts

pytestmark = pytest.mark.e2e

KERNEL_PATCHES = ("npu_silu_and_mul", "npu_rms_norm", "npu_rotary_embedding")
# The torch_npu kernel each patch routes to (npu_rms_norm serves RMSNorm with and without residual).
PATCH_KERNELS = {"npu_silu_and_mul": ("npu_swiglu",), "npu_rms_norm": ("npu_rms_norm", "npu_add_rms_norm"),
                 "npu_rotary_embedding": ("_npu_rotary_embedding",)}
ATTENTION_KERNELS = ("_npu_reshape_and_cache", "_npu_paged_attention", "npu_fused_infer_attention_score")
PROMPTS = ["Hello world", "The overlay runs vLLM on an Ascend NPU", "1 2 3"]
MAX_TOKENS = 12


@dataclass
class Served:
    """What one simulated server showed: its log, report, kernel counts, and answers."""

    log: str
    records: list[dict[str, Any]]
    counts_ready: dict[str, int]
    counts_served: dict[str, int]
    counts_by_pid: dict[int, dict[str, int]]
    models: dict[str, Any]
    tokens: list[list[int]]
    children_left: list[int]
    seconds: float


def _settled_counts(stats: Path, wait: float = 3.0) -> dict[str, int]:
    """The counters as flushed by the workers (they write within a fraction of a second)."""
    deadline = time.monotonic() + wait
    last = total_counts(stats)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = total_counts(stats)
        if now == last:
            return now
        last = now
    return last


def serve(model: Path, tmp: Path, name: str, *extra_args: str, **env_extra: str) -> Served:
    stats, report = tmp / f"{name}-kernels", tmp / f"{name}-report.jsonl"
    env = base_env(overlay=False, VLLM_ASCEND_OVERLAY_REPORT=str(report),
                   VLLM_ASCEND_OVERLAY_SIMULATE_NPU_STATS=str(stats), **env_extra)
    command = [str(BIN / "ascend-overlay"), "run", "--simulate-npu", "--", str(BIN / "vllm"), "serve"]
    start = time.monotonic()
    with VllmServer(model, env, extra_args=["--dtype", "float32", *extra_args], command=command,
                    timeout=300) as server:
        models = server.get("/v1/models")
        ready = _settled_counts(stats)
        tokens = []
        for prompt in PROMPTS:
            answer = server.complete(prompt, max_tokens=MAX_TOKENS, return_token_ids=True)
            tokens.append(answer["choices"][0]["token_ids"])
        served = _settled_counts(stats)
        by_pid = read_counts(stats)
        children = server.children
    return Served(server.log(), latest_per_process(read_jsonl(str(report))), ready, served, by_pid, models, tokens,
                  wait_gone(children), time.monotonic() - start)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-npu-sim")


@pytest.fixture(scope="module")
def npu(tiny_model: Path, tmp: Path) -> Served:
    return serve(tiny_model, tmp, "npu")


@pytest.fixture(scope="module")
def npu_patches_off(tiny_model: Path, tmp: Path) -> Served:
    return serve(tiny_model, tmp, "off", VLLM_ASCEND_OVERLAY_DISABLE=",".join(KERNEL_PATCHES))


@pytest.fixture(scope="module")
def npu_tp2(tiny_model: Path, tmp: Path) -> Served:
    return serve(tiny_model, tmp, "tp2", "--tensor-parallel-size", "2")


def _workers(served: Served) -> list[dict[str, Any]]:
    return [r for r in served.records if "worker" in r["phases"]]


def test_vllm_runs_on_the_npu_platform_with_hccl(npu: Served):
    assert "device_config=npu" in npu.log, "vLLM's engine config names the device"
    assert "NPU KV cache size" in npu.log, "vLLM sizes the KV cache of the platform's device"
    assert "backend=hccl" in npu.log, "the distributed bring-up uses the platform's backend"
    assert "falling back to gloo" not in npu.log
    assert "Using LBHNC KV cache layout" in npu.log and "for NPU_ATTN backend" in npu.log


def test_models_and_completions_answer(npu: Served, tiny_model: Path):
    assert npu.models["data"][0]["id"] == str(tiny_model)
    assert all(len(t) == MAX_TOKENS for t in npu.tokens)
    assert npu.children_left == [], "vLLM child processes survived shutdown"


def test_every_process_reports_the_simulated_npu_and_the_worker_applied_the_kernel_patches(npu: Served):
    assert len(npu.records) >= 2 and {r["npu"] for r in npu.records} == {"simulated"}
    assert "npu=simulated" in npu.log
    workers = _workers(npu)
    assert len(workers) == 1
    for name in KERNEL_PATCHES:
        assert outcome(workers[0], name)["status"] == "applied", name


def test_the_simulator_counted_each_patched_kernel_during_the_requests(npu: Served):
    for patch, kernels in PATCH_KERNELS.items():
        during = sum(npu.counts_served.get(k, 0) - npu.counts_ready.get(k, 0) for k in kernels)
        assert during > 0, f"{patch}: no call of {kernels} while serving"
    for kernel in ATTENTION_KERNELS:
        assert npu.counts_served.get(kernel, 0) > npu.counts_ready.get(kernel, 0), kernel


def test_greedy_tokens_do_not_change_when_the_kernel_patches_are_disabled(npu: Served, npu_patches_off: Served):
    workers = _workers(npu_patches_off)
    assert len(workers) == 1
    for name in KERNEL_PATCHES:
        assert outcome(workers[0], name)["status"] == "skipped", name
    kernels = [k for ks in PATCH_KERNELS.values() for k in ks]
    assert not any(npu_patches_off.counts_served.get(k) for k in kernels), "disabled patches must not call kernels"
    assert npu_patches_off.counts_served.get("npu_fused_infer_attention_score"), "attention still runs on the NPU"
    assert npu_patches_off.tokens == npu.tokens


def test_tensor_parallel_2_serves_over_the_simulated_hccl(npu_tp2: Served):
    assert all(len(t) == MAX_TOKENS for t in npu_tp2.tokens)
    assert npu_tp2.log.count("backend=hccl") >= 2, "both ranks bring up hccl"
    assert "world_size=2 rank=1" in npu_tp2.log
    workers = _workers(npu_tp2)
    assert len(workers) == 2 and len({w["pid"] for w in workers}) == 2
    for worker in workers:
        assert worker["npu"] == "simulated"
        assert all(outcome(worker, name)["status"] == "applied" for name in KERNEL_PATCHES)
    busy = [pid for pid, counts in npu_tp2.counts_by_pid.items() if counts.get("npu_swiglu")]
    assert len(busy) == 2, "each rank runs its shard on its own simulated NPU"
    assert npu_tp2.children_left == []
