"""Against real vLLM: the overlay installed but off generates what stock vLLM generates and applies
nothing; on, with the engine in the main process, that process fires all three phases."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import (
    REPO,
    base_env,
    report_by_role,
    run_offline,
)

pytestmark = pytest.mark.e2e

PROMPTS = ["Hello world", "The overlay patches vLLM at runtime"]


def test_overlay_off_is_stock(tiny_model: Path, tmp_path: Path) -> None:
    """Installed (on PYTHONPATH, general plugin registered) but off: same tokens, nothing applied."""
    report = tmp_path / "report.jsonl"
    # The reference in one process (vLLM's engine in the caller): the same tokens as with its engine in
    # child processes, for half the CPU (one vLLM import, not three); the off run below keeps the
    # child processes, where an overlay that did not stay off would show.
    stock, _ = run_offline(tiny_model, base_env(overlay=False, VLLM_ENABLE_V1_MULTIPROCESSING="0"), tmp_path, PROMPTS)
    off_env = base_env(overlay=False, PYTHONPATH=str(REPO), VLLM_ASCEND_OVERLAY_REPORT=str(report))
    off, off_log = run_offline(tiny_model, off_env, tmp_path, PROMPTS)
    assert off == stock
    assert not report.exists(), "the overlay wrote a report while off"
    assert "ascend_overlay" not in off_log
    # In-process engine core and worker (no child process): the main process fires all three phases.
    on, on_log = run_offline(tiny_model, base_env(overlay=True, VLLM_ASCEND_OVERLAY_REPORT=str(report),
                                                  VLLM_ENABLE_V1_MULTIPROCESSING="0"), tmp_path, PROMPTS)
    assert on == stock, "the built-in patches changed generations on CPU"
    roles = report_by_role(report)
    assert list(roles) == ["main"]
    assert roles["main"][0]["phases"] == ["platform", "engine_core", "worker"]
    assert "ascend-overlay: role=main" in on_log
