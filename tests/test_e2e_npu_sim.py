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


# -- what an operator reads of the tensor-parallel-2 run ------------------------------------------------------

def _report_cli(*args: str) -> Any:
    import subprocess

    return subprocess.run([str(BIN / "ascend-overlay"), "report", *args], capture_output=True, text=True,
                          timeout=300, env=base_env(overlay=False, COLUMNS="200"))


def test_run_prints_what_each_process_applied_when_the_server_exits(npu_tp2: Served):
    table = npu_tp2.log.split("ascend-overlay run: what the overlay did in each process of", 1)[1]
    rows = [line.split() for line in table.splitlines()[1:] if line.split()[:1] in (["api_server"], ["engine_core"],
                                                                                    ["worker"])]
    assert sorted(r[0] for r in rows) == ["api_server", "engine_core", "worker", "worker"], table
    workers = [" ".join(r) for r in rows if r[0] == "worker"]
    assert all(name in w for w in workers for name in KERNEL_PATCHES), workers


def _tp2_report(tmp: Path) -> Path:
    """The tensor-parallel-2 server's report file (``serve`` names it after the server)."""
    return tmp / "tp2-report.jsonl"


def test_report_shows_each_process_of_the_tensor_parallel_2_run(npu_tp2: Served, tmp: Path):
    import json

    text = _report_cli(str(_tp2_report(tmp)))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].endswith("of 4 processes") and "NPU: simulated" in lines
    roles = [line.split()[0] for line in lines if line.split()[:1] in (["api_server"], ["engine_core"], ["worker"])]
    assert roles[:4] == ["api_server", "engine_core", "worker", "worker"]
    data = json.loads(_report_cli(str(_tp2_report(tmp)), "--json").stdout)
    workers = [p for p in data["processes"] if p["role"] == "worker"]
    assert len(workers) == 2 and all(set(KERNEL_PATCHES) <= set(w["in_effect"]) for w in workers)
    assert all(p["strict"] is False and p["failed"] == 0 for p in data["processes"])
    rms = next(p for p in data["patches"] if p["name"] == "npu_rms_norm")
    assert sorted(rms["applied_in"]) == sorted(f"worker {w['pid']}" for w in workers)
    assert {e["status"] for e in rms["not_in"]} == {"not run"}, "the worker phase never runs in the other two"


def test_report_html_of_the_tensor_parallel_2_run_shows_both_pictures_in_a_browser(npu_tp2: Served, tmp: Path):
    from browser import headless_chromium

    page = tmp / "tp2-report.html"
    out = _report_cli(str(_tp2_report(tmp)), "--html", str(page))
    assert out.returncode == 0, out.stderr
    html = page.read_text()
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") \
        and "https://" not in html, "self-contained: nothing to fetch, nothing to run"
    with headless_chromium() as driver:
        driver.get(page.as_uri())
        shot = driver.get_screenshot_as_png()
        (tmp / "tp2-report.png").write_bytes(shot)
        grid = driver.find_element("id", "process-grid")
        matrix = driver.find_element("id", "version-matrix")
        assert grid.is_displayed() and matrix.is_displayed()
        assert grid.rect["width"] > 200 and grid.rect["height"] > 100
        cells = grid.find_elements("css selector", "rect.cell")
        rows = {c.get_attribute("data-row") for c in cells}
        assert len([r for r in rows if r.startswith("worker ")]) == 2 and len(rows) == 4
        applied = [c for c in cells if c.get_attribute("data-row").startswith("worker ")
                   and c.get_attribute("data-column") == "npu_rms_norm"]
        versions = matrix.find_elements("css selector", "rect.cell")
        checked = {c.get_attribute("data-column") for c in versions}
        assert "0.32.0" in checked, "the installed vLLM is always in the matrix"
        legacy = [c for c in versions if c.get_attribute("data-row") == "ray_workers_overlay_legacy"
                  and c.get_attribute("data-column") == "0.32.0"]
        assert [c.get_attribute("data-state") for c in legacy] == ["applies"]
        # The pictures were drawn: the screenshot's pixels at those cells carry their colours.
        assert [_pixel(shot, c.rect) for c in applied] == [(0x2e, 0x7d, 0x32)] * 2
        assert _pixel(shot, legacy[0].rect) == (0x2e, 0x7d, 0x32)
        blank = next(c for c in cells if c.get_attribute("data-row").startswith("api_server")
                     and c.get_attribute("data-column") == "npu_rms_norm")
        assert blank.get_attribute("data-state") == "not run" and _pixel(shot, blank.rect) == (255, 255, 255)


def _pixel(png: bytes, rect: dict[str, float]) -> tuple[int, int, int]:
    """The colour at the middle of ``rect`` (CSS pixels; the browser renders at scale 1)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    x, y = int(rect["x"] + rect["width"] / 2), int(rect["y"] + rect["height"] / 2)
    return image.getpixel((x, y))
