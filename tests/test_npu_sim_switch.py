"""Switching the simulated NPU on: only explicitly, never over a real NPU, and visible in the report.

Each case runs in a fresh interpreter (the simulator, once installed, stays for the process). The
"real torch_npu" here is a test double: a package named ``torch_npu`` that imports, put on
``PYTHONPATH``, standing in for the real one that cannot be installed on these machines.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from harness import BIN, REPO

from ascend_overlay.npu import PLATFORM_QUALNAME, SIMULATE_NPU

REFUSED = "a real torch_npu is importable here"


def env_with(*, overlay: bool = True, simulate: str | None = "1", extra_path: Path | None = None,
             **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_ASCEND_OVERLAY")}
    paths = [str(p) for p in (extra_path, REPO) if p] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if overlay:
        env["VLLM_ASCEND_OVERLAY"] = "1"
    if simulate is not None:
        env[SIMULATE_NPU] = simulate
    env.update(extra)
    return env


def python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=180)


@pytest.fixture
def real_torch_npu(tmp_path: Path) -> Path:
    """A test double of an installed, importable real torch_npu (no ``SIMULATED`` marker)."""
    package = tmp_path / "site" / "torch_npu"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""Test double: a real torch_npu, importable."""\n__version__ = "2.14.0"\n')
    return package.parent


PLUGIN_TWICE = """
    import logging, sys
    logging.basicConfig(level=logging.INFO)
    from ascend_overlay.npu import npu_mode, platform_plugin
    print(platform_plugin(), platform_plugin(), npu_mode(), "torch_npu" in sys.modules and
          getattr(sys.modules["torch_npu"], "SIMULATED", False))
"""


def test_the_variable_alone_installs_the_simulator_and_names_the_platform():
    done = python(PLUGIN_TWICE, env_with())
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [PLATFORM_QUALNAME, PLATFORM_QUALNAME, "simulated", "True"]


@pytest.mark.parametrize("overlay,simulate", [(True, None), (True, "0"), (False, "1")])
def test_never_on_by_default_nor_without_the_overlay(overlay, simulate):
    code = """
        import sys
        from ascend_overlay.npu import platform_plugin
        print(platform_plugin(), "torch" in sys.modules, "ascend_overlay.npu.sim" in sys.modules)
    """
    done = python(code, env_with(overlay=overlay, simulate=simulate))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["None", "False", "False"]


def _one_error_line(stderr: str, start: str = "") -> str:
    """The one line of ``stderr`` that says why the process stops (and no traceback)."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip() and line.startswith(start)
             and " WARNING " not in f" {line}"]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("strict", ["0", "1"])
@pytest.mark.parametrize("variable,value,named", [
    (SIMULATE_NPU, "maybe", f"{SIMULATE_NPU}='maybe' is not valid"),
    ("VLLM_ASCEND_OVERLAY_SIMULATE_NPU_STATS", "/etc/passwd",
     "VLLM_ASCEND_OVERLAY_SIMULATE_NPU_STATS='/etc/passwd' is not valid; accepted values: a directory "
     "(/etc/passwd is not one)"),
    ("VLLM_ASCEND_OVERLAY_SIMULATE_NPU_CAPTURE", "/etc/passwd/x",
     "VLLM_ASCEND_OVERLAY_SIMULATE_NPU_CAPTURE='/etc/passwd/x' is not valid; accepted values: a directory "
     "(/etc/passwd is not one)"),
    ("ASCEND_RT_VISIBLE_DEVICES", "0,9", "ASCEND_RT_VISIBLE_DEVICES='0,9' is not valid for the simulated NPU"),
])
def test_a_bad_simulator_value_stops_the_process_with_one_line_strict_or_not(variable, value, named, strict):
    """The user asked for an NPU: vLLM, which swallows a platform plugin's exceptions, must not go on
    to serve on another platform with a half-installed simulator."""
    env = env_with(VLLM_ASCEND_OVERLAY_STRICT=strict, **{variable: value})
    done = python(PLUGIN_TWICE, env)
    assert done.returncode != 0 and done.stdout == "", "nothing after the plugin call may run"
    if strict == "1" and variable != "ASCEND_RT_VISIBLE_DEVICES":
        # A declared variable is read at interpreter start: strict mode's bootstrap refuses the program first.
        assert "ascend-overlay (strict): refusing to start" in done.stderr and named in done.stderr
        assert "Traceback" not in done.stderr
        return
    line = _one_error_line(done.stderr, "ascend-overlay")
    assert line.startswith("ascend-overlay: simulated NPU cannot start: ") and named in line, line


def test_an_unwritable_stats_directory_stops_the_process_before_anything_is_installed(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    code = PLUGIN_TWICE + "\nprint('unreachable')"
    try:
        done = python(code, env_with(VLLM_ASCEND_OVERLAY_SIMULATE_NPU_STATS=str(locked / "stats")))
    finally:
        locked.chmod(0o700)
    if os.geteuid() == 0:
        pytest.skip("root can write into a read-only directory: nothing to refuse")
    assert done.returncode != 0 and "unreachable" not in done.stdout
    assert "cannot be written" in _one_error_line(done.stderr)


def test_run_simulate_npu_refuses_a_bad_stats_directory_before_the_command_starts(tmp_path):
    marker = tmp_path / "ran"
    done = subprocess.run([str(BIN / "ascend-overlay"), "run", "--simulate-npu", "--", sys.executable, "-c",
                           f"open({str(marker)!r}, 'w')"],
                          env=env_with(overlay=False, simulate=None, VLLM_ASCEND_OVERLAY_SIMULATE_NPU_STATS="/etc/passwd"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and not marker.exists()
    assert _one_error_line(done.stderr).startswith(
        "ascend-overlay run: --simulate-npu refused: VLLM_ASCEND_OVERLAY_SIMULATE_NPU_STATS='/etc/passwd'")


def test_status_does_not_promise_a_simulated_npu_over_a_bad_simulator_value():
    import json

    from harness import base_env

    env = base_env(overlay=True, **{SIMULATE_NPU: "1", "VLLM_ASCEND_OVERLAY_SIMULATE_NPU_STATS": "/etc/passwd"})
    out = subprocess.run([str(BIN / "ascend-overlay"), "status", "--json", "--no-contracts"], env=env,
                         capture_output=True, text=True, timeout=120)
    data = json.loads(out.stdout)
    assert out.returncode == 1 and data["npu"] is None
    assert any("VLLM_ASCEND_OVERLAY_SIMULATE_NPU_STATS='/etc/passwd' is not valid" in e for e in data["errors"])


def test_the_variable_over_a_real_torch_npu_is_refused_once_and_the_real_one_kept(real_torch_npu):
    done = python(PLUGIN_TWICE, env_with(extra_path=real_torch_npu))
    assert done.returncode == 0, done.stderr[-2000:]
    # The double has no NPU to offer, so the platform declines, and nothing was simulated.
    assert done.stdout.split() == ["None", "None", "None", "False"]
    assert done.stderr.count(REFUSED) == 1
    assert str(real_torch_npu / "torch_npu") in done.stderr


def test_strict_mode_stops_at_the_refusal(real_torch_npu):
    done = python(PLUGIN_TWICE, env_with(extra_path=real_torch_npu, VLLM_ASCEND_OVERLAY_STRICT="1"))
    assert done.returncode != 0
    assert f"ascend-overlay (strict): simulated NPU refused: {REFUSED}" in done.stderr


def test_run_simulate_npu_sets_the_variable_for_the_command():
    code = "import os; print(os.environ['VLLM_ASCEND_OVERLAY'], os.environ['VLLM_ASCEND_OVERLAY_SIMULATE_NPU'])"
    done = subprocess.run([str(BIN / "ascend-overlay"), "run", "--simulate-npu", "--", sys.executable, "-c", code],
                          env=env_with(overlay=False, simulate=None), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "1"]


def test_run_simulate_npu_refuses_where_a_real_torch_npu_is_importable(real_torch_npu, tmp_path):
    marker = tmp_path / "ran"
    done = subprocess.run([str(BIN / "ascend-overlay"), "run", "--simulate-npu", "--", sys.executable, "-c",
                           f"open({str(marker)!r}, 'w')"],
                          env=env_with(overlay=False, simulate=None, extra_path=real_torch_npu),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"ascend-overlay run: --simulate-npu refused: {REFUSED}" in done.stderr
    assert "never shadows a real NPU" in done.stderr
    assert not marker.exists(), "the command must not start"


def test_run_simulate_npu_refuses_bad_visible_devices():
    done = subprocess.run([str(BIN / "ascend-overlay"), "run", "--simulate-npu", "--", sys.executable, "-c", "1"],
                          env=env_with(overlay=False, simulate=None, ASCEND_RT_VISIBLE_DEVICES="0,9"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "ASCEND_RT_VISIBLE_DEVICES='0,9' is not valid for the simulated NPU" in done.stderr


def test_the_report_says_which_npu_a_process_runs_with():
    code = """
        from ascend_overlay.core.report import ProcessReport
        from ascend_overlay.npu import sim
        from ascend_overlay.core.requirements import unmet
        before = ProcessReport()
        print(before.snapshot("x")["npu"], "npu=" in before.summary_line())
        sim.install()
        after = ProcessReport()
        print(after.snapshot("x")["npu"], after.summary_line().split()[-1], unmet(("npu",), lambda _: True))
    """
    done = python(code, env_with(simulate=None))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["None False", "simulated npu=simulated None"]


def test_a_loaded_real_torch_npu_with_a_device_reports_real(torch_npu_double):
    from ascend_overlay.core.report import ProcessReport
    from ascend_overlay.npu import npu_mode

    assert npu_mode() == "real"
    assert ProcessReport().snapshot("x")["npu"] == "real"
    torch_npu_double.npu.device_count_value = 0
    from ascend_overlay.core import requirements

    requirements.npu_available.cache_clear()
    assert npu_mode() is None, "a torch_npu without a visible NPU is no NPU"


def test_status_predicts_the_simulated_npu_and_its_kernel_patches():
    import json

    from harness import base_env

    env = base_env(overlay=True, **{SIMULATE_NPU: "1"})
    out = subprocess.run([str(BIN / "ascend-overlay"), "status", "--json", "--no-contracts"], env=env,
                         capture_output=True, text=True, timeout=120)
    data = json.loads(out.stdout)
    assert out.returncode == 0 and data["npu"] == "simulated"
    rows = {r["name"]: r for r in data["patches"]}
    for name in ("npu_silu_and_mul", "npu_rms_norm", "npu_rotary_embedding"):
        assert rows[name]["status"] == "would apply", rows[name]
    plain = json.loads(subprocess.run([str(BIN / "ascend-overlay"), "status", "--json", "--no-contracts"],
                                      env=base_env(overlay=True), capture_output=True, text=True, timeout=120).stdout)
    assert plain["npu"] is None and {r["name"]: r["reason"] for r in plain["patches"]}["npu_rms_norm"] == "requires npu"
