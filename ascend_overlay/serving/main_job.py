"""The main job: stock vLLM on CPU serves a tiny local model with the overlay on, answers one
completion, prints what the overlay did in each process, and shuts down with no orphan left.

With ``simulate_npu`` the same job runs vLLM on the NPU platform over the simulated Ascend NPU
(``ascend-overlay run --simulate-npu``) in bfloat16, the dtype a card runs, and also prints which
torch_npu kernels served the completion."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from ascend_overlay.core.files import cache_dir
from ascend_overlay.serving.server import BIN, VllmServer, wait_gone
from ascend_overlay.serving.tiny_model import make_tiny_model


def default_model_dir() -> Path:
    return cache_dir() / "tiny-llama"


def run_demo(model_dir: Path | None = None, prompt: str = "Hello world", max_tokens: int = 12,
             simulate_npu: bool = False) -> int:
    model = make_tiny_model(model_dir or default_model_dir())
    print(f"[demo] tiny model ready at {model} (random weights: the text is noise, the plumbing is real)")
    with tempfile.TemporaryDirectory(prefix="ascend-overlay-demo-") as tmp:
        report_path = Path(tmp) / "report.jsonl"
        env = {k: v for k, v in os.environ.items() if k != "VLLM_ASCEND_OVERLAY"}
        env["VLLM_ASCEND_OVERLAY_REPORT"] = str(report_path)
        run_flags = ["--simulate-npu"] if simulate_npu else []
        kernel_stats = Path(tmp) / "npu-kernels"
        if simulate_npu:
            env["VLLM_ASCEND_OVERLAY_SIMULATE_NPU_STATS"] = str(kernel_stats)
        launcher = [str(BIN / "ascend-overlay"), "run", *run_flags, "--", str(BIN / "vllm"), "serve"]
        print(f"[demo] starting: ascend-overlay run {' '.join(run_flags + ['--'])} vllm serve {model} ... "
              f"(about a minute on 2 CPU cores)")
        # The log lives and goes with the demo's directory: a failure prints its tail.
        server = VllmServer(model, env, command=launcher, extra_args=["--dtype", "bfloat16"] if simulate_npu else [],
                            log_path=Path(tmp) / "vllm-serve.log")
        try:
            with server:
                print(f"[demo] vLLM is serving on http://127.0.0.1:{server.port}")
                before = _kernel_totals(kernel_stats) if simulate_npu else {}
                reply = server.complete(prompt, max_tokens=max_tokens)
                print(f"[demo] POST /v1/completions {json.dumps({'prompt': prompt, 'max_tokens': max_tokens})}")
                print(f"[demo] -> {json.dumps(reply['choices'][0]['text'])} "
                      f"({reply['usage']['completion_tokens']} tokens, finish_reason={reply['choices'][0]['finish_reason']})")
                children = server.children
                if simulate_npu:
                    _print_request_kernels(kernel_stats, before)
        except (RuntimeError, TimeoutError) as exc:
            print(f"[demo] vLLM failed to start: {exc}", file=sys.stderr)
            return 1
        leftover = wait_gone(children)
        print(f"[demo] shut down with exit code {server.process.returncode}; "
              f"{'no orphan processes' if not leftover else f'ORPHANS: {leftover}'}")
        print("[demo] what the overlay did, per process:")
        if report_path.exists():
            from ascend_overlay.cli.report_cmd import render_text
            from ascend_overlay.core.report_view import load

            render_text(load(str(report_path)), str(report_path))
        else:
            print("  (no report written)")
        if simulate_npu:
            _print_kernel_counts(kernel_stats)
        return 0 if not leftover else 1


def _kernel_totals(directory: Path) -> dict[str, int]:
    from ascend_overlay.npu.sim.counters import total_counts

    return total_counts(directory) if directory.exists() else {}


def _print_request_kernels(directory: Path, before: dict[str, int]) -> None:
    """The kernels that served the completion: call counts since the server was ready (the counters
    are flushed within a fraction of a second of a call)."""
    import time

    time.sleep(0.5)
    after = _kernel_totals(directory)
    served = {name: n - before.get(name, 0) for name, n in after.items() if n > before.get(name, 0)}
    print("[demo] torch_npu kernels that served this completion (bfloat16, on the simulated NPU):")
    print("    " + (", ".join(f"{name}={n}" for name, n in sorted(served.items())) or "(none recorded)"))


def _print_kernel_counts(directory: Path) -> None:
    from ascend_overlay.npu.sim.counters import read_records

    records = read_records(directory) if directory.exists() else {}
    print("[demo] torch_npu kernels the simulated NPU ran (calls per process, warm-up included):")
    for pid, record in records.items():
        kernels = record["kernels"]
        calls = ", ".join(f"{name}={n}" for name, n in sorted(kernels.items())) or "no kernel"
        init = "NPU initialised" if record.get("lazy_inits") else "NPU never initialised"
        print(f"    pid={pid:<8} {calls} ({init})")
    if not records:
        print("    (none recorded)")
