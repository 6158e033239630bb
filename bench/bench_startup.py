"""Start-up goals, measured against stock in the same run; exits 1 when any goal is missed:
- overlay installed but off: ``python -c pass`` within 5% of no overlay, for each way it can be
  installed: the package's ``.pth`` start-up line (in a fresh interpreter environment with nothing else,
  against the same environment without the line) and the checkout's ``sitecustomize`` on PYTHONPATH;
- overlay on: ``import vllm`` within 3% of stock;
- overlay on: tiny-model offline start-to-first-token within 3% of stock.

Run: ``.venv/bin/python bench/bench_startup.py [--rounds N] [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from _common import REPO, Goals, env_for, interleaved, time_command

PTH = REPO / "ascend_overlay" / "doors" / "bootstrap" / "ascend_overlay.pth"

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
    from ascend_overlay.doors.bootstrap.precompile import precompile

    precompile()  # what `make setup` and `ascend-overlay run` do: see ascend_overlay/doors/bootstrap/precompile.py

    goals = Goals()
    with tempfile.TemporaryDirectory() as tmp:
        bare, with_line = _environment(Path(tmp) / "bare"), _environment(Path(tmp) / "pth")
        site_packages = subprocess.run([str(with_line), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                       capture_output=True, text=True, check=True).stdout.strip()
        Path(site_packages, PTH.name).write_bytes(PTH.read_bytes())
        off = env_for("stock")
        results = interleaved({"no overlay": lambda: time_command([str(bare), "-c", "pass"], off),
                               ".pth line, off": lambda: time_command([str(with_line), "-c", "pass"], off)},
                              args.rounds)
        goals.check("interpreter start (python -c pass): package start-up line installed but off vs none  "
                    "[goal: ratio <= 1.05]", results, "no overlay", 1.05)

    results = interleaved({v: (lambda v=v: time_command([py, "-c", "pass"], env_for(v))) for v in ("stock", "off")},
                          args.rounds)
    goals.check("interpreter start (python -c pass): sitecustomize on PYTHONPATH but off vs not  "
                "[goal: ratio <= 1.05]", results, "stock", 1.05)

    results = interleaved({v: (lambda v=v: time_command([py, "-c", "import vllm"], env_for(v)))
                           for v in ("stock", "on")}, args.import_rounds)
    goals.check("import vllm: overlay on vs stock  [goal: ratio <= 1.03]", results, "stock", 1.03)

    if args.ttft_rounds:
        from ascend_overlay.serving.tiny_model import make_tiny_model

        with tempfile.TemporaryDirectory() as tmp:
            model = make_tiny_model(Path(tmp) / "tiny")
            script = Path(tmp) / "first_token.py"
            script.write_text(FIRST_TOKEN)
            results = interleaved({v: (lambda v=v: time_command([py, str(script), str(model)], env_for(v), cwd=Path(tmp)))
                                   for v in ("stock", "on")}, args.ttft_rounds)
            goals.check("tiny model offline, process start to first token: overlay on vs stock  "
                        "[goal: ratio <= 1.03]", results, "stock", 1.03)
    return goals.exit_code()


def _environment(path: Path) -> Path:
    """A fresh, empty virtual environment of this interpreter's base Python: the cleanest baseline."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / os.path.basename(sys.executable)


if __name__ == "__main__":
    sys.exit(main())
