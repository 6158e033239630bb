"""The benchmarks' verdicts: a goal missed makes ``make bench`` fail, a goal met does not."""

from __future__ import annotations

import sys

from harness import REPO


def test_a_benchmark_fails_when_a_goal_is_missed_and_passes_when_met() -> None:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from _common import Goals
    finally:
        sys.path.remove(str(REPO / "bench"))
    goals = Goals()
    goals.check("met", {"stock": [1.0, 1.0], "overlay": [1.01, 1.01]}, "stock", 1.05)
    assert goals.exit_code() == 0
    goals.check("missed", {"stock": [1.0, 1.0], "overlay": [1.5, 1.5]}, "stock", 1.05)
    assert goals.exit_code() == 1 and goals.missed == ["missed: overlay ratio 1.500 > 1.05"]
