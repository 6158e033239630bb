"""Real vLLM processes for end-to-end tests: a tiny local model, ``vllm serve`` on 127.0.0.1, offline
generation in a subprocess, and the overlay's per-process report. Nothing here is mocked."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# CPU-backend settings measured on this machine kind (see shared/VLLM_FACTS.md).
SERVE_ARGS = ["--load-format", "dummy", "--gpu-memory-utilization", "0.3", "--max-model-len", "256",
              "--max-num-seqs", "8", "--seed", "0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(overlay: bool, **extra: str) -> dict[str, str]:
    """The environment of a test run: the overlay's variables cleared, then set as asked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_ASCEND_OVERLAY") and k != "VLLM_VERSION"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                        if p and Path(p).resolve() != REPO)
    if overlay:
        env["VLLM_ASCEND_OVERLAY"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env["PYTHONPATH"]) if p)
    env.update(extra)
    return env


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (read from /proc, so it needs no extra package)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class VllmServer:
    """``vllm serve MODEL`` through the ``vllm`` console command, on a free loopback port."""

    def __init__(self, model: Path, env: dict[str, str], extra_args: list[str] | None = None,
                 command: list[str] | None = None, timeout: float = 240) -> None:
        self.port = free_port()
        self.model = str(model)
        cmd = command or [str(BIN / "vllm"), "serve"]
        self.args = cmd + [self.model, *SERVE_ARGS, "--host", "127.0.0.1", "--port", str(self.port),
                           *(extra_args or [])]
        self.env = env
        self.timeout = timeout
        self.proc: subprocess.Popen[str] | None = None
        self.log_path: Path | None = None
        self.children: list[int] = []

    def __enter__(self) -> VllmServer:
        import tempfile

        fd, name = tempfile.mkstemp(prefix="vllm-serve-", suffix=".log")
        self.log_path = Path(name)
        self._log = os.fdopen(fd, "w")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                self.get("/v1/models")
                self.children = descendants(self.proc.pid)
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(1)
        self.stop()
        raise TimeoutError(f"vllm serve not ready after {self.timeout}s:\n{self.log()[-4000:]}")

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
            return json.loads(resp.read())

    def complete(self, prompt: str, max_tokens: int = 8, **extra: Any) -> dict[str, Any]:
        body = json.dumps({"model": self.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                           **extra}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read())

    def stop(self) -> int | None:
        """Ctrl-C, as an operator would; kill only if vLLM does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(pid)
    return out


OFFLINE_SCRIPT = textwrap.dedent('''
    import json, sys
    from vllm import LLM, SamplingParams

    if __name__ == "__main__":
        model, out, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
        prompts = json.loads(sys.argv[4])
        llm = LLM(model=model, load_format="dummy", gpu_memory_utilization=0.3, max_model_len=256,
                  max_num_seqs=8, seed=0)
        params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
        outs = llm.generate(prompts, params)
        json.dump([list(o.outputs[0].token_ids) for o in outs], open(out, "w"))
''')


def run_offline(model: Path, env: dict[str, str], tmp: Path, prompts: list[str],
                max_tokens: int = 8, timeout: float = 300) -> tuple[list[list[int]], str]:
    """Greedy offline generation with ``vllm.LLM`` in a fresh interpreter; returns token ids and the log."""
    script = tmp / "offline_generate.py"
    script.write_text(OFFLINE_SCRIPT)
    out = tmp / f"tokens-{time.monotonic_ns()}.json"
    proc = subprocess.run([sys.executable, str(script), str(model), str(out), str(max_tokens), json.dumps(prompts)],
                          env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp)
    if proc.returncode != 0:
        raise RuntimeError(f"offline generation failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(out.read_text()), proc.stderr


def report_by_role(path: Path) -> dict[str, list[dict[str, Any]]]:
    from ascend_overlay.report import latest_per_process, read_jsonl

    roles: dict[str, list[dict[str, Any]]] = {}
    for rec in latest_per_process(read_jsonl(str(path))):
        roles.setdefault(rec["role"], []).append(rec)
    return roles


def outcome(record: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((p for p in record["patches"] if p["name"] == name), None)
