"""A ``vllm serve`` process on a free loopback port, stopped the way an operator stops it (Ctrl-C),
with its whole process tree accounted for. Used by ``ascend-overlay demo``, ``ascend-overlay smoke``
and the e2e tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

BIN = Path(sys.executable).parent
# CPU-backend settings measured on the project's machines (see shared/VLLM_FACTS.md): the default
# gpu_memory_utilization (0.92 of NUMA memory) fails there; 0.3 works. The tiny model's KV cache is
# sized explicitly, 256 MiB (262,144 tokens for a 256-token context): from the utilization alone vLLM
# reserves and zeroes 0.3 of the machine's memory (~7 GiB here) at every start, ~3.5 s of system time,
# and three servers at once nearly fill the machine.
KV_CACHE_BYTES = 256 * 2**20
SERVE_ARGS = ["--load-format", "dummy", "--gpu-memory-utilization", "0.3", "--kv-cache-memory-bytes",
              str(KV_CACHE_BYTES), "--max-model-len", "256", "--max-num-seqs", "8", "--seed", "0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (psutil: the same on every OS it supports)."""
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def group_members(pgid: int) -> list[int]:
    """Every live process of process group ``pgid``: a server started in its own session keeps its
    children findable here even after its main process died and they were re-parented."""
    return _live_with(os.getpgid, pgid)


def session_members(sid: int) -> list[int]:
    """Every live process of session ``sid`` (e.g. a Ray cluster started by ``ray start`` in a session
    of its own: its daemons and worker processes stay in it, whatever their process group)."""
    return _live_with(os.getsid, sid)


def _live_with(key: Callable[[int], int], value: int) -> list[int]:
    """Live (non-zombie) processes for which ``key(pid)`` (their process group or session) is ``value``."""
    found = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and key(proc.pid) == value:
                found.append(proc.pid)
        except (OSError, psutil.Error):
            continue   # gone meanwhile
    return found


def wait_gone(pids: list[int], timeout: float = 20.0) -> list[int]:
    """Give exiting children (e.g. multiprocessing's resource tracker) a moment; return those left."""
    deadline = time.monotonic() + timeout
    left = alive(pids)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = alive(left)
    return left


def alive(pids: list[int]) -> list[int]:
    """The pids that still run (zombies count as gone: they hold no resources but a table entry)."""
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.Error:
            continue
    return out


class ServerExitedError(RuntimeError):
    """vLLM exited before it answered: a rejected flag, an unknown architecture, a crash at load."""

    def __init__(self, returncode: int, log: str) -> None:
        super().__init__(f"vllm serve exited with {returncode}:\n{log[-4000:]}")
        self.returncode = returncode


class VllmServer:
    """``vllm serve MODEL`` (or another launcher's command line) with its log kept in a file.

    ``serve_args`` replaces the demo's CPU settings (``SERVE_ARGS``) when a caller decides its own;
    ``log_path`` keeps the log where the caller wants it (default: a temporary file)."""

    def __init__(self, model: Path | str, env: dict[str, str], extra_args: list[str] | None = None,
                 command: list[str] | None = None, timeout: float = 240, serve_args: list[str] | None = None,
                 log_path: Path | None = None) -> None:
        self.port = free_port()
        self.model = str(model)
        cmd = command or [str(BIN / "vllm"), "serve"]
        self.args = cmd + [self.model, *(SERVE_ARGS if serve_args is None else serve_args), "--host", "127.0.0.1",
                           "--port", str(self.port), *(extra_args or [])]
        self.env = env
        self.timeout = timeout
        self.proc: subprocess.Popen[str] | None = None
        self.log_path: Path | None = log_path
        self.children: list[int] = []

    def __enter__(self) -> VllmServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def start(self) -> VllmServer:
        """Start and wait until ``GET /v1/models`` answers; raises ServerExitedError or TimeoutError,
        leaving the caller to ``stop()`` (as ``with`` does), so it can read the log of a live process first."""
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="vllm-serve-", suffix=".log")
            self.log_path = Path(name)
            self._log = os.fdopen(fd, "w")
        else:
            self._log = open(self.log_path, "w")  # closed in stop()
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerExitedError(self.proc.returncode, self.log())
            try:
                self.get("/v1/models")
                self.children = descendants(self.proc.pid)
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(1)
        raise TimeoutError(f"vllm serve not ready after {self.timeout}s:\n{self.log()[-4000:]}")

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def process(self) -> subprocess.Popen[str]:
        """The ``vllm serve`` process, once ``start()`` has launched it."""
        if self.proc is None:
            raise RuntimeError("vllm serve was not started")
        return self.proc

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
            reply: dict[str, Any] = json.loads(resp.read())
            return reply

    def stop(self, grace: float = 60) -> int | None:
        """Ctrl-C, as an operator would; kill the process group if vLLM has not exited after ``grace`` s.

        A server still starting up may not act on Ctrl-C at all (its main thread waits for the engine),
        so a caller that gave up on startup passes a shorter grace."""
        if self.proc is None:
            return None
        # Every process of the tree, taken now: the caller checks afterwards that all are gone.
        tree = set(self.children) | set(descendants(self.proc.pid)) | set(group_members(self.proc.pid))
        self.children = sorted(tree - {self.proc.pid})
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode
