"""The files a model adaptation ships, filled from what the gate measured, in vllm-ascend's formats:
the test config YAML (its keys and nesting: ``model_name``, ``model_type``, ``hardware``, a ``serve:``
block, ``tasks`` with metrics, ``num_fewshot``), the model's row of the supported-models page (with
its legend's symbols), and the tutorial page.

Nothing here is typed in by hand: the serve command is the one stage B ran, the curl example is the
request it sent and the reply it got, the performance numbers are its timings. Accuracy comes only
from lm-eval's results (``--accuracy``); without them no value is written (a comment in the YAML,
PENDING in the tutorial says so), never a ``null`` that vllm-ascend's comparison cannot take.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from ascend_overlay.core.files import write_atomic
from ascend_overlay.smoke.image import red_square_png
from ascend_overlay.smoke.probes import CheckStatus
from ascend_overlay.smoke.render import cell, feature_table
from ascend_overlay.smoke.supported_models import supported_models_markdown

# The keys of a vllm-ascend test config's ``serve:`` block, in its order (tests/e2e/models/configs/*.yaml);
# its loader (test_lm_eval_correctness.py) reads them with ``eval_config.get("serve", {})``.
SERVE_KEYS = ("tensor_parallel_size", "dtype", "max_model_len", "gpu_memory_utilization", "trust_remote_code",
              "enforce_eager", "enable_expert_parallel", "quantization")
PENDING_VALUE = "# value: not measured (PENDING): run lm-eval, then smoke --accuracy RESULTS.json"


def test_config(report: dict[str, Any], model_name: str) -> dict[str, Any]:
    """The test config as data, in vllm-ascend's keys and nesting (an accuracy not measured has no
    ``value`` key at all: its loader could not compare a null)."""
    accuracy = report["accuracy"]
    served = report.get("served", {})
    serve: dict[str, Any] = {}
    for key in SERVE_KEYS:
        value = served.get(key)
        # Optional switches are written only when on, as vllm-ascend's own configs do.
        if value is None or (key in ("enable_expert_parallel", "enforce_eager") and value is False):
            continue
        serve[key] = value
    vlm = report["model"]["vision_language"]
    tasks = [{"name": task["name"],
              "metrics": [{"name": m["name"], **({"value": m["value"]} if m["value"] is not None else {})}
                          for m in task["metrics"]]}
             for task in accuracy["tasks"]]
    config: dict[str, Any] = {"model_name": model_name, "model_type": "vllm-vlm" if vlm else "vllm",
                              "hardware": report["environment"]["hardware"], "serve": serve, "tasks": tasks}
    shots = accuracy.get("num_fewshot")
    if shots is not None:
        config["num_fewshot"] = shots
    # How the accuracy is (to be) measured: the lm_eval command of the tutorial's Accuracy Evaluation.
    config["apply_chat_template"] = bool(vlm)
    config["fewshot_as_multiturn"] = False
    config["batch_size"] = "auto"
    return config


def test_config_yaml(report: dict[str, Any], model_name: str) -> str:
    """``test_config`` written with ``yaml.safe_dump`` (what vllm-ascend reads with ``safe_load``), with
    the comments a maintainer needs: where it came from, and which values are not measured yet."""
    import yaml

    accuracy = report["accuracy"]
    config = test_config(report, model_name)
    head = [f"# Test config for {model_name}, written by `ascend-overlay smoke` on {report['created']}.",
            f"# Gate: {report['verdict']['text']}"]
    if accuracy["pending"]:
        head.append("# Accuracy not measured: each metric below has no value yet. Run lm-eval as the tutorial's "
                    "Accuracy Evaluation says, then rerun smoke with --accuracy RESULTS.json.")
    else:
        head.append(f"# Accuracy values from lm-eval results: {accuracy['source']}")
    if accuracy.get("num_fewshot") is None:
        head.append("# num_fewshot differs per task (see the lm-eval results): not set here")
    body = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=False)
    lines = []
    pending = {(t["name"], m["name"]) for t in accuracy["tasks"] for m in t["metrics"] if m["value"] is None}
    task = None
    for line in body.splitlines():
        lines.append(line)
        if line.startswith("- name: "):
            task = yaml.safe_load(line[2:])["name"]
        elif line.startswith("  - name: ") and (task, yaml.safe_load(line[4:])["name"]) in pending:
            lines.append("    " + PENDING_VALUE)
    return "\n".join(head + lines) + "\n"


def _curl(port_host: str, path: str, body: dict[str, Any]) -> str:
    return (f"curl -s {port_host}{path} \\\n  -H 'Content-Type: application/json' \\\n"
            f"  -d {shlex.quote(json.dumps(body))}")


def tutorial_markdown(report: dict[str, Any], model_name: str, image_file: str | None) -> str:
    model, env, accuracy = report["model"], report["environment"], report["accuracy"]
    real = report["stages"].get("real") or {}
    shown = real if real.get("checks") else (report["stages"].get("dummy") or {})
    stage_word = "stage B (real weights)" if shown is real else "stage A (dummy weights only: not signed off)"
    served = report.get("served", {})
    kind = "vision-language" if model["vision_language"] else "text"
    arch = ", ".join(model["architectures"]) or model["model_type"]
    out = [f"# {model_name}", "",
           "## Introduction", "",
           f"`{model_name}` is a {kind} model ({arch}; model_type `{model['model_type']}`"
           + (f", dtype {model['dtype']}" if model.get("dtype") else "")
           + (f", up to {model['max_position_embeddings']} positions" if model.get("max_position_embeddings") else "")
           + (f"; mixture of experts: {model['moe_evidence']}" if model["moe"] else "; dense") + ").",
           "",
           f"This page was generated by `ascend-overlay smoke` on {report['created']} from a run on {env['hardware']} "
           f"with vLLM {env.get('vllm') or '?'} and ascend-overlay {env['overlay']}. Gate verdict: "
           f"**{report['verdict']['text']}**. Every value below was measured in that run"
           + (", except the accuracy values marked PENDING." if accuracy["pending"] else
              "; the accuracy values come from lm-eval's results file."),
           "", "## Supported Features", "",
           f"The model's row of the supported-models page, from {stage_word}:", ""]
    out += supported_models_markdown(report, model_name)
    out += ["", "Each status and the evidence it rests on (a log line or a response):", ""]
    out += feature_table(report["feature_matrix"])
    install = (f"pip install '{env['vllm_dist']}=={env['vllm']}'" if env.get("vllm_dist") and env.get("vllm")
               else "pip install vllm")
    out += ["", "## Environment Preparation", "",
            f"Verified with: vLLM {env.get('vllm') or '?'} (distribution `{env.get('vllm_dist') or '?'}`), "
            f"ascend-overlay {env['overlay']}, Python {env['python']}, on {env['hardware']}.", "",
            "```bash", install, "pip install ascend-overlay", "```", "",
            "On an Ascend NPU machine, install the CANN toolkit and `torch_npu` matching your torch first "
            "(see the overlay's docs/npu.md). The overlay's patches applied in this run, per process:", ""]
    for proc in shown.get("overlay", []):
        out.append(f"- {proc['role']}: {', '.join(proc['applied']) or 'none'}"
                   + (f" (skipped: {'; '.join(proc['skipped'])})" if proc["skipped"] else ""))
    flags = shown.get("flags", [])
    serve = shlex.join(["ascend-overlay", "run", "--", "vllm", "serve", model["spec"], *flags,
                        "--host", "0.0.0.0", "--port", "8000"])
    out += ["", "## Deployment", "",
            "The serve command of the verified run (host and port added for deployment):", "",
            "```bash", serve, "```", "",
            f"Startup took {shown.get('ready_s')} s to the first `GET /v1/models` 200 in the verified run.", "",
            "## Functional Verification", ""]
    chat = next((c for c in shown.get("checks", []) if c["name"] == "chat" and _passed(c)), None)
    text = next((c for c in shown.get("checks", []) if c["name"] == "text" and _passed(c)), None)
    model_id = next((c["data"].get("id") for c in shown.get("checks", []) if c["name"] == "models"), model["spec"])
    base = "http://127.0.0.1:8000"
    out += ["```bash", f"curl -s {base}/v1/models", "```", ""]
    for check, path in ((chat, "/v1/chat/completions"), (text, "/v1/completions")):
        if check is None:
            continue
        body = {"model": model_id, **check["data"]["request"]}
        out += ["```bash", _curl(base, path, body), "```", "",
                f"Measured reply, {stage_word}: `{cell(repr(check['data']['output']))}` "
                f"({check['data']['completion_tokens']} tokens).", ""]
    image = next((c for c in shown.get("checks", []) if c["name"] == "image"), None)
    if model["vision_language"] and image_file:
        body = {"model": model_id, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,IMAGE_B64"}},
            {"type": "text", "text": image["data"]["request"]["messages"][0]["content"][1]["text"]
             if image and image.get("data", {}).get("request") else "Describe this image."}]}],
            "max_tokens": 16, "temperature": 0}
        curl = _curl(base, "/v1/chat/completions", body).replace("IMAGE_B64", "'\"$IMAGE_B64\"'")
        out += ["A text+image request, with the test image next to this page "
                f"(`{image_file}`, a red square):", "", "```bash", f"IMAGE_B64=$(base64 -w0 {image_file})", curl,
                "```", ""]
        if image and _passed(image):
            out += [f"Measured reply: `{cell(repr(image['data']['output']))}`.", ""]
    tasks = ",".join(t["name"] for t in accuracy["tasks"])
    lm_model = "local-chat-completions" if model["vision_language"] else "local-completions"
    endpoint = "/v1/chat/completions" if model["vision_language"] else "/v1/completions"
    shots = accuracy.get("num_fewshot")
    lm_eval = (f"lm_eval --model {lm_model} --model_args model={model_id},base_url={base}{endpoint},"
               f"num_concurrent=1,tokenized_requests=False --tasks {tasks}"
               + (f" --num_fewshot {shots}" if shots else "")
               + (" --apply_chat_template" if model["vision_language"] else "") + " --output_path results/")
    out += ["## Accuracy Evaluation", "",
            "With the server of the Deployment section running:", "", "```bash", lm_eval,
            f"ascend-overlay smoke {shlex.quote(model['spec'])} ... --artifacts DIR --accuracy results/", "```", ""]
    if accuracy["pending"]:
        out += ["**Accuracy: PENDING.** No lm-eval results were given to this run; the values below are not "
                "measured yet.", ""]
    else:
        out += [f"Measured by lm-eval (`{accuracy['source']}`).", ""] + [f"- {n}" for n in accuracy["notes"]]
    out += ["| task | n-shot | metric | value | stderr |", "| --- | --- | --- | --- | --- |"]
    for task in accuracy["tasks"]:
        for metric in task["metrics"]:
            value = "PENDING" if metric["value"] is None else f"{metric['value']:.4f}"
            stderr = "-" if metric.get("stderr") is None else f"{metric['stderr']:.4f}"
            out.append(f"| {task['name']} | {task['num_fewshot']} | {metric['name']} | {value} | {stderr} |")
    out += ["", "## Performance", "",
            f"Single-request timings from the gate run on {env['hardware']} ({stage_word}): a smoke measurement, "
            "not a benchmark.", "", "| measure | value | evidence |", "| --- | --- | --- |"]
    out += [f"| {m} | {v} | {cell(e) or '-'} |" for m, v, e in performance_rows(shown)]
    out += ["", "For throughput and latency under load, run vLLM's benchmark against the deployed server:", "",
            "```bash", f"vllm bench serve --model {model_id} --base-url {base} --dataset-name random "
            f"--random-input-len {min(1024, served.get('max_model_len') or 1024) // 2} --random-output-len 128 "
            "--num-prompts 100 --request-rate 4", "```", ""]
    return "\n".join(out)


def _passed(check: dict[str, Any]) -> bool:
    return CheckStatus(check["status"]) is CheckStatus.PASS


def performance_rows(stage: dict[str, Any]) -> list[tuple[str, str, str]]:
    lines = stage.get("fact_lines", {})
    facts = stage.get("facts", {})
    checks = {c["name"]: c for c in stage.get("checks", [])}
    rows = [("startup to ready", f"{stage.get('ready_s')} s", lines.get("server_started", ""))]
    if facts.get("init_engine"):
        rows.append(("engine init (profile, KV cache, warmup)", f"{facts['init_engine']} s", lines["init_engine"]))
    if facts.get("weights_load"):
        rows.append(("weights load", f"{facts['weights_load']} s", lines["weights_load"]))
    if facts.get("kv_cache_tokens"):
        rows.append(("KV cache capacity", f"{facts['kv_cache_tokens']} tokens", lines["kv_cache_tokens"]))
    stream = checks.get("stream")
    if stream and _passed(stream):
        rows.append(("time to first token (1 request)", f"{stream['data']['ttft_s'] * 1000:.0f} ms", stream["evidence"]))
        rows.append(("decode speed (1 request)", f"{stream['data']['decode_tokens_per_s']} tokens/s", stream["evidence"]))
    conc = checks.get("concurrency")
    if conc and _passed(conc):
        rows.append((f"{conc['data']['requests']} requests at once", f"{conc['seconds']:.2f} s", conc["evidence"]))
    return rows


def write(report: dict[str, Any], directory: Path, model_name: str) -> dict[str, str]:
    """Write the YAML, the supported-models row and the tutorial (and the test image, for a VLM);
    return their paths. Each file is replaced whole (``core.files``)."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = Path(model_name.rstrip("/")).name or "model"
    written = {}
    image_file = None
    if report["model"]["vision_language"]:
        image_path = write_atomic(directory / "red_square.png", red_square_png())
        image_file, written["test_image"] = image_path.name, str(image_path)
    written["test_config"] = str(write_atomic(directory / f"{stem}.yaml", test_config_yaml(report, model_name)))
    row = "\n".join(supported_models_markdown(report, model_name)) + "\n"
    written["supported_models_row"] = str(write_atomic(directory / f"{stem}.supported_models.md", row))
    written["tutorial"] = str(write_atomic(directory / f"{stem}.md", tutorial_markdown(report, model_name, image_file)))
    return written
