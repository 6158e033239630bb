"""``ascend-overlay demo``: the main job on the embedded default (stock vLLM on CPU, a tiny local model);
``--simulate-npu``: the same on the NPU platform over the simulated Ascend NPU."""

from __future__ import annotations

import argparse
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from ascend_overlay.serving.main_job import run_demo

    return run_demo(Path(args.model_dir) if args.model_dir else None, args.prompt, args.max_tokens,
                    simulate_npu=args.simulate_npu)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="serve a tiny local model with vLLM + the overlay, query it, show the report",
                       description=__doc__)
    p.add_argument("--model-dir", help="where to make/keep the tiny model (default ~/.cache/ascend-overlay/tiny-llama)")
    p.add_argument("--prompt", default="Hello world")
    p.add_argument("--max-tokens", type=int, default=12)
    p.add_argument("--simulate-npu", action="store_true",
                   help="serve on the NPU platform over the simulated Ascend NPU (see docs/npu.md)")
    p.set_defaults(handler=_demo)
