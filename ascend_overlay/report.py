"""What the overlay did in this process: one log line a process, and JSON lines for tools.

The report answers the question the domain's users could not: which patch is active in which
process. Each process writes snapshots as its phases fire; the last snapshot of a pid is its state.
JSON lines are appended with one ``write`` on an ``O_APPEND`` descriptor under an exclusive
``flock``, so processes appending at once never interleave.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Outcome:
    name: str
    phase: str
    status: str  # applied | skipped | pending | failed | inherited
    reason: str = ""
    source: str = "builtin"
    aliases: list[str] = field(default_factory=list)


def detect_role(phases: list[str]) -> str:
    """main / api_server / engine_core / worker, from vLLM's process names and the phases seen.

    A process that fired the platform phase is the main process even if the engine core and the
    worker run inside it too (``VLLM_ENABLE_V1_MULTIPROCESSING=0``).
    """
    mp = sys.modules.get("multiprocessing")
    name = mp.current_process().name if mp is not None else "MainProcess"
    if name.startswith("EngineCore"):
        return "engine_core"
    if name.startswith(("VllmWorker", "Worker")):
        return "worker"
    if name.startswith("ApiServer") or _is_api_server_main():
        return "api_server"
    if "platform" in phases or not phases:
        return "main"
    return "engine_core" if "engine_core" in phases else "worker"


def _is_api_server_main() -> bool:
    argv = sys.argv
    if argv and argv[0].endswith(("openai/api_server.py", "vllm.entrypoints.openai.api_server")):
        return True
    return len(argv) > 1 and os.path.basename(argv[0]) == "vllm" and argv[1] == "serve"


@dataclass
class ProcessReport:
    pid: int = field(default_factory=os.getpid)
    doors: list[str] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    problems: list[dict[str, str]] = field(default_factory=list)
    vllm: str | None = None
    vllm_dist: str | None = None
    forked_from: int | None = None

    @property
    def role(self) -> str:
        return detect_role(self.phases)

    def record(self, outcome: Outcome) -> None:
        self.outcomes[outcome.name] = outcome

    def snapshot(self, event: str) -> dict[str, Any]:
        return {
            "event": event,
            "time": round(time.time(), 3),
            "pid": self.pid,
            "ppid": os.getppid(),
            "forked_from": self.forked_from,
            "role": self.role,
            "vllm": self.vllm,
            "vllm_dist": self.vllm_dist,
            "doors": list(self.doors),
            "phases": list(self.phases),
            "patches": [asdict(o) for o in self.outcomes.values()],
            "problems": list(self.problems),
            "npu": _npu_mode(),
        }

    def summary_line(self) -> str:
        own = [o for o in self.outcomes.values() if o.source != "overlay"]
        hooks = [o for o in self.outcomes.values() if o.source == "overlay" and o.status in ("applied", "inherited")]
        applied = [o.name for o in own if o.status in ("applied", "inherited")]
        skipped = [f"{o.name} ({o.reason})" for o in own if o.status in ("skipped", "failed")]
        parts = [f"role={self.role}", f"pid={self.pid}", f"vllm={self.vllm}",
                 f"phases={','.join(self.phases) or '-'}", f"hooks={len(hooks)}",
                 f"applied={len(applied)}" + (f" [{', '.join(applied)}]" if applied else ""),
                 f"skipped={len(skipped)}" + (f" [{'; '.join(skipped)}]" if skipped else "")]
        npu = _npu_mode()
        if npu is not None:
            parts.append(f"npu={npu}")
        if self.problems:
            parts.append(f"refused={len(self.problems)} [" + "; ".join(
                f"{os.path.basename(p['path'])}: {p['message']}" for p in self.problems) + "]")
        return " ".join(parts)


def _npu_mode() -> str | None:
    """simulated / real / None: which NPU this process runs with (reads only what is loaded)."""
    from ascend_overlay.npu import npu_mode

    return npu_mode()


def append_jsonl(path: str, record: dict[str, Any]) -> None:
    data = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except (ImportError, OSError):
            pass
        os.write(fd, data)
    finally:
        os.close(fd)


def read_jsonl(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def latest_per_process(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last snapshot of each pid, in the order the processes first appeared."""
    latest: dict[int, dict[str, Any]] = {}
    for rec in records:
        latest[rec["pid"]] = rec
    return list(latest.values())


def format_table(records: list[dict[str, Any]]) -> str:
    lines = []
    for rec in latest_per_process(records):
        npu = f" npu={rec['npu']}" if rec.get("npu") else ""
        lines.append(f"{rec['role']:<12} pid={rec['pid']:<8} vllm={rec['vllm']} phases={','.join(rec['phases']) or '-'}{npu}")
        hooks = [p["name"] for p in rec["patches"] if p["source"] == "overlay" and p["status"] in ("applied", "inherited")]
        lines.append(f"    hooks     {', '.join(hooks) or '-'}")
        for p in rec["patches"]:
            if p["source"] == "overlay":
                continue
            reason = f"  ({p['reason']})" if p["reason"] else ""
            lines.append(f"    {p['status']:<9} {p['name']:<34} [{p['phase']}, {p['source']}]{reason}")
        for prob in rec["problems"]:
            lines.append(f"    refused   {prob['path']}: {prob['message']}")
    return "\n".join(lines)
