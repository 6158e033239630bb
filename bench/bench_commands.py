"""The commands an operator types while deciding, measured warm; exits 1 when a goal is missed:
- ``ascend-overlay list``, ``status`` and ``hotfix verify DIR`` (whole commands, contract checks on)
  each under 2 s, once their answers are remembered (``core/precheck_cache.py``);
- reported beside them: ``import vllm`` (the cost each command paid before, in every run) and one
  live ``status --no-cache`` (what a first run, or a changed vLLM, costs).

Ratios are against ``import vllm`` in the same run. Run: ``.venv/bin/python bench/bench_commands.py
[--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, Goals, interleaved, report, time_command

GOAL_S = 2.0
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cli = str(Path(sys.executable).parent / "ascend-overlay")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_ASCEND_OVERLAY") and k != "COLUMNS"}
    goals = Goals()
    with tempfile.TemporaryDirectory() as tmp:
        hotfixes = Path(tmp) / "hotfixes"
        subprocess.run([cli, "hotfix", "new", "bench_fix", "--target", "vllm.v1.sample.sampler.Sampler.forward",
                        "--dir", str(hotfixes)], env=env, check=True, capture_output=True)
        for path in hotfixes.rglob("patch_*.py"):   # a finished hotfix: no TODO left
            path.write_text(path.read_text().replace("TODO", "benchmark"))
        for path in [hotfixes, *hotfixes.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        commands = {"list": [cli, "list"], "status": [cli, "status"], "hotfix verify": [cli, "hotfix", "verify",
                                                                                          str(hotfixes)]}
        live = time_command([cli, "status", "--no-cache"], env, cwd=REPO)   # also fills the cache for status/list
        for command in commands.values():
            time_command(command, env, cwd=REPO, check=False)                 # warm: the answers are remembered
        variants = {"import vllm (stock)": lambda: time_command([sys.executable, "-c", "import vllm"], env)}
        variants.update({name: (lambda c=command: time_command(c, env, cwd=REPO, check=False))
                         for name, command in commands.items()})
        results = interleaved(variants, args.rounds)
    ratios = report(f"warm commands vs import vllm  [goal: each under {GOAL_S:.0f} s]", results,
                    "import vllm (stock)")
    print(f"  live `status --no-cache` (first run, or vLLM changed): {live:.2f} s")
    for name in commands:
        median = statistics.median(results[name])
        verdict = "goal met" if median < GOAL_S else f"GOAL MISSED (>= {GOAL_S:.0f} s)"
        print(f"  {name:<14} median {median:.2f} s, {ratios[name]:.3f} of import vllm: {verdict}")
        if median >= GOAL_S:
            goals.missed.append(f"{name}: {median:.2f} s >= {GOAL_S:.0f} s")
    return goals.exit_code()


if __name__ == "__main__":
    sys.exit(main())
