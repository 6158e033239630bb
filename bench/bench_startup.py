"""Issue 2 performance goals, measured against stock vLLM in the same run:
- overlay installed but off: ``python -c pass`` within 5% of no overlay;
- overlay on: ``import vllm`` within 3% of stock;
- overlay on: tiny-model offline start-to-first-token within 3% of stock.

Run: ``.venv/bin/python bench/bench_startup.py [--rounds N] [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
from pathlib import Path

from _common import env_for, interleaved, report, time_command

FIRST_TOKEN = textwrap.dedent('''
    import sys
    from vllm import LLM, SamplingParams
    if __name__ == "__main__":
        llm = LLM(model=sys.argv[1], load_format="dummy", gpu_memory_utilization=0.3, max_model_len=256,
                  max_num_seqs=8, seed=0)
        llm.generate(["Hello world"], SamplingParams(max_tokens=1, temperature=0))
''')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30, help="rounds for python -c pass")
    parser.add_argument("--import-rounds", type=int, default=6)
    parser.add_argument("--ttft-rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, skip the first-token run")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.import_rounds, args.ttft_rounds = 10, 2, 0
    py = sys.executable
    from ascend_overlay.bootstrap.precompile import precompile

    precompile()  # what `make setup` and `ascend-overlay run` do: see ascend_overlay/bootstrap/precompile.py

    results = interleaved({v: (lambda v=v: time_command([py, "-c", "pass"], env_for(v))) for v in ("stock", "off")},
                          args.rounds)
    report("interpreter start (python -c pass): installed but off vs no overlay  [goal: ratio <= 1.05]",
           results, "stock", 1.05)

    results = interleaved({v: (lambda v=v: time_command([py, "-c", "import vllm"], env_for(v)))
                           for v in ("stock", "on")}, args.import_rounds)
    report("import vllm: overlay on vs stock  [goal: ratio <= 1.03]", results, "stock", 1.03)

    if args.ttft_rounds:
        from ascend_overlay.demo.tiny_model import make_tiny_model

        with tempfile.TemporaryDirectory() as tmp:
            model = make_tiny_model(Path(tmp) / "tiny")
            script = Path(tmp) / "first_token.py"
            script.write_text(FIRST_TOKEN)
            results = interleaved({v: (lambda v=v: time_command([py, str(script), str(model)], env_for(v), cwd=Path(tmp)))
                                   for v in ("stock", "on")}, args.ttft_rounds)
            report("tiny model offline, process start to first token: overlay on vs stock  [goal: ratio <= 1.03]",
                   results, "stock", 1.03)
    return 0


if __name__ == "__main__":
    sys.exit(main())
