"""``ascend-overlay run --simulate-npu -- vllm serve`` serves on the NPU platform, on a simulated Ascend
NPU, in bfloat16 (the dtype a card runs), with no NPU and no CANN on the machine.

Three real servers, each started once and questioned several times: the tiny Llama (tensor parallel 1,
every kernel call recorded), the same again (greedy tokens must not change run to run), and a tiny
Granite whose two layers use two RoPE bases at tensor parallel 2 over the simulated hccl (every kernel
call recorded). Kernel calls and NPU initialisations are read from the simulator's per-process
records (VLLM_ASCEND_OVERLAY_SIMULATE_NPU_STATS), kernel inputs and outputs from its capture
(VLLM_ASCEND_OVERLAY_SIMULATE_NPU_CAPTURE), patch outcomes from the overlay's report.

Each kernel call a request made is compared with vLLM's own path on the same inputs
(tests/npu_kernel_reference.py: the bfloat16 tolerance is stated there), call by call, so every
layer of every step is held to it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import BIN, VllmServer, base_env, outcome, wait_gone
from npu_kernel_reference import Deviation, compare

from ascend_overlay.core.report import latest_per_process, read_jsonl
from ascend_overlay.npu.sim import capture
from ascend_overlay.npu.sim.counters import read_records

pytestmark = pytest.mark.e2e

KERNEL_PATCHES = ("npu_silu_and_mul", "npu_rms_norm", "npu_rotary_embedding")
# The torch_npu kernel each patch routes to (npu_rms_norm serves RMSNorm with and without residual).
PATCH_KERNELS = {"npu_silu_and_mul": ("npu_swiglu",), "npu_rms_norm": ("npu_rms_norm", "npu_add_rms_norm"),
                 "npu_rotary_embedding": ("npu_mrope",)}
ROTARY_KERNELS = ("npu_mrope", "_npu_rotary_embedding")  # the NPU path's, and the ATB one it must not use
ATTENTION_KERNELS = ("_npu_reshape_and_cache", "_npu_paged_attention", "npu_fused_infer_attention_score")
PROMPTS = ["Hello world", "The overlay runs vLLM on an Ascend NPU", "1 2 3"]
MAX_TOKENS = 12


@dataclass
class Served:
    """What one simulated server showed: its log, report, per-process records, answers and kernel calls."""

    log: str
    front_end: int
    records: list[dict[str, Any]]
    at_ready: dict[int, dict[str, Any]]
    served: dict[int, dict[str, Any]]
    models: dict[str, Any]
    tokens: list[list[int]]
    request_calls: dict[int, list[dict[str, Any]]]
    children_left: list[int]

    def counts(self, when: dict[int, dict[str, Any]]) -> dict[str, int]:
        total: dict[str, int] = {}
        for record in when.values():
            for name, count in record["kernels"].items():
                total[name] = total.get(name, 0) + count
        return total


def _settled(stats: Path, wait: float = 3.0) -> dict[int, dict[str, Any]]:
    """The records as flushed by the processes (they write within a fraction of a second)."""
    deadline = time.monotonic() + wait
    last = read_records(stats)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = read_records(stats)
        if {p: r["kernels"] for p, r in now.items()} == {p: r["kernels"] for p, r in last.items()}:
            return now
        last = now
    return last


def _recorded(directory: Path) -> dict[int, int]:
    return {int(d.name.split("-", 1)[1]): len(list(d.glob("*.pt"))) for d in directory.glob("kernels-*")}


def serve(model: Path, tmp: Path, name: str, *extra_args: str, record_calls: bool = False) -> Served:
    stats, report, calls = tmp / f"{name}-stats", tmp / f"{name}-report.jsonl", tmp / f"{name}-calls"
    env = base_env(overlay=False, VLLM_ASCEND_OVERLAY_REPORT=str(report),
                   VLLM_ASCEND_OVERLAY_SIMULATE_NPU_STATS=str(stats),
                   **({"VLLM_ASCEND_OVERLAY_SIMULATE_NPU_CAPTURE": str(calls)} if record_calls else {}))
    command = [str(BIN / "ascend-overlay"), "run", "--simulate-npu", "--", str(BIN / "vllm"), "serve"]
    with VllmServer(model, env, extra_args=["--dtype", "bfloat16", *extra_args], command=command,
                    timeout=300) as server:
        models = server.get("/v1/models")
        ready = _settled(stats)
        before = _recorded(calls)  # start-up's calls (profiling and warm-up dummy runs): not a request's
        tokens = []
        for prompt in PROMPTS:
            answer = server.complete(prompt, max_tokens=MAX_TOKENS, return_token_ids=True)
            tokens.append(answer["choices"][0]["token_ids"])
        served = _settled(stats)
        children = server.children
    request_calls = {pid: [c for c in found if c["sequence"] >= before.get(pid, 0)]
                     for pid, found in capture.read(calls).items()} if record_calls else {}
    records = latest_per_process(read_jsonl(str(report)))
    # `ascend-overlay run` supervises vllm serve: the front end is the process that reports as the API server
    (front_end,) = [r["pid"] for r in records if r["role"] == "api_server"]
    return Served(server.log(), front_end, records, ready, served, models, tokens, request_calls,
                  wait_gone(children))


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-npu-sim")


@pytest.fixture(scope="module")
def npu(tiny_model: Path, tmp: Path) -> Served:
    return serve(tiny_model, tmp, "npu", record_calls=True)


@pytest.fixture(scope="module")
def npu_again(tiny_model: Path, tmp: Path) -> Served:
    return serve(tiny_model, tmp, "again")


@pytest.fixture(scope="module")
def two_ropes_tp2(tiny_two_rope_model: Path, tmp: Path) -> Served:
    return serve(tiny_two_rope_model, tmp, "two-ropes-tp2", "--tensor-parallel-size", "2", record_calls=True)


def _workers(served: Served) -> list[dict[str, Any]]:
    return [r for r in served.records if "worker" in r["phases"]]


def test_vllm_runs_on_the_npu_platform_with_hccl_in_bfloat16(npu: Served):
    assert "device_config=npu" in npu.log, "vLLM's engine config names the device"
    assert "dtype=torch.bfloat16" in npu.log
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
    ready, served = npu.counts(npu.at_ready), npu.counts(npu.served)
    for patch, kernels in PATCH_KERNELS.items():
        during = sum(served.get(k, 0) - ready.get(k, 0) for k in kernels)
        assert during > 0, f"{patch}: no call of {kernels} while serving"
    for kernel in ATTENTION_KERNELS:
        assert served.get(kernel, 0) > ready.get(kernel, 0), kernel


@pytest.mark.parametrize("server", ["npu", "two_ropes_tp2"])
def test_the_front_end_never_initialises_the_npu(server: str, request: pytest.FixtureRequest):
    """vLLM's front-end forks when it starts engines (its default start method): an NPU initialised
    there makes every forked child's NPU call fail on a card. Only processes that run kernels may."""
    served: Served = request.getfixturevalue(server)
    records = served.served
    assert records[served.front_end]["lazy_inits"] == 0, records[served.front_end]["initialised_by"]
    for pid, record in records.items():
        assert record["lazy_inits"] == (1 if record["kernels"] else 0), (pid, record["initialised_by"])


def test_greedy_tokens_are_stable_run_to_run(npu: Served, npu_again: Served):
    assert npu_again.tokens == npu.tokens


def _deviations(served: Served) -> list[Deviation]:
    found = []
    for calls in served.request_calls.values():
        for call in calls:
            found += compare(call)
    return found


def _worst_by_kernel(found: list[Deviation]) -> dict[str, Deviation]:
    worst: dict[str, Deviation] = {}
    for d in found:
        if d.kernel not in worst or d.worst > worst[d.kernel].worst:
            worst[d.kernel] = d
    return worst


def test_each_kernel_agrees_with_vllms_own_path_on_a_requests_activations(npu: Served, vllm_config):
    found = _deviations(npu)
    kernels = {d.kernel.split(".")[0] for d in found}
    assert kernels == set(ATTENTION_KERNELS) | {k for ks in PATCH_KERNELS.values() for k in ks}, kernels
    outside = [d for d in found if not d.within]
    assert not outside, f"outside the bf16 tolerance: {outside[:5]}; worst per kernel: {_worst_by_kernel(found)}"


def test_a_model_with_two_rope_caches_gets_each_layers_own_rotation(two_ropes_tp2: Served, vllm_config):
    """With the ATB rotary kernel (first cache frozen per process) the second layer would rotate with
    the first layer's angles; the NPU path's kernel takes each layer's cache."""
    ranks = [calls for calls in two_ropes_tp2.request_calls.values() if calls]
    assert len(ranks) == 2, "each rank recorded its kernel calls"
    for calls in ranks:
        caches = [c["inputs"]["cos_sin_cache"] for c in calls if c["kernel"] in ROTARY_KERNELS]
        distinct = [c for i, c in enumerate(caches) if not any(c.shape == d.shape and bool((c == d).all())
                                                               for d in caches[:i])]
        assert len(distinct) == 2, "the two layers rotate with two different caches"
    found = [d for d in _deviations(two_ropes_tp2) if d.kernel.split(".")[0] in ROTARY_KERNELS]
    assert found and all(d.within for d in found), _worst_by_kernel(found)
    outside = [d for d in _deviations(two_ropes_tp2) if not d.within]
    assert not outside, outside[:5]


def test_tensor_parallel_2_serves_over_the_simulated_hccl(two_ropes_tp2: Served):
    assert all(len(t) == MAX_TOKENS for t in two_ropes_tp2.tokens)
    assert two_ropes_tp2.log.count("backend=hccl") >= 2, "both ranks bring up hccl"
    assert "world_size=2 rank=1" in two_ropes_tp2.log
    workers = _workers(two_ropes_tp2)
    assert len(workers) == 2 and len({w["pid"] for w in workers}) == 2
    for worker in workers:
        assert worker["npu"] == "simulated"
        assert all(outcome(worker, name)["status"] == "applied" for name in KERNEL_PATCHES)
    busy = [pid for pid, record in two_ropes_tp2.served.items() if record["kernels"].get("npu_swiglu")]
    assert len(busy) == 2, "each rank runs its shard on its own simulated NPU"
    assert two_ropes_tp2.children_left == []


# -- what an operator reads of the tensor-parallel-2 run ------------------------------------------------------

def _report_cli(*args: str) -> Any:
    import subprocess

    return subprocess.run([str(BIN / "ascend-overlay"), "report", *args], capture_output=True, text=True,
                          timeout=300, env=base_env(overlay=False, COLUMNS="200"))


def test_run_prints_what_each_process_applied_when_the_server_exits(two_ropes_tp2: Served):
    table = two_ropes_tp2.log.split("ascend-overlay run: what the overlay did in each process of", 1)[1]
    rows = [line.split() for line in table.splitlines()[1:] if line.split()[:1] in (["api_server"], ["engine_core"],
                                                                                    ["worker"])]
    assert sorted(r[0] for r in rows) == ["api_server", "engine_core", "worker", "worker"], table
    workers = [" ".join(r) for r in rows if r[0] == "worker"]
    assert all(name in w for w in workers for name in KERNEL_PATCHES), workers


def _tp2_report(tmp: Path) -> Path:
    """The tensor-parallel-2 server's report file (``serve`` names it after the server)."""
    return tmp / "two-ropes-tp2-report.jsonl"


def test_report_shows_each_process_of_the_tensor_parallel_2_run(two_ropes_tp2: Served, tmp: Path):
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


def test_report_html_of_the_tensor_parallel_2_run_shows_both_pictures_in_a_browser(two_ropes_tp2: Served, tmp: Path):
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
