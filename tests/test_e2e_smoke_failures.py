"""Against real vLLM servers: each kind of bad input to ``ascend-overlay smoke`` gets its clear reason
and leaves nothing running: an architecture vLLM does not know, a serve flag vLLM rejects (refused
before anything starts), a server that never becomes ready, a server that dies on its first request.

Cost: four `ascend-overlay smoke` runs, three vLLM starts (one of them stops at config validation
within seconds; the rejected flag is refused by vLLM's parser before any start).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from smoke_runs import assert_nothing_left, smoke
from synthetic import write_patch

pytestmark = pytest.mark.e2e


def test_an_architecture_vllm_does_not_know(tiny_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "foo-model"
    shutil.copytree(tiny_model, model)
    config = json.loads((model / "config.json").read_text())
    config["architectures"] = ["FooBarForCausalLM"]
    (model / "config.json").write_text(json.dumps(config))
    code, stderr, report = smoke([str(model), "--enforce-eager"], tiny_model, tmp_path / "out")
    assert code == 1
    dummy = report["stages"]["dummy"]
    assert dummy["failure_kind"] == "startup"
    assert dummy["reason"].startswith("vLLM does not know the model's architecture ['FooBarForCausalLM']")
    assert report["stages"]["real"]["status"] == "skipped"
    assert report["verdict"]["text"].startswith("FAILED: stage A (dummy weights) failed: vLLM does not know")
    assert "FooBarForCausalLM" in dummy["log_tail"]
    assert_nothing_left(report)


def test_a_serve_flag_vllm_rejects_is_refused_before_anything_starts(tiny_model: Path, tmp_path: Path) -> None:
    code, stderr, report = smoke([str(tiny_model), "--bogus-flag", "3"], tiny_model, tmp_path / "out")
    assert code == 2 and report == {}, "refused up front: no stage ran"
    assert "vLLM rejected the serve flags: unrecognized arguments: --bogus-flag" in stderr


def test_a_server_that_never_becomes_ready(tiny_model: Path, tmp_path: Path) -> None:
    """A worker that hangs while loading the model (a stuck collective init does the same on an NPU):
    the whole process tree is up and waiting; the timeout stops all of it."""
    hotfixes = tmp_path / "hotfixes"
    write_patch(hotfixes, "worker", "patch_hang.py", '''
        PATCH = Patch(name="smoke_test_hangs_loading", phase="worker", vllm=">=0.32",
                      why="test: a worker that never finishes loading", remove_when="never: test fixture")

        @PATCH.wrap("vllm.model_executor.model_loader.base_loader:BaseModelLoader.load_model",
                    contract="(self, vllm_config, model_config, prefix='')")
        def hang(wrapped, instance, args, kwargs):
            import time
            time.sleep(3600)
    ''')
    code, stderr, report = smoke([str(tiny_model), "--stage", "dummy", "--ready-timeout", "45"], tiny_model,
                                 tmp_path / "out", VLLM_ASCEND_OVERLAY_PATH=str(hotfixes))
    assert code == 1
    dummy = report["stages"]["dummy"]
    assert dummy["failure_kind"] == "timeout"
    assert dummy["reason"].startswith("not ready after 45 s (--ready-timeout); vLLM was at: ")
    worker = next(p for p in dummy["overlay"] if p["role"] == "worker")
    assert "smoke_test_hangs_loading" in worker["applied"]  # the tree was whole when it was stopped
    assert len(dummy["processes"]) >= 3
    assert_nothing_left(report)


def test_a_server_that_dies_on_its_first_request(tiny_model: Path, tmp_path: Path) -> None:
    hotfixes = tmp_path / "hotfixes"
    write_patch(hotfixes, "engine_core", "patch_die.py", '''
        PATCH = Patch(name="smoke_test_dies_on_first_request", phase="engine_core", vllm=">=0.32",
                      why="test: an engine that starts and dies on its first request", remove_when="never: test fixture")

        @PATCH.wrap("vllm.v1.engine.core:EngineCore.add_request", contract="(self, request, request_wave=0)")
        def die(wrapped, instance, args, kwargs):
            raise RuntimeError("smoke test: the engine dies on its first request")
    ''')
    code, stderr, report = smoke([str(tiny_model)], tiny_model, tmp_path / "out",
                                 VLLM_ASCEND_OVERLAY_PATH=str(hotfixes))
    assert code == 1
    dummy = report["stages"]["dummy"]
    assert dummy["ready_s"] is not None, "the server should have come up"
    assert dummy["failure_kind"] == "false-ready"
    assert dummy["reason"].startswith("false ready: the server came up, then its first request failed: HTTP 500")
    assert "root cause in the log: RuntimeError: smoke test: the engine dies on its first request" in dummy["reason"]
    checks = {c["name"]: c for c in dummy["checks"]}
    assert checks["models"]["status"] == "pass" and checks["text"]["status"] == "fail"
    assert checks["stream"]["status"] == "skipped"  # the server was gone
    assert "RuntimeError: smoke test" in dummy["log_tail"]
    page = (tmp_path / "out" / "smoke.md").read_text()
    assert "## Failure reasons" in page and "kind: false-ready" in page and "Log tail:" in page
    assert report["stages"]["real"]["status"] == "skipped"
    assert_nothing_left(report)
