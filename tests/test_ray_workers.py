"""The overlay and Ray, without a cluster: what the driver carries to Ray workers, how it finds the workers
that run stock vLLM (a node without the package), and the refusal when Ray is asked for but missing.

A Ray node without the package cannot exist on this one machine next to the e2e test's cluster, so the
node is a fresh interpreter where ``ascend_overlay`` cannot be imported (a ``sys.meta_path`` blocker);
the e2e test (test_e2e_ray.py) covers the workers where the overlay is active.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap

import cloudpickle
from harness import base_env

from ascend_overlay.doors import ray_workers
from ascend_overlay.doors.ray_workers import (
    INSTALL_HINT,
    carry_into,
    check_workers,
    make_probe,
    ray_missing,
    ray_requested,
)

BLOCKER = textwrap.dedent('''
    import importlib.abc, sys

    class Blocked(importlib.abc.MetaPathFinder):
        """This interpreter stands for a machine where these packages are not installed."""
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {blocked}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Blocked())
''')


def run_without(packages: set[str], body: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    script = BLOCKER.format(blocked=repr(packages)) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], input=stdin, capture_output=True, timeout=120,
                          env=base_env(overlay=False))


def test_the_overlay_variables_join_the_runtime_env_and_the_operators_values_win():
    environ = {"VLLM_ASCEND_OVERLAY": "1", "VLLM_ASCEND_OVERLAY_REPORT": "/r.jsonl", "VLLM_LOGGING_LEVEL": "INFO",
               "PATH": "/bin"}
    runtime_env = {"pip": ["x"], "env_vars": {"VLLM_ASCEND_OVERLAY_REPORT": "/node/r.jsonl"}}
    assert carry_into(runtime_env, environ) == {
        "pip": ["x"], "env_vars": {"VLLM_ASCEND_OVERLAY_REPORT": "/node/r.jsonl", "VLLM_ASCEND_OVERLAY": "1"}}
    assert carry_into(None, environ) == {"env_vars": {"VLLM_ASCEND_OVERLAY": "1",
                                                      "VLLM_ASCEND_OVERLAY_REPORT": "/r.jsonl"}}
    assert carry_into({}, {"PATH": "/bin"}) == {}, "nothing to carry adds nothing"


def test_the_probe_answers_on_a_node_without_the_package_and_the_driver_names_that_host():
    answered = run_without({"ascend_overlay"}, '''
        import json, pickle, sys
        answer = pickle.loads(sys.stdin.buffer.read())(None)
        try:
            import ascend_overlay
        except ModuleNotFoundError:
            answer["import_refused"] = True
        print(json.dumps(answer))
    ''', stdin=cloudpickle.dumps(make_probe()))
    assert answered.returncode == 0, answered.stderr.decode()
    stock = json.loads(answered.stdout)
    assert stock.pop("import_refused") is True, "the stand-in node really lacks the package"
    assert stock["host"] == socket.gethostname() and stock["pid"] != os.getpid()
    assert (stock["installed"], stock["active"], stock["phases"]) == (False, False, [])

    message = ray_workers.stock_message(ray_workers.stock_workers([stock]), 2)
    assert message.startswith(f"1 of 2 Ray workers run stock vLLM, without the overlay, on host(s) {stock['host']}")
    assert f"{stock['host']}:{stock['pid']}" in message and INSTALL_HINT in message


def test_check_workers_logs_the_stock_hosts_and_never_raises(caplog):
    stock = {"host": "npu-node-1", "pid": 11, "active": False, "installed": False, "phases": []}
    patched = {"host": "npu-node-0", "pid": 10, "active": True, "installed": True, "phases": ["worker"]}
    sent = []

    def collective_rpc(method, timeout=None):  # stands in for vLLM's executor over a two-node cluster
        sent.append(method)
        return [patched, stock]

    with caplog.at_level(logging.INFO, logger="ascend_overlay"):
        assert check_workers(collective_rpc) == [patched, stock]
    assert callable(sent[0]) and sent[0].__module__ == "ascend_overlay_probe_by_value"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "on host(s) npu-node-1 (pids npu-node-1:11)" in warnings[0]
    assert "npu-node-0" not in warnings[0]

    def unreachable(method, timeout=None):
        raise TimeoutError("RPC call to collective_rpc timed out")

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ascend_overlay"):
        assert check_workers(unreachable) == []
    assert "could not ask the Ray workers" in caplog.text and "timed out" in caplog.text


def test_ray_requested_reads_both_flag_spellings():
    assert ray_requested(["vllm", "serve", "m", "--distributed-executor-backend", "ray"])
    assert ray_requested(["vllm", "serve", "m", "--distributed-executor-backend=ray"])
    assert not ray_requested(["vllm", "serve", "m", "--distributed-executor-backend", "mp"])
    assert not ray_requested(["vllm", "serve", "ray"])
    assert ray_missing(["vllm", "serve", "m", "--distributed-executor-backend", "ray"]) is None, "ray is installed"


def test_run_refuses_a_ray_command_where_ray_is_missing_and_names_the_fix():
    refused = run_without({"ray"}, '''
        import sys
        from ascend_overlay.cli import main
        sys.exit(main(["run", "--", "vllm", "serve", "MODEL", "--distributed-executor-backend", "ray"]))
    ''')
    err = refused.stderr.decode()
    assert refused.returncode == 2, err
    assert "ascend-overlay run: `vllm serve ... --distributed-executor-backend ray` needs Ray" in err
    assert INSTALL_HINT in err and "every node" in err
    started = run_without({"ray"}, '''
        import sys
        from ascend_overlay.cli import main
        sys.exit(main(["run", "--", sys.executable, "-c", "print('ran')"]))
    ''')
    assert started.returncode == 0 and started.stdout.decode().strip() == "ran", "no Ray asked for: runs as before"


def test_with_the_overlay_on_the_stock_hosts_are_a_problem_in_the_report_and_strict_mode_raises(tmp_path):
    import pytest

    from ascend_overlay.core.errors import OverlayError
    from ascend_overlay.core.report import read_jsonl
    from ascend_overlay.core.settings import Settings
    from ascend_overlay.doors import activation

    stock = {"host": "npu-node-1", "pid": 11, "active": True, "installed": True, "phases": []}
    report = tmp_path / "report.jsonl"

    def collective_rpc(method, timeout=None):  # stands in for vLLM's executor over one stock node
        return [stock]

    assert activation.activate(door="test", settings=Settings(enabled=True, log_level="off",
                                                               report_path=str(report))) is not None
    try:
        check_workers(collective_rpc)
    finally:
        activation.deactivate()
    line = [r for r in read_jsonl(str(report)) if r["event"] == "ray_workers"][-1]
    assert [(p["source"], p["path"]) for p in line["problems"]] == [("ray", "npu-node-1")]
    assert "did not reach the worker phase" in line["problems"][0]["message"]

    assert activation.activate(door="test", settings=Settings(enabled=True, strict=True, log_level="off")) is not None
    try:
        with pytest.raises(OverlayError, match="1 of 1 Ray workers run stock vLLM"):
            check_workers(collective_rpc)
    finally:
        activation.deactivate()
