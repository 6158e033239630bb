"""Against real vLLM: with only the vllm.general_plugins entry point and the engine-core target (no
start-up line, no sitecustomize), the overlay still reaches every process."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import (
    base_env,
    fresh_python,
    pip_install,
    report_by_role,
    run_offline,
)

pytestmark = pytest.mark.e2e

PROMPTS = ["Hello world", "The overlay patches vLLM at runtime"]


def test_plugin_door_alone_reaches_every_process(tiny_model: Path, tmp_path: Path, overlay_wheel: Path) -> None:
    """Installed as a plain path entry (``pip install --target``, or a Ray runtime environment's
    modules), where Python runs neither the package's start-up line nor our sitecustomize, the
    vllm.general_plugins entry point and the engine-core target still activate every process."""
    python = fresh_python(tmp_path / "venv")
    pip_install(overlay_wheel, target=tmp_path / "target")
    report = tmp_path / "report.jsonl"
    env = base_env(overlay=False, VLLM_ASCEND_OVERLAY="1", VLLM_ASCEND_OVERLAY_REPORT=str(report),
                   PYTHONPATH=str(tmp_path / "target"))
    run_offline(tiny_model, env, tmp_path, PROMPTS[:1], max_tokens=2, python=python)
    roles = report_by_role(report)
    main, core, worker = roles["main"][0], roles["engine_core"][0], roles["worker"][0]
    assert main["doors"][0] == "general_plugin" and main["phases"] == ["platform"]
    assert core["doors"][0] == "engine_core_target" and core["phases"] == ["engine_core"]
    assert worker["doors"][0] == "general_plugin" and worker["phases"] == ["worker"]
    # The worker's phase came from the plugin door, which recognised vLLM's declared caller.
    assert worker["fired_from"] == {"worker": "general plugin door, inside WorkerWrapperBase.init_worker"}
