"""Shared bits of the benchmarks: interleaved repeated runs and ratio reporting.

Benchmarks compare the overlay against stock vLLM *in the same run*, interleaving the two variants so
that machine noise (2 shared cores) hits both alike; results are ratios, never absolute promises.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def env_for(overlay: str) -> dict[str, str]:
    """'stock': no overlay on the path; 'off': installed (sitecustomize on path) but off; 'on': active."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_ASCEND_OVERLAY")}
    path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != REPO]
    if overlay in ("off", "on"):
        path.insert(0, str(REPO))
    env["PYTHONPATH"] = os.pathsep.join(path)
    if overlay == "on":
        env["VLLM_ASCEND_OVERLAY"] = "1"
        env["VLLM_ASCEND_OVERLAY_LOG"] = "off"
    return env


def time_command(cmd: list[str], env: dict[str, str], cwd: Path | None = None, check: bool = True) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    return time.perf_counter() - start


def interleaved(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(rounds):
        order = list(variants) if i % 2 == 0 else list(reversed(variants))
        for name in order:
            results[name].append(variants[name]())
    return results


def report(title: str, results: dict[str, list[float]], baseline: str, goal: float | None = None,
           unit: str = "s") -> dict[str, float]:
    base = statistics.median(results[baseline])
    print(f"\n{title}")
    ratios = {}
    for name, values in results.items():
        med = statistics.median(values)
        ratio = med / base
        ratios[name] = ratio
        spread = f"min {min(values):.4g} max {max(values):.4g}"
        verdict = ""
        if goal is not None and name != baseline:
            verdict = "  goal met" if ratio <= goal else f"  GOAL MISSED (<= {goal:.2f})"
        print(f"  {name:<28} median {med:.4g} {unit}  ({spread}, n={len(values)})  ratio {ratio:.3f}{verdict}")
    return ratios


class Goals:
    """Collects goal verdicts so a benchmark's exit status says whether every goal was met."""

    def __init__(self) -> None:
        self.missed: list[str] = []

    def check(self, title: str, results: dict[str, list[float]], baseline: str, goal: float,
              unit: str = "s") -> dict[str, float]:
        ratios = report(title, results, baseline, goal, unit)
        for name, ratio in ratios.items():
            if name != baseline and ratio > goal:
                self.missed.append(f"{title.split('  [')[0]}: {name} ratio {ratio:.3f} > {goal:.2f}")
        return ratios

    def exit_code(self) -> int:
        if self.missed:
            print("\nGOALS MISSED:\n  " + "\n  ".join(self.missed))
        return 1 if self.missed else 0
