"""``pytest -p ascend_overlay.testing`` runs tests against patched vLLM.

Each case runs pytest in a child process on a small test file that builds vLLM's real ``Scheduler``
directly (as vLLM's own scheduler tests do, so no hook point fires) and looks at what the patch
changed: applied for the tests that ask, undone for the next one, and the toggles honoured.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from harness import REPO, base_env, trusted_copy

from ascend_overlay.testing.upstream import parse_junit

pytest.importorskip("vllm")
PATCH_NAME = "unfinished_count_off_by_one"

PROBE = textwrap.dedent('''
    import pytest
    from vllm.v1.core.sched.scheduler import Scheduler

    ORIGINAL = Scheduler.__dict__["get_num_unfinished_requests"]


    def _patched():
        return Scheduler.__dict__["get_num_unfinished_requests"] is not ORIGINAL


    @pytest.mark.ascend_overlay(phase="engine_core", enable="{name}")
    def test_marked_is_patched(ascend_overlay):
        assert _patched()
        assert ascend_overlay.report.outcomes["{name}"].status == "applied"


    def test_next_test_is_stock_again(ascend_overlay):
        assert ascend_overlay is None and not _patched()


    @pytest.mark.ascend_overlay(phase="engine_core", enable="{name}", disable="{name}")
    def test_disable_wins(ascend_overlay):
        assert ascend_overlay.report.outcomes["{name}"].status == "skipped"
        assert not _patched()


    @pytest.mark.ascend_overlay(phase="engine_core")
    def test_experimental_patch_needs_enabling(ascend_overlay):
        assert _patched() == ("{name}" in ascend_overlay.settings.enable)


    @pytest.mark.ascend_overlay(phase=None)
    def test_opted_out(ascend_overlay):
        assert ascend_overlay is None and not _patched()


    def test_last_is_stock():
        assert not _patched()
''').format(name=PATCH_NAME)


@pytest.fixture
def hotfixes(tmp_path: Path) -> Path:
    return trusted_copy(REPO / "tests" / "upstream_patches", tmp_path / "hotfixes")


def _run(tmp_path: Path, hotfixes: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    (tmp_path / "test_probe.py").write_text(PROBE)
    junit = tmp_path / "junit.xml"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "ascend_overlay.testing", "-p", "no:cacheprovider",
                           f"--junitxml={junit}", *args, "test_probe.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=base_env(overlay=False, VLLM_ASCEND_OVERLAY_PATH=str(hotfixes), **env))
    outcomes = parse_junit(junit) if junit.is_file() else {}
    return done, {node.rsplit("::", 1)[-1]: o.status for node, o in outcomes.items()}


def test_marker_applies_the_phase_and_undoes_it_after_the_test(tmp_path: Path, hotfixes: Path) -> None:
    done, outcomes = _run(tmp_path, hotfixes)
    assert set(outcomes.values()) == {"passed"} and len(outcomes) == 6, done.stdout[-3000:]
    assert f"{PATCH_NAME} (1)" in done.stdout.split("patches applied (tests):")[1]


def test_the_environment_toggles_are_honoured(tmp_path: Path, hotfixes: Path) -> None:
    done, outcomes = _run(tmp_path, hotfixes, VLLM_ASCEND_OVERLAY_ENABLE=PATCH_NAME)
    assert set(outcomes.values()) == {"passed"}, done.stdout[-3000:]  # the experimental patch now applies
    assert f"{PATCH_NAME} (2)" in done.stdout


def test_the_command_line_phase_covers_every_test_and_a_marker_can_opt_out(tmp_path: Path, hotfixes: Path) -> None:
    done, outcomes = _run(tmp_path, hotfixes, "--ascend-overlay-phase=engine_core",
                          f"--ascend-overlay-enable={PATCH_NAME}")
    assert outcomes["test_next_test_is_stock_again"] == "failed"  # patched now: the option covers it
    assert outcomes["test_last_is_stock"] == "failed"
    assert outcomes["test_opted_out"] == "passed" and outcomes["test_marked_is_patched"] == "passed"
    assert "ascend-overlay: phases engine_core fired around every test" in done.stdout


def test_an_enabled_patch_that_cannot_apply_fails_the_test_with_the_reason(tmp_path: Path, hotfixes: Path) -> None:
    done, outcomes = _run(tmp_path, hotfixes, "--ascend-overlay-phase=worker", "--ascend-overlay-enable=npu_rms_norm",
                          "-k", "last_is_stock")
    assert outcomes == {"test_last_is_stock": "error"}  # failed in set-up: the test did not run
    assert "patch 'npu_rms_norm' was enabled but is skipped: " in done.stdout, done.stdout[-2000:]


@pytest.mark.parametrize(("args", "message"), [
    (("--ascend-overlay-phase=engine", ), "unknown phase 'engine'"),
    (("--ascend-overlay-phase=engine_core", "--ascend-overlay-enable=unfinished_count"),
     "did you mean 'unfinished_count_off_by_one'?"),
    # a semicolon separates names here as in the variables: two names, the unknown one named alone
    (("--ascend-overlay-phase=engine_core", f"--ascend-overlay-enable={PATCH_NAME};unfinished_count"),
     "(unknown patch 'unfinished_count'; did you mean"),
])
def test_bad_options_are_usage_errors(tmp_path: Path, hotfixes: Path, args: tuple[str, ...], message: str) -> None:
    done, outcomes = _run(tmp_path, hotfixes, *args)
    assert done.returncode == 4 and outcomes == {} and message in done.stderr, done.stderr[-2000:]


def test_the_plugin_refuses_an_overlay_already_active_in_the_process(tmp_path: Path, hotfixes: Path) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = base_env(overlay=True, VLLM_ASCEND_OVERLAY_PATH=str(hotfixes))
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "ascend_overlay.testing", "test_probe.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 4 and "ascend-overlay is already active in this process" in done.stderr
