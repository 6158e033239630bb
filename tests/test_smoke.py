"""The parts of ``ascend-overlay smoke`` that need no vLLM process: reading the checkpoint
(vision-language? MoE? chat template? weights?), the serve flags of each stage, the test image and the
text+image request, evidence from vLLM's log, lm-eval results, the matrices, the YAML and the
tutorial, and bad input refused before anything starts. The served runs are in test_e2e_smoke.py."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from ascend_overlay.cli import main as cli_main
from ascend_overlay.serving.server import descendants
from ascend_overlay.serving.tiny_model import WEIGHTS, is_complete, make_tiny_model
from ascend_overlay.smoke import accuracy, artifacts, features, logscan, serve_flags
from ascend_overlay.smoke.features import FeatureStatus
from ascend_overlay.smoke.image import QUESTION, red_square_png
from ascend_overlay.smoke.model_info import (
    SmokeInputError,
    detect_moe,
    detect_vision,
    find_chat_template,
    resolve_model,
)
from ascend_overlay.smoke.probes import Check, CheckStatus, Prober, image_messages
from ascend_overlay.smoke.runner import SmokeOptions, build_report
from ascend_overlay.smoke.stage import StageResult, StageStatus

# ---------------------------------------------------------------- the checkpoint, read before anything starts

QWEN2_VL = {"architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl",
            "vision_config": {"depth": 32, "embed_dim": 1280}, "image_token_id": 151655}
LLAVA_NESTED = {"architectures": ["LlavaForConditionalGeneration"],
                "text_config": {"model_type": "llama"}, "vision_config": {"model_type": "clip_vision_model"}}
MIXTRAL = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "num_local_experts": 8,
           "num_experts_per_tok": 2}
DEEPSEEK_NESTED = {"architectures": ["X"], "text_config": {"n_routed_experts": 64}}
LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 128}


def test_vision_language_models_are_told_from_their_config() -> None:
    assert detect_vision(QWEN2_VL) == "config.json: vision_config"
    assert detect_vision(LLAVA_NESTED) == "config.json: vision_config"
    assert detect_vision({"architectures": ["Qwen2_5_VLForConditionalGeneration"]}) == \
        "config.json: architectures Qwen2_5_VLForConditionalGeneration"
    assert detect_vision({"thinker_config": {"vision_config": {"depth": 2}}}) == \
        "config.json: thinker_config.vision_config"
    assert detect_vision(LLAMA) is None
    assert detect_vision({"vision_config": None, "architectures": ["LlamaForCausalLM"]}) is None


def test_mixture_of_experts_is_told_from_the_expert_count() -> None:
    assert detect_moe(MIXTRAL) == "config.json: num_local_experts=8"
    assert detect_moe(DEEPSEEK_NESTED) == "config.json: text_config.n_routed_experts=64"
    assert detect_moe(LLAMA) is None
    assert detect_moe({"num_experts": 1}) is None
    assert detect_moe({"num_experts": True}) is None


def _model_dir(root: Path, config: dict[str, Any], files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps(config))
    for name, text in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_resolve_model_reads_the_directory(tmp_path: Path) -> None:
    vlm = resolve_model(str(_model_dir(tmp_path / "vl", QWEN2_VL, {
        "tokenizer_config.json": json.dumps({"chat_template": "{{ messages }}"}),
        "model-00001-of-00002.safetensors": "x", "model-00002-of-00002.safetensors": "x",
        "training_args.bin": "not weights"})))
    assert vlm.is_vlm and not vlm.is_moe
    assert vlm.chat_template == "tokenizer_config.json: chat_template"
    assert vlm.weights == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    base = resolve_model(str(_model_dir(tmp_path / "base", LLAMA)))
    assert not base.is_vlm and base.chat_template is None and base.weights == []
    assert find_chat_template(_model_dir(tmp_path / "jinja", LLAMA, {"chat_template.jinja": "x"})) == \
        "chat_template.jinja"


@pytest.mark.parametrize("spec, message", [
    ("/nonexistent/model-dir", "does not exist"),
    ("./relative/missing", "does not exist"),
])
def test_a_missing_model_is_refused_with_what_to_pass(spec: str, message: str) -> None:
    with pytest.raises(SmokeInputError, match=message):
        resolve_model(spec)


def test_a_file_or_a_directory_without_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_text("x")
    with pytest.raises(SmokeInputError, match="is a file"):
        resolve_model(str(tmp_path / "weights.bin"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SmokeInputError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(SmokeInputError, match="cannot read"):
        resolve_model(str(tmp_path / "bad"))


def test_a_hub_id_is_read_from_the_local_cache_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub's cache layout, made by hand: no network is touched either way."""
    cache = tmp_path / "hub"
    repo = cache / "models--acme--tiny"
    _model_dir(repo / "snapshots" / "abc123", LLAMA, {"model.safetensors": "x"})
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    info = resolve_model("acme/tiny")
    assert info.path == (repo / "snapshots" / "abc123").resolve()
    assert info.spec == "acme/tiny" and info.weights == ["model.safetensors"]
    with pytest.raises(SmokeInputError, match="not in the Hugging Face cache.*huggingface-cli download acme/other"):
        resolve_model("acme/other")


# ---------------------------------------------------------------- the serve flags of each stage

def test_user_flags_override_defaults_in_any_spelling_vllm_accepts() -> None:
    defaults = serve_flags.TINY_DEFAULTS
    merged = serve_flags.merge(defaults, ["--max_model_len=1k", "--no-enforce-eager", "-tp", "2"])
    assert "--enforce-eager" not in merged and "256" not in merged
    assert merged[-4:] == ["--max_model_len=1k", "--no-enforce-eager", "-tp", "2"]
    assert serve_flags.option_value(merged, "--gpu-memory-utilization") == 0.3
    asked = serve_flags.Asked.from_flags(merged)
    assert asked == serve_flags.Asked(max_model_len=1000, max_num_seqs=8, tensor_parallel_size=2,
                                      expert_parallel=False, enforce_eager=False)
    assert serve_flags.Asked.from_flags(["-ep", "--max-num-seqs", "2048"]).expert_parallel
    assert serve_flags.Asked.from_flags(["--max-model-len", "2K"]).max_model_len == 2048
    assert serve_flags.Asked.from_flags(["--max-model-len", "auto"]).max_model_len is None


def test_stage_a_is_the_same_command_with_dummy_weights() -> None:
    flags = serve_flags.stage_flags(serve_flags.CPU_DEFAULTS, ["--load-format", "safetensors", "--max-model-len", "-1"])
    assert flags.real == ["--gpu-memory-utilization", "0.3", "--load-format", "safetensors", "--max-model-len", "-1"]
    assert flags.dummy == ["--gpu-memory-utilization", "0.3", "--max-model-len", "-1", "--load-format", "dummy"]
    assert serve_flags.api_key(["--api-key", "s3cret"]) == "s3cret"


@pytest.mark.parametrize("flags, message", [
    (["--port", "8000"], "smoke picks a free port"),
    (["--host=0.0.0.0"], "smoke serves on 127.0.0.1"),
    (["--load-format", "dummy"], "smoke runs the dummy-weights stage itself"),
    (["--load_format=DUMMY"], "smoke runs the dummy-weights stage itself"),
    (["stray"], "unexpected argument 'stray'"),
    (["--bogus", "3"], "vLLM rejected the serve flags: unrecognized arguments: --bogus"),
    (["--max-num-seqs", "2K"], "vLLM rejected the serve flags: argument --max-num-seqs: invalid int value: '2K'"),
])
def test_flags_smoke_owns_are_refused(flags: list[str], message: str) -> None:
    with pytest.raises(SmokeInputError, match=message):
        serve_flags.check_user_flags(flags)


def test_smoke_options_stand_anywhere_and_the_rest_goes_to_vllm() -> None:
    from ascend_overlay.cli import build_parser
    from ascend_overlay.cli.smoke_cmd import split_argv

    def parse(*argv: str) -> tuple[Any, ...]:
        args = build_parser().parse_args(["smoke", *argv])
        model, flags = split_argv(list(args.argv), args)
        return model, flags, args.stage, args.capacity

    assert parse() == (None, [], "both", True)
    assert parse("/m", "--max-model-len", "-1", "--stage", "dummy", "--enforce-eager") == \
        ("/m", ["--max-model-len", "-1", "--enforce-eager"], "dummy", True)
    assert parse("--stage", "real", "/m", "-tp", "2", "--no-capacity") == ("/m", ["-tp", "2"], "real", False)
    assert parse("--", "--max-num-seqs", "4") == (None, ["--max-num-seqs", "4"], "both", True)
    assert parse("/m", "--", "--stage", "x") == ("/m", ["--stage", "x"], "both", True)


# ---------------------------------------------------------------- the test image and the text+image request

def _decode_png(data: bytes) -> tuple[int, int, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, {}
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length:at + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks[kind] = chunks.get(kind, b"") + body
        at += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 2)
    return width, height, zlib.decompress(chunks[b"IDAT"])


def test_the_test_image_is_a_valid_png_of_a_red_square() -> None:
    width, height, raw = _decode_png(red_square_png())
    assert (width, height) == (224, 224)
    row = 1 + 3 * width
    pixel = lambda x, y: raw[y * row + 1 + 3 * x: y * row + 4 + 3 * x]  # noqa: E731
    assert pixel(0, 0) == b"\xff\xff\xff" and pixel(112, 112) == b"\xdc\x14\x14"


class VlmServerDouble(ThreadingHTTPServer):
    """Test double for a vLLM serving a vision-language model (none can be served on these machines):
    answers the chat endpoint like vLLM does and keeps each request body, to see what the client sent."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                double.requests.append({"path": self.path, "body": body})
                reply = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": "Red."}}],
                         "usage": {"prompt_tokens": 300, "completion_tokens": 2, "total_tokens": 302}}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def test_the_text_image_request_carries_the_image_as_a_data_url() -> None:
    import base64

    server = VlmServerDouble()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        prober = Prober(server.server_address[1], "EMPTY", timeout=10, dummy=False)
        prober.model_id = "acme/vl"
        check = prober.image()
    finally:
        server.shutdown()
    assert check.status is CheckStatus.PASS and check.data["output"] == "Red."
    sent = server.requests[0]
    assert sent["path"] == "/v1/chat/completions" and sent["body"]["model"] == "acme/vl"
    image_part, text_part = sent["body"]["messages"][0]["content"]
    assert text_part == {"type": "text", "text": QUESTION}
    prefix = "data:image/png;base64,"
    assert image_part["type"] == "image_url" and image_part["image_url"]["url"].startswith(prefix)
    assert base64.b64decode(image_part["image_url"]["url"][len(prefix):]) == red_square_png()
    # The report keeps the request readable: the data URL is replaced by what it holds.
    recorded = check.data["request"]["messages"][0]["content"][0]["image_url"]["url"]
    assert "a red square" in recorded and len(recorded) < 120
    assert image_messages()[0]["content"][1]["text"] == QUESTION


# ---------------------------------------------------------------- evidence from vLLM's log

ENGINE_LINE = ("(EngineCore pid=7470) INFO 11-24 05:40:35 [core.py:133] Initializing a V1 LLM engine (v0.32.0) with "
               "config: model='/m', dtype=torch.bfloat16, max_seq_len=256, load_format=dummy, tensor_parallel_size=2, "
               "pipeline_parallel_size=1, quantization=None, enforce_eager=False, device_config=cpu, "
               "compilation_config={'mode': <CompilationMode.DYNAMO_TRACE_ONCE: 2>, 'cudagraph_mode': "
               "<CUDAGraphMode.NONE: 0>}")
SERVE_LOG = "\n".join([
    "(APIServer pid=1) INFO 11-24 05:40:20 [model.py:2152] Using max model len 256",
    ENGINE_LINE,
    "(Worker pid=3) INFO 11-24 05:40:52 [default_loader.py:501] Loading weights took 1.25 seconds",
    "(EngineCore pid=2) INFO 11-24 05:41:26 [kv_cache_utils.py:2327] CPU KV cache size: 6,441,216 tokens, "
    "Maximum concurrency for 256 tokens per request: 4.50x",
    "INFO 11-24 05:40:20 [ascend_overlay] ascend-overlay: role=worker pid=3 vllm=0.32.0 phases=worker applied=2",
    " - leaked instance 0x7f63 of type \"triton._C.libtriton.ir.attribute\"",
])


def test_the_log_says_what_the_server_ran_with() -> None:
    facts = logscan.scan(SERVE_LOG)
    assert facts.get("enforce_eager") == "False" and facts.get("tensor_parallel_size") == "2"
    assert facts.get("compilation_mode") == "DYNAMO_TRACE_ONCE" and facts.get("cudagraph_mode") == "NONE"
    assert facts.get("weights_load") == "1.25" and facts.get("max_model_len_used") == "256"
    assert facts.get("kv_cache_tokens") == "6,441,216" and facts.get("vllm_version") == "0.32.0"
    assert "tensor_parallel_size=2" in facts.line("tensor_parallel_size")
    assert len(facts.line("tensor_parallel_size")) < 200  # an excerpt of the one-line engine config
    assert logscan.overlay_lines(SERVE_LOG) == [
        "ascend-overlay: role=worker pid=3 vllm=0.32.0 phases=worker applied=2"]
    assert logscan.last_activity(SERVE_LOG).startswith("ascend-overlay: role=worker")


@pytest.mark.parametrize("log, expected", [
    ("usage: vllm [-h]\nvllm: error: unrecognized arguments: --bogus 3\n",
     "vLLM rejected the serve flags: unrecognized arguments: --bogus 3"),
    ("Traceback (most recent call last):\npydantic_core._pydantic_core.ValidationError: 1 validation error\n"
     "  Value error, Model architectures ['FooForCausalLM'] are not supported for now. Supported architectures: "
     "dict_keys(['A', 'B'])\n",
     "vLLM does not know the model's architecture ['FooForCausalLM']"),
    ("(EngineCore pid=2) ERROR 11-24 05:41:35 [core.py:1] RuntimeError: CANN: out of device memory\n"
     "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}\n",
     "RuntimeError: CANN: out of device memory"),
])
def test_a_startup_failure_is_reduced_to_its_line(log: str, expected: str) -> None:
    assert logscan.startup_failure(log).startswith(expected)


def test_the_root_cause_is_not_a_pointer_to_another_line() -> None:
    lines = ["(EngineCore pid=2) ERROR 11-24 06:00:00 [core.py:1] RuntimeError: boom in add_request",
             "(APIServer pid=1) ERROR 11-24 06:00:00 [x.py:1] vllm.v1.engine.exceptions.EngineDeadError: EngineCore "
             "encountered an issue. See stack trace (above) for the root cause."]
    assert logscan.root_cause(lines) == "RuntimeError: boom in add_request"
    assert logscan.root_cause(lines[1:]).startswith("vllm.v1.engine.exceptions.EngineDeadError")
    assert logscan.root_cause(["all fine"]) == ""


# ---------------------------------------------------------------- accuracy: lm-eval's numbers or PENDING

LM_EVAL = {
    "results": {"gsm8k": {"alias": "gsm8k", "exact_match,strict-match": 0.7612, "exact_match_stderr,strict-match": 0.0117,
                          "exact_match,flexible-extract": 0.8006, "exact_match_stderr,flexible-extract": 0.011}},
    "n-shot": {"gsm8k": 5},
    "config": {"model": "local-completions", "model_args": "model=acme/tiny,base_url=http://127.0.0.1:8000/v1/completions"},
}


def test_accuracy_values_come_from_lm_eval_results(tmp_path: Path) -> None:
    path = tmp_path / "results_2026-11-24T06-00-00.json"
    path.write_text(json.dumps(LM_EVAL))
    acc = accuracy.load(path, "acme/tiny")
    assert not acc.pending and acc.num_fewshot == 5 and acc.notes == []
    (task,) = acc.tasks
    assert [(m.name, m.value, m.stderr) for m in task.metrics] == [
        ("exact_match,strict-match", 0.7612, 0.0117), ("exact_match,flexible-extract", 0.8006, 0.011)]
    assert accuracy.load(tmp_path, "acme/tiny").source == str(path)  # the directory lm-eval wrote
    assert accuracy.load(path, "/models/other").notes  # results of another model are flagged


def test_without_results_accuracy_is_pending_not_invented() -> None:
    acc = accuracy.pending(vision_language=False)
    assert acc.pending and acc.num_fewshot == 5
    assert [m.value for t in acc.tasks for m in t.metrics] == [None, None]
    assert accuracy.pending(vision_language=True).tasks[0].name == "mmmu_val"


@pytest.mark.parametrize("content, message", [
    ("{nope", "not JSON"), ('{"results": {}}', 'no "results" object'),
    ('{"results": {"t": {"alias": "t"}}}', "no numeric metric"),
])
def test_a_bad_accuracy_file_is_refused(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "r.json").write_text(content)
    with pytest.raises(SmokeInputError, match=message):
        accuracy.load(tmp_path / "r.json")
    with pytest.raises(SmokeInputError, match="no such file"):
        accuracy.load(tmp_path / "missing.json")


# ---------------------------------------------------------------- matrices, verdict, YAML, tutorial

def _model(tmp_path: Path, config: dict[str, Any], weights: bool = True) -> Any:
    files = {"model.safetensors": "x"} if weights else {}
    return resolve_model(str(_model_dir(tmp_path / "m", config, files)))


def _stage(name: str, flags: list[str], facts: dict[str, str], checks: list[Check], passed: bool = True,
           overlay: list[dict[str, Any]] | None = None) -> StageResult:
    return StageResult(name=name, label=name, status=StageStatus.PASSED if passed else StageStatus.FAILED, flags=flags, ready_s=30.0,
                       facts=facts, fact_lines={k: f"line with {k}={v}" for k, v in facts.items()}, checks=checks,
                       reason="" if passed else "the text request failed", exit_code=0,
                       overlay=overlay if overlay is not None else [
                           {"role": "worker", "pid": 3, "applied": ["a"], "skipped": [], "failed": [], "problems": [],
                            "pending": [], "log_line": "ascend-overlay: role=worker pid=3"}])


def _checks(served_len: int = 256, concurrency: CheckStatus = CheckStatus.PASS) -> list[Check]:
    return [Check("models", "GET /v1/models", CheckStatus.PASS, data={"id": "m", "max_model_len": served_len}),
            Check("text", "text", CheckStatus.PASS, evidence="HTTP 200", data={"output": "Paris", "completion_tokens": 2,
                                                                   "request": {"prompt": "x"}}),
            Check("stream", "stream", CheckStatus.PASS, data={"ttft_s": 0.02, "decode_tokens_per_s": 500.0}, evidence="s"),
            Check("context", "context", CheckStatus.PASS, evidence="252+4 answered"),
            Check("concurrency", "concurrency", concurrency, evidence="8/8", data={"requests": 8}, seconds=0.1)]


FLAGS = ["--max-model-len", "256", "--max-num-seqs", "8", "--enforce-eager"]
FACTS = {"enforce_eager": "True", "tensor_parallel_size": "1", "load_format": "auto",
         "kv_concurrency": "256 tokens per request: 25161.00x"}


def _rows(model: Any, dummy: StageResult | None, real: StageResult | None) -> dict[str, features.Feature]:
    return {f.key: f for f in features.feature_matrix(model, dummy, real)}


def test_the_feature_matrix_cites_evidence_and_names_what_was_not_tried(tmp_path: Path) -> None:
    model = _model(tmp_path, LLAMA)
    real = _stage("real", FLAGS, FACTS, _checks())
    rows = _rows(model, _stage("dummy", FLAGS, {**FACTS, "load_format": "dummy"}, _checks()), real)
    assert rows["text"].status is FeatureStatus.SUPPORTED and rows["text"].stage == "real"
    assert rows["image"].status == rows["expert_parallel"].status is FeatureStatus.NOT_APPLICABLE
    assert rows["chat"].status is FeatureStatus.NOT_APPLICABLE and "no chat template" in rows["chat"].evidence
    assert rows["eager_mode"].status is FeatureStatus.SUPPORTED and rows["graph_mode"].status is FeatureStatus.UNTESTED
    assert "--no-enforce-eager" in rows["graph_mode"].evidence
    assert rows["max_model_len"].status == rows["max_num_seqs"].status is FeatureStatus.SUPPORTED
    assert rows["overlay_worker"].status is FeatureStatus.SUPPORTED and rows["real_weights"].status is FeatureStatus.SUPPORTED
    assert all(r.evidence for r in rows.values())


def test_settings_that_did_not_hold_are_unsupported(tmp_path: Path) -> None:
    model = _model(tmp_path, MIXTRAL)
    flags = ["--max-model-len", "4096", "--max-num-seqs", "16", "--enable-expert-parallel"]
    facts = {**FACTS, "enforce_eager": "False", "compilation_mode": "VLLM_COMPILE",
             "kv_concurrency": "4096 tokens per request: 2.50x", "parallel_ranks": "TP rank 0, EP rank N/A"}
    rows = _rows(model, None, _stage("real", flags, facts, _checks(served_len=2048)))
    assert rows["max_model_len"].status is FeatureStatus.UNSUPPORTED and "asked 4096, served 2048" in rows["max_model_len"].evidence
    assert rows["max_num_seqs"].status is FeatureStatus.UNSUPPORTED and "holds 2.5 full-length sequences" in \
        rows["max_num_seqs"].evidence
    assert rows["expert_parallel"].status is FeatureStatus.UNSUPPORTED  # asked, but no EP rank in the log
    assert rows["graph_mode"].status is FeatureStatus.SUPPORTED and rows["eager_mode"].status is FeatureStatus.UNTESTED
    moe_untried = _rows(model, None, _stage("real", FLAGS, FACTS, _checks()))["expert_parallel"]
    assert moe_untried.status is FeatureStatus.UNTESTED and "--enable-expert-parallel" in moe_untried.evidence


def test_a_missing_checkpoint_and_a_dummy_only_run_are_not_signed_off(tmp_path: Path) -> None:
    model = _model(tmp_path, LLAMA, weights=False)
    dummy = _stage("dummy", FLAGS, FACTS, _checks())
    missing = StageResult(name="real", label="stage B", status=StageStatus.CHECKPOINT_MISSING, reason="no weight files")
    assert _rows(model, dummy, missing)["real_weights"].status is FeatureStatus.CHECKPOINT_MISSING
    assert features.verdict(["dummy", "real"], {"dummy": dummy, "real": missing})[0] is False
    passed, text = features.verdict(["dummy"], {"dummy": dummy})
    assert passed and text.startswith("NOT SIGNED OFF")
    failed = _stage("real", FLAGS, FACTS, _checks(concurrency=CheckStatus.FAIL), passed=False)
    assert features.verdict(["dummy", "real"], {"dummy": dummy, "real": failed}) == \
        (False, "FAILED: real failed: the text request failed")


def _report(tmp_path: Path, acc: accuracy.Accuracy) -> dict[str, Any]:
    model = _model(tmp_path, LLAMA)
    stages = {"dummy": _stage("dummy", FLAGS, {**FACTS, "load_format": "dummy"}, _checks()),
              "real": _stage("real", FLAGS, FACTS, _checks())}
    flags = serve_flags.stage_flags([], FLAGS)
    return build_report(model, SmokeOptions(model=str(model.path), serve_flags=FLAGS, hardware="Atlas A2 Series"),
                        stages, ["dummy", "real"], [], flags, acc, True, "SIGNED OFF", "2026-11-24")


def test_the_yaml_and_tutorial_say_pending_until_lm_eval_measured(tmp_path: Path) -> None:
    report = _report(tmp_path, accuracy.pending(False))
    written = artifacts.write(report, tmp_path / "art", "acme/Tiny-1B")
    text = Path(written["test_config"]).read_text()
    config = yaml.safe_load(text)
    assert config["model_name"] == "acme/Tiny-1B" and config["hardware"] == "Atlas A2 Series"
    assert config["model_type"] == "vllm" and config["num_fewshot"] == 5
    assert config["serve"]["max_model_len"] == 256 and config["serve"]["enforce_eager"] is True
    assert "max_model_len" not in config, "serve settings live under serve:, where vllm-ascend reads them"
    assert config["tasks"] == [{"name": "gsm8k", "metrics": [{"name": "exact_match,strict-match"},
                                                             {"name": "exact_match,flexible-extract"}]}]
    assert "null" not in text and text.count(artifacts.PENDING_VALUE) == 2
    page = Path(written["tutorial"]).read_text()
    headings = [line for line in page.splitlines() if line.startswith("## ")]
    assert headings == ["## Introduction", "## Supported Features", "## Environment Preparation", "## Deployment",
                        "## Functional Verification", "## Accuracy Evaluation", "## Performance"]
    assert "**Accuracy: PENDING.**" in page and "| gsm8k | 5 | exact_match,strict-match | PENDING | - |" in page
    assert "curl -s http://127.0.0.1:8000/v1/completions" in page and "'Paris'" in page
    assert "ascend-overlay run -- vllm serve" in page and "--max-model-len 256" in page
    assert "| time to first token (1 request) | 20 ms |" in page
    assert Path(written["tutorial"]).name == "Tiny-1B.md"


def test_measured_accuracy_replaces_pending_everywhere(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(json.dumps(LM_EVAL))
    report = _report(tmp_path, accuracy.load(tmp_path / "r.json"))
    written = artifacts.write(report, tmp_path / "art", "acme/tiny")
    text = Path(written["test_config"]).read_text()
    config = yaml.safe_load(text)
    assert config["tasks"][0]["metrics"][0] == {"name": "exact_match,strict-match", "value": 0.7612}
    assert "PENDING" not in text and "PENDING" not in Path(written["tutorial"]).read_text()
    assert "| gsm8k | 5 | exact_match,strict-match | 0.7612 | 0.0117 |" in Path(written["tutorial"]).read_text()


# ---------------------------------------------------------------- bad input: refused before anything starts

@pytest.mark.parametrize("argv, message", [
    (["/nonexistent/model"], "does not exist"),
    (["{model}", "--port", "9"], "smoke picks a free port"),
    (["{model}", "--accuracy", "/nonexistent/results.json"], "no such file"),
    (["{model}", "--stage", "real"], "checkpoint missing"),
])
def test_bad_input_fails_fast_and_starts_nothing(tmp_path: Path, argv: list[str], message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    model = _model_dir(tmp_path / "noweights", LLAMA)
    out = tmp_path / "out"
    started = time.monotonic()
    code = cli_main(["smoke", *[a.format(model=model) for a in argv], "--out", str(out)])
    assert code == 2
    assert message in capsys.readouterr().err
    # Flags are read by vLLM's own parser, which imports vLLM (5 to 10 s here, once per process); the rest
    # is refused before that, at once.
    assert time.monotonic() - started < (60 if "--port" in argv else 5)
    assert not out.exists() and descendants(os.getpid()) == []


# ---------------------------------------------------------------- the tiny model's real weights

def test_the_tiny_model_saves_seeded_weights_and_completes_an_old_directory(tiny_model: Path, tmp_path: Path) -> None:
    assert is_complete(tiny_model)
    old = tmp_path / "old"
    shutil.copytree(tiny_model, old)
    (old / WEIGHTS).unlink()  # what the version before real weights left in ~/.cache
    assert not is_complete(old)
    make_tiny_model(old)
    digest = lambda p: hashlib.sha256((p / WEIGHTS).read_bytes()).hexdigest()  # noqa: E731
    assert is_complete(old) and digest(old) == digest(tiny_model)
    assert json.loads((old / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]  # no temporary directory left behind


# ---------------------------------------------------------------- vllm-ascend's own formats and loader

@pytest.fixture(scope="module")
def vllm_ascend() -> Path:
    """vllm-ascend's configs, loader and supported-models page (its sdist, fetched once into the cache)."""
    from ascend_overlay.main2main.sources import SourceError
    from ascend_overlay.testing.reference import reference_tree

    try:
        return reference_tree()
    except SourceError as exc:
        pytest.skip(f"vllm-ascend's files cannot be had here (offline?): {exc}")


def _their_loader(tree: Path, monkeypatch: pytest.MonkeyPatch, measured: dict[str, dict[str, float]],
                  seen: list[dict[str, Any]]) -> Any:
    """vllm-ascend's test_lm_eval_correctness module, run as it is; only lm_eval (which would run the
    model) is a stand-in that records what it was asked and answers ``measured``."""
    import importlib.util
    import types

    lm_eval = types.ModuleType("lm_eval")

    def simple_evaluate(**params: Any) -> dict[str, Any]:
        seen.append(params)
        return {"results": {task: {**values, **{k.replace(",", "_stderr,"): 0.01 for k in values}}
                            for task, values in measured.items()}}

    lm_eval.simple_evaluate = simple_evaluate  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lm_eval", lm_eval)
    from ascend_overlay.testing.reference import LOADER

    spec = importlib.util.spec_from_file_location("vllm_ascend_lm_eval_correctness", tree / LOADER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.network
def test_our_config_is_read_by_vllm_ascends_own_loader(tmp_path: Path, vllm_ascend: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "r.json").write_text(json.dumps(LM_EVAL))
    report = _report(tmp_path, accuracy.load(tmp_path / "r.json"))
    config_file = Path(artifacts.write(report, tmp_path / "art", "acme/Tiny-1B")["test_config"])
    seen: list[dict[str, Any]] = []
    loader = _their_loader(vllm_ascend, monkeypatch, {"gsm8k": {"exact_match,strict-match": 0.7612,
                                                                "exact_match,flexible-extract": 0.8006}}, seen)
    env = loader.EnvConfig(*["unknown"] * 7)
    loader.test_lm_eval_correctness_param(config_file, 1, tmp_path / "reports", env)
    (params,) = seen
    assert params["model"] == "vllm" and params["tasks"] == ["gsm8k"] and params["num_fewshot"] == 5
    args = params["model_args"]
    assert args["pretrained"] == "acme/Tiny-1B"
    # The serve settings reached lm-eval's model arguments: vllm-ascend found them under serve:.
    serve = yaml.safe_load(config_file.read_text())["serve"]
    assert args["max_model_len"] == 256 and args["enforce_eager"] is True
    assert args["gpu_memory_utilization"] == serve["gpu_memory_utilization"] == 0.92   # vLLM's default, as parsed
    assert (tmp_path / "reports" / "Tiny-1B.md").is_file(), "its report was written from our config"


@pytest.mark.network
def test_a_config_without_measured_accuracy_cannot_pass_vllm_ascends_comparison(
        tmp_path: Path, vllm_ascend: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = _report(tmp_path, accuracy.pending(False))
    config_file = Path(artifacts.write(report, tmp_path / "art", "acme/Tiny-1B")["test_config"])
    loader = _their_loader(vllm_ascend, monkeypatch, {"gsm8k": {"exact_match,strict-match": 0.5,
                                                                "exact_match,flexible-extract": 0.5}}, [])
    with pytest.raises(KeyError, match="value"):
        loader.test_lm_eval_correctness_param(config_file, 1, tmp_path / "reports", loader.EnvConfig(*["u"] * 7))


@pytest.mark.network
def test_our_config_uses_vllm_ascends_keys_and_nesting(tmp_path: Path, vllm_ascend: Path) -> None:
    from ascend_overlay.testing.reference import CONFIGS

    theirs = [yaml.safe_load(p.read_text()) for p in sorted((vllm_ascend / CONFIGS).glob("*.yaml"))]
    theirs = [c for c in theirs if c.get("model_type", "vllm") in ("vllm", "vllm-vlm")]
    assert len(theirs) >= 10
    (tmp_path / "r.json").write_text(json.dumps(LM_EVAL))
    ours = yaml.safe_load(artifacts.test_config_yaml(_report(tmp_path, accuracy.load(tmp_path / "r.json")), "a/b"))
    assert set(ours) <= set().union(*theirs), "a top-level key vllm-ascend's configs do not have"
    assert set(ours["serve"]) <= set().union(*(c.get("serve", {}) for c in theirs))
    assert sum("serve" in c for c in theirs) >= len(theirs) - 1 and isinstance(ours["serve"], dict)
    for task in ours["tasks"]:
        assert set(task) == {"name", "metrics"} and all(set(m) == {"name", "value"} for m in task["metrics"])
    assert all(set(m) <= {"name", "value"} for c in theirs for t in c["tasks"] for m in t["metrics"])


@pytest.mark.network
def test_the_supported_models_row_has_the_pages_columns_and_legend(tmp_path: Path, vllm_ascend: Path) -> None:
    from ascend_overlay.smoke.supported_models import COLUMNS, Symbol, supported_models_row
    from ascend_overlay.testing.reference import SUPPORTED_MODELS

    page = (vllm_ascend / SUPPORTED_MODELS).read_text()
    headers = {tuple(c.strip() for c in line.strip().strip("|").split("|")) for line in page.splitlines()
               if line.strip().startswith("| Model") or line.strip().startswith("|      Model")}
    assert COLUMNS in headers, "not a header of the page's tables"
    report = _report(tmp_path, accuracy.pending(False))
    legend = [line for line in artifacts.supported_models_markdown(report, "acme/Tiny-1B") if " = " in line]
    assert len(legend) == 4 and all(line in page.splitlines() for line in legend), legend
    row = supported_models_row(report, "acme/Tiny-1B")
    assert list(row) == list(COLUMNS)
    symbols = {s for s in Symbol}
    text_columns = {"Model", "Note", "Supported Hardware", "max-model-len", "Doc"}
    assert all(row[c] in symbols for c in COLUMNS if c not in text_columns)
    assert row["Support"] is Symbol.SUPPORTED and row["Tensor Parallel"] is Symbol.UNTESTED  # tp=1: not exercised
    assert row["Expert Parallel"] is Symbol.BLANK and row["LoRA"] is Symbol.BLANK      # dense; never exercised
    assert row["max-model-len"] == "256" and row["Doc"] == "[Tiny-1B](../../tutorials/models/Tiny-1B.md)"
