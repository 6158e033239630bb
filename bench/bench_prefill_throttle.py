"""Inter-token latency spread with and without the prefill throttle, on real vLLM.

Runs the same arrival pattern twice in fresh interpreters, stock vLLM (overlay off) and vLLM with
the overlay's ``prefill_throttle`` patch, and prints the distribution of inter-token latency (the
gap between consecutive tokens of one request, seen by the client) for each, with the ratio
throttled / stock. The patch aims at a smaller spread (p99, max, stdev); the price is paid by the
long prompts' time to first token, printed too. Timings are only comparable within one invocation.

Workload: short requests decode continuously; long prompts (chunked by a small token budget) arrive
every few engine steps while they do. Every loop is bounded (steps and wall time).

    .venv/bin/python bench/bench_prefill_throttle.py [--model DIR] [--threshold 4] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MAX_STEPS = 5000
MAX_WALL_S = 600.0


# -- one run (in a fresh interpreter, so the overlay is on or off from the start) ------------------

def drive(model: str, out: str, short: int, long_prompts: int, every: int) -> None:
    from vllm import EngineArgs, LLMEngine, SamplingParams

    engine = LLMEngine.from_engine_args(EngineArgs(
        model=model, load_format="dummy", gpu_memory_utilization=0.3, max_model_len=512, max_num_seqs=8,
        max_num_batched_tokens=64, enable_prefix_caching=False, seed=0))
    params_short = SamplingParams(temperature=0, max_tokens=96, ignore_eos=True)
    params_long = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    arrivals: list[tuple[int, str, list[int], Any]] = []  # (step, id, prompt, params)
    for i in range(short):
        arrivals.append((0, f"short-{i}", [3 + (i * 11 + j) % 500 for j in range(8)], params_short))
    for i in range(long_prompts):
        arrivals.append((4 + i * every, f"long-{i}", [3 + (i * 13 + j) % 500 for j in range(300)], params_long))
    added: dict[str, float] = {}
    times: dict[str, list[float]] = {}
    step = 0
    start = time.perf_counter()
    while step < MAX_STEPS and time.perf_counter() - start < MAX_WALL_S:
        for at, rid, prompt, params in arrivals:
            if at == step and rid not in added:
                engine.add_request(rid, {"prompt_token_ids": prompt}, params)
                added[rid] = time.perf_counter()
        if not engine.has_unfinished_requests() and len(added) == len(arrivals):
            break
        for output in engine.step():
            now = time.perf_counter()
            seen = times.setdefault(output.request_id, [])
            seen.extend([now] * (len(output.outputs[0].token_ids) - len(seen)))
        step += 1
    Path(out).write_text(json.dumps({"added": added, "times": times, "steps": step,
                                     "wall_s": time.perf_counter() - start}))


# -- orchestration ------------------------------------------------------------------------------------

def environment(throttled: bool, threshold: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_ASCEND_OVERLAY")}
    path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != REPO]
    if throttled:
        env.update(VLLM_ASCEND_OVERLAY="1", VLLM_ASCEND_OVERLAY_ENABLE="prefill_throttle",
                   VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_THRESHOLD=str(threshold), VLLM_ASCEND_OVERLAY_LOG="off")
        path.insert(0, str(REPO))
    env["PYTHONPATH"] = os.pathsep.join(path)
    return env


def run_once(args: argparse.Namespace, throttled: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "times.json"
        cmd = [sys.executable, __file__, "--drive", str(out), "--model", str(args.model), "--short", str(args.short),
               "--long", str(args.long), "--every", str(args.every)]
        proc = subprocess.run(cmd, env=environment(throttled, args.threshold), capture_output=True, text=True,
                              timeout=MAX_WALL_S + 300, cwd=tmp)
        if proc.returncode != 0:
            raise SystemExit(f"{'throttled' if throttled else 'stock'} run failed:\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text())


def summarise(runs: list[dict[str, Any]]) -> dict[str, float]:
    gaps, ttft_long = [], []
    for run in runs:
        for rid, stamps in run["times"].items():
            gaps.extend(b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True))
            if rid.startswith("long-") and stamps:
                ttft_long.append(stamps[0] - run["added"][rid])
    gaps.sort()

    def pct(q: float) -> float:
        return gaps[min(len(gaps) - 1, int(q * len(gaps)))]

    return {"itl_p50_ms": 1e3 * pct(0.50), "itl_p90_ms": 1e3 * pct(0.90), "itl_p99_ms": 1e3 * pct(0.99),
            "itl_max_ms": 1e3 * gaps[-1], "itl_stdev_ms": 1e3 * statistics.pstdev(gaps),
            "itl_mean_ms": 1e3 * statistics.fmean(gaps), "long_ttft_mean_ms": 1e3 * statistics.fmean(ttft_long),
            "wall_s": sum(r["wall_s"] for r in runs), "tokens": float(len(gaps))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / ".cache" / "tiny-llama")
    parser.add_argument("--threshold", type=int, default=4, help="VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_THRESHOLD")
    parser.add_argument("--rounds", type=int, default=1, help="runs per arm, interleaved")
    parser.add_argument("--short", type=int, default=6, help="decoding requests present from the start")
    parser.add_argument("--long", type=int, default=8, help="long prompts arriving during decode")
    parser.add_argument("--every", type=int, default=10, help="engine steps between long-prompt arrivals")
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        drive(str(args.model), args.drive, args.short, args.long, args.every)
        return
    if not (args.model / "config.json").exists():
        sys.path.insert(0, str(REPO))
        from ascend_overlay.serving.tiny_model import make_tiny_model

        make_tiny_model(args.model)
    stock_runs, throttled_runs = [], []
    for _ in range(max(1, args.rounds)):
        stock_runs.append(run_once(args, throttled=False))
        throttled_runs.append(run_once(args, throttled=True))
    stock, throttled = summarise(stock_runs), summarise(throttled_runs)
    print(f"prefill throttle, threshold {args.threshold}: {args.short} decoding requests, {args.long} long "
          f"prompts (300 tokens, budget 64/step) every {args.every} steps; {args.rounds} round(s) per arm")
    print(f"{'metric':<20}{'stock':>12}{'throttled':>12}{'ratio':>10}")
    for key in stock:
        ratio = throttled[key] / stock[key] if stock[key] else float("nan")
        print(f"{key:<20}{stock[key]:>12.2f}{throttled[key]:>12.2f}{ratio:>10.2f}")


if __name__ == "__main__":
    main()
