"""The simulated NPU's cost, as a ratio to the CPU path measured in the same run (no goal).

The simulator checks every kernel call against the cards' contracts, initialises lazily, counts and
can record calls; these numbers say whether that is cheap enough to keep on in every test run. Two
variants of ``ascend-overlay run -- vllm serve`` of the tiny model in bfloat16, interleaved: the CPU
path (vLLM's CPU platform and attention backend, the overlay on) and the simulated NPU
(``--simulate-npu``: the NPU platform, worker, kernels and contracts on CPU memory). Measured:

- start-up: from launching the command to ``GET /v1/models`` answering;
- first token: the first completion of one token after start-up (the first request's prefill).

Run: ``.venv/bin/python bench/bench_npu_sim.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, env_for, interleaved, report

sys.path.insert(0, str(REPO / "tests"))

from ascend_overlay.serving.server import BIN, VllmServer  # noqa: E402
from ascend_overlay.serving.tiny_model import make_tiny_model  # noqa: E402


def measure(model: Path, simulate: bool, startup: list[float], first_token: list[float]) -> float:
    env = env_for("on")
    flags = ["--simulate-npu"] if simulate else []
    command = [str(BIN / "ascend-overlay"), "run", *flags, "--", str(BIN / "vllm"), "serve"]
    start = time.perf_counter()
    with VllmServer(model, env, extra_args=["--dtype", "bfloat16"], command=command, timeout=600) as server:
        ready = time.perf_counter()
        server.complete("Hello world", max_tokens=1)
        first_token.append(time.perf_counter() - ready)
    startup.append(ready - start)
    return ready - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = make_tiny_model(Path(tmp) / "tiny-llama")
        startup: dict[str, list[float]] = {"CPU path": [], "simulated NPU": []}
        first: dict[str, list[float]] = {"CPU path": [], "simulated NPU": []}
        interleaved({name: (lambda name=name: measure(model, name == "simulated NPU", startup[name], first[name]))
                     for name in startup}, args.rounds)
    report("vllm serve start-up to ready (tiny model, bfloat16): simulated NPU vs CPU path  [no goal]",
           startup, "CPU path")
    report("first token after start-up (one-token completion): simulated NPU vs CPU path  [no goal]",
           first, "CPU path")
    return 0


if __name__ == "__main__":
    sys.exit(main())
